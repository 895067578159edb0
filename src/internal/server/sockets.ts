/**
 * The socket events of one instance — open, message, close, error — as
 * every front door (the Durable Object handler, `Testing.make`) delivers
 * them: the rate limit, the per-connection order, and the lifecycle hooks.
 */
import type { ConnectionData } from "../../Connection"
import { RateLimited, toWireError } from "../../Errors"
import { encodeErrorFrame } from "../../Protocol"
import type { LiveConnection } from "./connection"
import type { Socket } from "./data"
import { dispatch, notifyErrorHooks, runLifecycle } from "./dispatch"
import type { Instance } from "./instance"
import { correlationIdOf, limitFrame } from "./rateLimit"
import type { Resumption } from "./recovery"
import { closeSession, replacedBy, replacedReason, startSession } from "./resume"

// 1006 and 1015 say no close frame arrived (the connection dropped, TLS failed): there is nothing to
// answer. 1005 is a close frame without a code (a bare `ws.close()`): RFC 6455 §5.5.1 wants it
// answered, and the answer carries no code either.
const noCloseFrame: ReadonlySet<number> = new Set([1006, 1015])
const noCode = 1005

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
  resumption: Resumption | undefined,
  batches: boolean
): LiveConnection => {
  const connection = instance.adopt(socket, data, resumption, batches)
  instance.presence?.wake()
  if (resumption !== undefined) {
    if (resumption.session !== undefined) {
      for (const older of replacedBy(instance, connection)) {
        void close(instance, older.socket, replacedReason.code, replacedReason.reason)
      }
    }
    void connection.enqueue(() => startSession(instance, connection, resumption))
  }
  if (instance.router.observers.length > 0) instance.router.observe("onConnectionOpen", connection.clientId, connection.data)
  if (instance.router.openHooks.length > 0) {
    const ctx = instance.lifecycleContext(connection)
    ctx.recovered = resumption?.session !== undefined
    void runLifecycle(instance, instance.router.openHooks, ctx)
  }
  return connection
}

export const message = (instance: Instance, socket: Socket, frame: string | ArrayBuffer): Promise<void> => {
  instance.presence?.wake()
  const connection = instance.connectionOf(socket)
  if (connection === undefined || connection.closed || connection.cutOff) return settled
  const limit = instance.config.rateLimit
  if (limit !== undefined && limitFrame(connection, limit, frame, instance.config.maxPayloadBytes)) return settled
  const maxPending = instance.config.maxPending
  if (maxPending !== undefined && connection.pending >= maxPending) return overloaded(instance, connection, frame, maxPending)
  const entry = instance.scopeOf(connection)
  // The common case, an idle connection, runs the frame at once: no task to queue. The closures are
  // written in place, not bound to a name: wrangler's default `keep_names` names every named
  // function where it is made, which would cost a `defineProperty` per message.
  if (connection.idle) return connection.started(entry.enter(() => dispatch(instance, connection, entry, frame)))
  return connection.enqueue(() => entry.enter(() => dispatch(instance, connection, entry, frame)))
}

/** A frame past `limits.maxPending` is dropped: `RESOURCE_EXHAUSTED`, and `onError` hears of it. */
const overloaded = (instance: Instance, connection: LiveConnection, frame: string | ArrayBuffer, maxPending: number) => {
  const error = new RateLimited({ retryAfterMs: 0, message: `Too many pending messages (limit ${maxPending})` })
  const { suppressed } = instance.router.notifyError(error, undefined, { clientId: connection.clientId })
  if (!suppressed) {
    const { code, message } = toWireError(error)
    connection.sendFrame(encodeErrorFrame({ code, message }, correlationIdOf(frame, instance.config.maxPayloadBytes)))
  }
  return settled
}

export const close = (instance: Instance, socket: Socket, code: number, reason: string): Promise<void> => {
  const connection = instance.connectionOf(socket)
  if (connection === undefined || connection.closed) return settled
  connection.closed = true
  instance.release(connection)
  instance.pubsub.remove(connection)
  if (code === noCode) connection.close()
  else if (!noCloseFrame.has(code)) connection.close(code, reason)
  instance.registry.forget(socket)
  const resumable = closeSession(instance, connection, code)
  for (const waiting of Array.from(connection.awaitingReplies ?? [])) {
    // A recorded request of a session that may resume keeps waiting: its one reply goes to the resend.
    if (resumable && waiting.record !== undefined) continue
    // Otherwise nobody is left to answer: a deferred reply's deadline would only keep the object awake.
    waiting.revoke()
    if (waiting.record !== undefined) instance.pendingReplies.abandon(waiting.record)
  }
  // Held while the session may be resumed; a terminal close ended the session, so it leaves at once.
  instance.presence?.closed(connection, resumable)
  if (instance.router.observers.length > 0) instance.router.observe("onConnectionClose", connection.clientId, { code, reason })
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
