/**
 * The socket events of one instance — open, message, close, error — as
 * every front door (the Durable Object handler, `Testing.make`) delivers
 * them: the rate limit, the per-connection order, and the lifecycle hooks.
 */
import { CloseCodes } from "../CloseCodes"
import { RateLimited, toWireError } from "../Errors"
import { decodeEnvelope, encodeErrorFrame, isInvalidFrame } from "../Message"
import type { LiveConnection } from "./connection"
import type { ConnectionData, Socket } from "./data"
import { dispatch, notifyErrorHooks, runLifecycle } from "./dispatch"
import type { Instance } from "./instance"
import type { ResolvedRateLimit } from "./rateLimit"
import type { Resumption } from "./recovery"
import { closeSession, replacedBy, replacedReason, startSession } from "./session"

// Close codes that must not be sent back: they describe the absence of a close frame.
const unreciprocated: ReadonlySet<number> = new Set([1005, 1006, 1015])

const settled: Promise<void> = Promise.resolve()

/**
 * A socket was accepted: persist its data and run `onOpen` before any
 * message. With recovery its session comes first (`$session`, and for a
 * resume the replay), on the connection's own queue, so `onOpen` and the
 * client's first frames wait for it.
 */
export const open = (
  instance: Instance,
  socket: Socket,
  data: ConnectionData<Record<string, unknown>>,
  resumption?: Resumption
): LiveConnection => {
  const connection = instance.adopt(socket, data, resumption)
  if (resumption !== undefined) {
    if (resumption.session !== undefined) {
      for (const older of replacedBy(instance, connection)) {
        void close(instance, older.socket, replacedReason.code, replacedReason.reason)
      }
    }
    void connection.enqueue(() => startSession(instance, connection, resumption))
  }
  if (instance.router.openHooks.length > 0) {
    const ctx = instance.lifecycleContext(connection)
    ctx.recovered = resumption?.session !== undefined
    void runLifecycle(instance, instance.router.openHooks, ctx)
  }
  return connection
}

export const message = (instance: Instance, socket: Socket, frame: string | ArrayBuffer): Promise<void> => {
  const connection = instance.connectionOf(socket)
  if (connection === undefined || connection.closed || connection.cutOff) return settled
  const limit = instance.config.rateLimit
  if (limit !== undefined) {
    const now = Date.now()
    const retryAfterMs = connection.takeToken(limit, now)
    if (retryAfterMs > 0 || connection.floodingSince !== undefined) {
      if (refuse(instance, connection, limit, frame, retryAfterMs, now)) return settled
    }
  }
  const { scope, enter } = instance.scopeOf(connection)
  return connection.enqueue(() => enter(() => dispatch(instance, connection, scope, frame)))
}

// A refused frame is only looked into when it may be an rpc: the one case that needs its correlationId.
const correlationIdOf = (frame: string | ArrayBuffer, maxBytes: number): string | undefined => {
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
  instance: Instance,
  connection: LiveConnection,
  limit: ResolvedRateLimit,
  frame: string | ArrayBuffer,
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
  const correlationId = correlationIdOf(frame, instance.config.maxPayloadBytes)
  if (correlationId !== undefined) {
    connection.sendFrame(encodeErrorFrame(refused, correlationId))
  } else if (now >= connection.quietUntil) {
    connection.quietUntil = now + limit.intervalMs
    connection.sendFrame(encodeErrorFrame(refused, undefined))
  }
  return true
}

export const close = (instance: Instance, socket: Socket, code: number, reason: string): Promise<void> => {
  const connection = instance.connectionOf(socket)
  if (connection === undefined || connection.closed) return settled
  connection.closed = true
  instance.release(connection)
  instance.pubsub.remove(connection)
  if (!unreciprocated.has(code)) connection.close(code, reason)
  instance.registry.forget(socket)
  const resumable = closeSession(instance, connection, code)
  if (instance.router.closeHooks.length === 0) return settled
  const ctx = instance.lifecycleContext(connection, code, reason)
  ctx.resumable = resumable
  return runLifecycle(instance, instance.router.closeHooks, ctx)
}

export const error = (instance: Instance, socket: Socket, cause: unknown): Promise<void> => {
  const connection = instance.connectionOf(socket)
  if (connection === undefined) return settled
  notifyErrorHooks(instance, cause, instance.lifecycleContext(connection))
  return close(instance, socket, 1006, "WebSocket error")
}
