/**
 * The per-connection rate limit: a token bucket that survives hibernation,
 * and what a connection over it is told, or whether it is cut off.
 */
import { CloseCodes } from "../../CloseCodes"
import { RateLimited, toWireError } from "../../Errors"
import type { RateLimit } from "../../Options"
import { defaults } from "../../Options"
import { decodeEnvelope, encodeErrorFrame } from "../../Protocol"
import type { LiveConnection } from "./connection"

/** A rate limit with its defaults filled in. */
export interface ResolvedRateLimit extends RateLimit {
  readonly closeAfterMs: number
  /** The time one token takes to come back: at most one plain refusal notice per interval. */
  readonly intervalMs: number
}

export const checkRateLimit = (limit: RateLimit): ResolvedRateLimit => {
  if (!(limit.capacity >= 1) || !Number.isFinite(limit.capacity)) {
    throw new RangeError("durable-ws: rateLimit.capacity must be a finite number >= 1")
  }
  if (!(limit.refillPerSecond > 0) || !Number.isFinite(limit.refillPerSecond)) {
    throw new RangeError("durable-ws: rateLimit.refillPerSecond must be a finite number > 0")
  }
  const closeAfterMs = limit.closeAfterMs ?? defaults.closeAfterMs
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

/**
 * Counts a frame against the connection's bucket: true when it is dropped
 * (over the limit, or the connection is being cut off). The bucket reaches
 * the attachment only when it has drifted enough to matter after a wake; a
 * connection whose data already fills the attachment keeps its bucket in
 * memory only.
 */
export const limitFrame = (
  connection: LiveConnection,
  limit: ResolvedRateLimit,
  frame: string | ArrayBuffer,
  maxPayloadBytes: number
): boolean => {
  const now = Date.now()
  const bucket = connection.bucket ??= TokenBucket.restore(limit, connection.savedBucket, now)
  if (connection.floodingSince !== undefined && bucket.isFull(limit, now)) connection.floodingSince = undefined
  const retryAfterMs = bucket.take(limit, now)
  // A full attachment cannot take the bucket: count it as saved, or every frame would retry.
  if (bucket.needsSave(limit, retryAfterMs > 0) && connection.persist() !== undefined) bucket.markSaved(bucket.state())
  if (retryAfterMs === 0 && connection.floodingSince === undefined) return false
  return refuse(connection, limit, frame, maxPayloadBytes, retryAfterMs, now)
}

// A refused frame is only looked into when it may be an rpc: the one case that needs its correlationId.
export const correlationIdOf = (frame: string | ArrayBuffer, maxBytes: number): string | undefined => {
  if (typeof frame === "string" && !frame.includes("correlationId")) return undefined
  const envelope = decodeEnvelope(frame, maxBytes)
  return envelope.correlationId
}

/**
 * The rate limit's answer to a frame over the limit (true: the frame is
 * dropped). A plain frame gets at most one notice per token interval, so
 * a flood is not answered frame for frame; an rpc request always gets its
 * own `RPC_ERROR`, so its caller stops waiting at once; a connection that
 * keeps flooding for `closeAfterMs` is closed with 1008.
 */
const refuse = (
  connection: LiveConnection,
  limit: ResolvedRateLimit,
  frame: string | ArrayBuffer,
  maxPayloadBytes: number,
  retryAfterMs: number,
  now: number
): boolean => {
  const since = connection.floodingSince ??= now
  if (now - since >= limit.closeAfterMs) {
    connection.cutOff = true
    connection.close(CloseCodes.PolicyViolation, "Rate limit exceeded")
    return true
  }
  if (retryAfterMs === 0) return false
  const refused = toWireError(new RateLimited({ retryAfterMs, message: "Rate limit exceeded" }))
  const correlationId = correlationIdOf(frame, maxPayloadBytes)
  if (correlationId !== undefined) {
    connection.sendFrame(encodeErrorFrame(refused, correlationId))
  } else if (now >= connection.quietUntil) {
    connection.quietUntil = now + limit.intervalMs
    connection.sendFrame(encodeErrorFrame(refused, undefined))
  }
  return true
}
