/**
 * A connection's session under `recovery` (SPEC §11): what it is told when
 * it opens (`$session`, and after a resume its replay and `$resumed`), what
 * its close leaves behind, and the resent rpc requests answered from the
 * reply cache.
 */
import type { WireError } from "../../Errors"
import { encodeErrorFrame, encodeResumedFrame, encodeSessionFrame, interruptedReason, unknownSession } from "../../Protocol"
import type { LiveConnection } from "./connection"
import type { HandlerContext } from "./context"
import type { Instance } from "./instance"
import type { Resumption } from "./recovery"
import { payloadDigest, replacedCloseCode, replayDone } from "./recovery"

const refused = encodeResumedFrame({ recovered: false, reason: unknownSession })

/** Older sockets still open on a session that a new socket just resumed: they are closed. */
export const replacedBy = (instance: Instance, connection: LiveConnection): Array<LiveConnection> => {
  const older: Array<LiveConnection> = []
  for (const other of instance.connections()) {
    if (other !== connection && other.clientId === connection.clientId) {
      other.replaced = true
      older.push(other)
    }
  }
  return older
}

export const replacedReason = { code: replacedCloseCode, reason: "Session resumed on another connection" } as const

/**
 * Opens the session of a new socket. For a resume, the session's topics
 * are authorized again (a topic no longer allowed is dropped, not
 * replayed); then the replay is sent in chunks (see {@link goLive}).
 */
export const startSession = (
  instance: Instance,
  connection: LiveConnection,
  resumption: Resumption
): Promise<void> | undefined => {
  const topics = Array.from(connection.topics)
  const authorize = instance.config.authorizeSubscribe
  if (resumption.session === undefined || authorize === undefined || topics.length === 0) {
    return goLive(instance, connection, resumption, undefined)
  }
  const ctx = instance.lifecycleContext(connection)
  return Promise.all(topics.map((topic) =>
    Promise.resolve()
      .then(() => authorize(ctx, topic))
      .then((ok) => ok === true, () => false)
  )).then((allowed) => goLive(instance, connection, resumption, new Set(topics.filter((_, i) => allowed[i]))))
}

/** Lets the object serve other events between two chunks of a replay. */
const yieldTurn = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0))

/**
 * Sends `$session`, and for a resume the replay, then `$resumed`. The cut
 * between replayed and live frames: in one synchronous step the replay's
 * end is fixed at the current log position and the socket joins the live
 * fan-out with its published frames held back; the log is then read and
 * sent in chunks up to that end, yielding between chunks so other
 * connections are served, and the held-back frames (all after the end)
 * follow `$resumed`. No publish is missed or sent twice.
 */
const goLive = (
  instance: Instance,
  connection: LiveConnection,
  resumption: Resumption,
  allowed: ReadonlySet<string> | undefined
): Promise<void> | undefined => {
  const store = instance.recovery!
  const { session } = resumption
  connection.sendFrame(encodeSessionFrame({ sessionId: connection.clientId, token: resumption.token, seq: store.current() }))
  if (session === undefined) {
    if (resumption.requested) connection.sendFrame(refused)
    return undefined
  }
  if (allowed !== undefined) {
    let dropped = false
    for (const topic of connection.topics) {
      if (allowed.has(topic)) continue
      dropped = connection.topics.delete(topic) || dropped
      // No longer allowed to see the topic, so no longer in its presence either.
      instance.presence?.untrack(connection, topic)
    }
    if (dropped) connection.persist()
  }
  const cursor = store.startReplay(session, connection.topics)
  connection.holdPublished()
  connection.resuming = false
  instance.pubsub.join(connection)
  const step = (): Promise<void> | undefined => {
    for (const frame of store.replayChunk(cursor)) connection.sendFrame(frame)
    if (!replayDone(cursor) && !connection.closed) return yieldTurn().then(step)
    // Diffs sent while it was away are lost to it: it gets each topic's presence whole.
    for (const topic of connection.topics) instance.sendPresence(connection, topic)
    connection.sendFrame(
      encodeResumedFrame({
        recovered: true,
        replayed: cursor.count,
        gaps: store.replayGaps(cursor),
        truncated: cursor.truncated
      })
    )
    connection.releasePublished()
    return undefined
  }
  return step()
}

/**
 * What a close leaves of the session: the client's 1000 ends it; any
 * other close keeps it resumable for `sessionTtlMs`, unless the server
 * ended it when it closed the socket. True while it may still be resumed.
 */
export const closeSession = (instance: Instance, connection: LiveConnection, code: number): boolean => {
  const store = instance.recovery
  if (store === undefined) return false
  // The session lives on in the socket that took it over.
  if (connection.replaced) return true
  if (code === 1000) {
    store.endSession(connection.clientId)
    return false
  }
  return store.closeSession(connection.clientId)
}

const interrupted: WireError = {
  code: "ABORTED",
  message: "The request was cut off by a restart before it was answered; its outcome is unknown",
  details: { reason: interruptedReason }
}

/**
 * Records an rpc request before its handler runs (SPEC §11.5) and answers
 * a resend without running it again: from the reply cache, with the one
 * answer of its handler still running, or, when a restart cut its handler
 * off, with `ABORTED` (an idempotent rpc runs again instead). True when
 * the request was answered here.
 */
export const answeredBefore = (instance: Instance, ctx: HandlerContext, payload: unknown, idempotent: boolean): boolean => {
  const store = instance.recovery
  const { correlationId, connection } = ctx
  if (store === undefined || ctx.response === undefined || correlationId === undefined) return false
  if (!connection.fromResume) {
    ctx.fresh = { session: connection.clientId, correlationId, type: ctx.type, digest: payloadDigest(payload) }
    return false
  }
  const found = store.beginRequest(connection.clientId, correlationId, ctx.type, payloadDigest(payload))
  if (found._tag === "cached") {
    connection.sendFrame(found.frame)
    return true
  }
  if (found._tag === "started") {
    if (instance.pendingReplies.wait(found.record, (frame) => connection.sendFrame(frame))) return true
    if (!idempotent) {
      connection.sendFrame(encodeErrorFrame(interrupted, correlationId))
      return true
    }
  }
  ctx.record = found.record
  instance.pendingReplies.start(found.record)
  return false
}

/**
 * The handler of a request on a fresh socket has run its synchronous part:
 * unanswered, it is recorded now, before anything else can run (a resend
 * can only come on a later socket, in a later turn). SQLite writes in a
 * Durable Object commit together before any output leaves, so recording it
 * here is as durable as recording it before the handler started.
 */
export const recordIfUnanswered = (instance: Instance, ctx: HandlerContext): void => {
  const fresh = ctx.fresh
  if (fresh === undefined) return
  ctx.fresh = undefined
  const record = instance.recovery!.recordFresh(fresh, null)
  ctx.record = record
  instance.pendingReplies.start(record)
}
