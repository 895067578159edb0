/**
 * Per-connection rate limit: a token bucket that starts full.
 */
export interface RateLimit {
  /** The burst a connection may send at once. */
  readonly capacity: number
  /** Tokens added back per second. */
  readonly refillPerSecond: number
}

export const checkRateLimit = (limit: RateLimit): RateLimit => {
  if (!(limit.capacity >= 1) || !Number.isFinite(limit.capacity)) {
    throw new RangeError("durable-ws: rateLimit.capacity must be a finite number >= 1")
  }
  if (!(limit.refillPerSecond > 0) || !Number.isFinite(limit.refillPerSecond)) {
    throw new RangeError("durable-ws: rateLimit.refillPerSecond must be a finite number > 0")
  }
  return limit
}

export class TokenBucket {
  constructor(private tokens: number, private updatedAt: number) {}

  /** Takes one token: 0 when allowed, else the milliseconds until one is available. */
  take(limit: RateLimit, now: number): number {
    const elapsed = Math.max(0, now - this.updatedAt)
    this.tokens = Math.min(limit.capacity, this.tokens + (elapsed * limit.refillPerSecond) / 1000)
    this.updatedAt = now
    if (this.tokens >= 1) {
      this.tokens -= 1
      return 0
    }
    return Math.ceil(((1 - this.tokens) * 1000) / limit.refillPerSecond)
  }
}
