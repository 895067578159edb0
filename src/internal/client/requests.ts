/**
 * The client's requests in flight: their ids, timers and progress, and
 * which of them went out (only those can be lost with a connection, or
 * sent again after a resume).
 */
import type { MessageSchema, PayloadResult } from "../../Message"
import { decodePayload, isPendingResult } from "../../Message"

/** One request waiting for its reply. */
export interface PendingRequest {
  readonly type: string
  readonly response: MessageSchema
  /** The rpc's progress schema, and who hears the progress. */
  readonly progress: MessageSchema | undefined
  readonly onProgress: ((progress: unknown) => void) | undefined
  readonly resolve: (value: unknown) => void
  readonly reject: (error: unknown) => void
  readonly timer: ReturnType<typeof setTimeout>
  /** Whether the frame left; only those can be lost with a connection. */
  sent: boolean
  /**
   * Whether it left on a socket that is gone: only those are sent again
   * after a resume (or fail when it is refused). One queued while offline
   * and sent on the new socket is not, or it would reach the server twice.
   */
  lost: boolean
  /** The request frame, kept when it may be sent again after a resume. */
  frame: string | undefined
}

/**
 * The client's requests in flight, by correlationId. Ids are a per-client
 * random prefix plus a counter: unique without needing `crypto`, which
 * insecure browser contexts lack.
 */
export class PendingRequests {
  private readonly byId = new Map<string, PendingRequest>()
  private sequence = 0
  private readonly prefix = `${Date.now().toString(36)}${Math.floor(Math.random() * 0xffffff).toString(36)}-`

  nextId(): string {
    return `${this.prefix}${++this.sequence}`
  }

  add(correlationId: string, request: PendingRequest): void {
    this.byId.set(correlationId, request)
  }

  get(correlationId: string): PendingRequest | undefined {
    return this.byId.get(correlationId)
  }

  /** Removes a request and stops its timer; undefined when it was already settled. */
  take(correlationId: string): PendingRequest | undefined {
    const request = this.byId.get(correlationId)
    if (request === undefined) return undefined
    this.byId.delete(correlationId)
    clearTimeout(request.timer)
    return request
  }

  /** The socket went away: every request that went out on it is lost with it, until a resume sends it again. */
  markLost(): void {
    for (const request of this.byId.values()) if (request.sent) request.lost = true
  }

  /** Rejects the requests lost with a socket (the ones still queued, or sent on the new socket, stay). */
  failLost(error: (request: PendingRequest) => unknown): void {
    for (const [correlationId, request] of this.byId) {
      if (request.lost) this.take(correlationId)?.reject(error(request))
    }
  }

  /** The requests lost with a socket, with their frames, to send again after a resume. */
  *lostFrames(): Iterable<{ readonly correlationId: string; readonly frame: string }> {
    for (const [correlationId, request] of this.byId) {
      if (request.lost && request.frame !== undefined) {
        request.lost = false
        yield { correlationId, frame: request.frame }
      }
    }
  }

  /**
   * Hands a progress payload to the request still waiting for it; progress
   * for any other correlationId is not ours and is dropped. A Promise while
   * an asynchronous validator decides.
   */
  progress(correlationId: string | undefined, payload: unknown, report: (error: unknown) => void): Promise<void> | undefined {
    const entry = correlationId === undefined ? undefined : this.byId.get(correlationId)
    const onProgress = entry?.onProgress
    if (entry === undefined || onProgress === undefined) return undefined
    const hand = (decoded: PayloadResult): void => {
      if (!decoded.ok) return report(decoded.error)
      // A request answered or given up while an asynchronous validator decided hears nothing more.
      if (this.byId.get(correlationId!) !== entry) return
      try {
        onProgress(decoded.value)
      } catch (error) {
        report(error)
      }
    }
    // An rpc that declares no progress schema hears its progress as it came.
    const decoded = entry.progress === undefined ? { ok: true as const, value: payload } : decodePayload(entry.progress, payload)
    if (isPendingResult(decoded)) return decoded.then(hand)
    hand(decoded)
    return undefined
  }

  failAll(error: unknown): void {
    for (const correlationId of [...this.byId.keys()]) this.take(correlationId)?.reject(error)
  }
}
