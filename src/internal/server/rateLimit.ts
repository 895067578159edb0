/**
 * Per-connection rate limit: a token bucket that starts full.
 */
export interface RateLimit {
  /** The burst a connection may send at once. */
  readonly capacity: number
  /** Tokens added back per second. */
  readonly refillPerSecond: number
  /**
   * A connection whose bucket has not refilled to full for this long since
   * its first refusal is closed with 1008 (default 10 000 ms; `Infinity`
   * never closes).
   */
  readonly closeAfterMs?: number
}

/** A rate limit with its defaults filled in. */
export interface ResolvedRateLimit extends RateLimit {
  readonly closeAfterMs: number
  /** The time one token takes to come back: at most one plain refusal notice per interval. */
  readonly intervalMs: number
}

/**
 * @since 0.1.0
 * @category constants
 */
export const defaultCloseAfterMs = 10_000

export const checkRateLimit = (limit: RateLimit): ResolvedRateLimit => {
  if (!(limit.capacity >= 1) || !Number.isFinite(limit.capacity)) {
    throw new RangeError("durable-ws: rateLimit.capacity must be a finite number >= 1")
  }
  if (!(limit.refillPerSecond > 0) || !Number.isFinite(limit.refillPerSecond)) {
    throw new RangeError("durable-ws: rateLimit.refillPerSecond must be a finite number > 0")
  }
  const closeAfterMs = limit.closeAfterMs ?? defaultCloseAfterMs
  if (!(closeAfterMs > 0)) {
    throw new RangeError("durable-ws: rateLimit.closeAfterMs must be a number > 0 (Infinity never closes)")
  }
  return {
    capacity: limit.capacity,
    refillPerSecond: limit.refillPerSecond,
    closeAfterMs,
    intervalMs: Math.ceil(1000 / limit.refillPerSecond)
  }
}

/** A bucket as kept in the socket attachment: `[tokens, at]` (ms since the epoch). */
export type SavedBucket = readonly [tokens: number, at: number]

export const isSavedBucket = (u: unknown): u is SavedBucket =>
  Array.isArray(u) && u.length === 2 && typeof u[0] === "number" && typeof u[1] === "number"

const refilled = (limit: RateLimit, tokens: number, at: number, now: number): number =>
  Math.min(limit.capacity, tokens + (Math.max(0, now - at) * limit.refillPerSecond) / 1000)

/**
 * A token bucket that survives hibernation without a write per frame.
 *
 * The bucket lives in memory; a copy is kept in the socket attachment
 * (serialized by the runtime with the socket, never a storage write) and
 * rewritten only when the copy has drifted from the truth in a way that
 * matters after a wake: when the copy would let a refused connection send
 * (so a limited connection stays limited across eviction, exactly), or when
 * it would restore more than a quarter of the burst (and more than one
 * token) above what is really left. A connection that sends at most one
 * frame per refill interval never causes a write; one that bursts causes
 * about four per `capacity` frames; an eviction can hand a connection at
 * most that quarter of its burst back.
 */
export class TokenBucket {
  private constructor(private tokens: number, private at: number, private saved: SavedBucket | undefined) {}

  /** The bucket of a connection: from its attachment after a wake, else full. */
  static restore(limit: RateLimit, saved: SavedBucket | undefined, now: number): TokenBucket {
    return saved === undefined ? new TokenBucket(limit.capacity, now, undefined) : new TokenBucket(saved[0], saved[1], saved)
  }

  /** Whether the bucket has refilled to its whole burst. */
  isFull(limit: RateLimit, now: number): boolean {
    return refilled(limit, this.tokens, this.at, now) >= limit.capacity
  }

  /** Takes one token: 0 when allowed, else the milliseconds until one is available. */
  take(limit: RateLimit, now: number): number {
    this.tokens = refilled(limit, this.tokens, this.at, now)
    this.at = Math.max(this.at, now)
    if (this.tokens >= 1) {
      this.tokens -= 1
      return 0
    }
    return Math.ceil(((1 - this.tokens) * 1000) / limit.refillPerSecond)
  }

  /** Whether the attachment's copy should be rewritten after a `take` (see the class comment). */
  needsSave(limit: RateLimit, refused: boolean): boolean {
    const restored = this.saved === undefined
      ? limit.capacity
      : refilled(limit, this.saved[0], this.saved[1], this.at)
    return refused ? restored >= 1 : restored - this.tokens > Math.max(1, limit.capacity / 4)
  }

  /** The state to write to the attachment. */
  state(): SavedBucket {
    return [this.tokens, this.at]
  }

  /** Records what the attachment now holds: the copy `needsSave` compares with. */
  markSaved(state: SavedBucket): void {
    this.saved = state
  }
}
