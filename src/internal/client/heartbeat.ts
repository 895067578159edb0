/**
 * @since 0.1.0
 * @category models
 */
export interface HeartbeatSettings {
  readonly intervalMs: number
  readonly timeoutMs: number
}

/**
 * Notices a connection that died without a close event. After
 * `intervalMs` without an inbound frame it sends a probe; when nothing
 * arrives within `timeoutMs` after the probe, the connection is dead.
 *
 * Liveness is a timestamp that `seen` updates and the timer reads, so an
 * inbound frame costs no timer work.
 */
export class Heartbeat {
  private timer: ReturnType<typeof setTimeout> | undefined = undefined
  private lastFrameAt = 0
  private probeSentAt: number | undefined = undefined

  constructor(
    private readonly settings: HeartbeatSettings,
    private readonly probe: () => void,
    private readonly dead: () => void
  ) {}

  start(): void {
    this.stop()
    this.lastFrameAt = Date.now()
    this.arm(this.settings.intervalMs)
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.probeSentAt = undefined
  }

  /** Records that the peer said something. */
  seen(): void {
    this.lastFrameAt = Date.now()
  }

  private arm(delay: number): void {
    this.timer = setTimeout(() => this.tick(), delay)
  }

  private tick(): void {
    this.timer = undefined
    const now = Date.now()
    if (this.probeSentAt !== undefined) {
      const answered = this.lastFrameAt >= this.probeSentAt
      this.probeSentAt = undefined
      if (!answered) return this.dead()
    }
    const idle = now - this.lastFrameAt
    if (idle < this.settings.intervalMs) return this.arm(this.settings.intervalMs - idle)
    this.probe()
    this.probeSentAt = now
    this.arm(this.settings.timeoutMs)
  }
}
