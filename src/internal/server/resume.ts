/**
 * A connection's session under `recovery` (SPEC §11): what it is told when
 * it opens (`$session`, and after a resume its replay and `$resumed`), what
 * its close leaves behind, and the resent rpc requests answered from the
 * reply cache.
 */
import { encodeResumedFrame, encodeSessionFrame, unknownSession } from "../../Protocol"
import type { LiveConnection } from "./connection"
import type { HandlerContext } from "./context"
import type { Instance } from "./instance"
import type { Resumption } from "./recovery"
import { replacedCloseCode } from "./recovery"

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
 * replayed); then, in one synchronous go, the replay is read and sent and
 * the socket joins the live fan-out, so no publish falls between the two.
 */
export const startSession = (
  instance: Instance,
  connection: LiveConnection,
  resumption: Resumption
): Promise<void> | undefined => {
  const topics = Array.from(connection.topics)
  const authorize = instance.config.authorizeSubscribe
  if (resumption.session === undefined || authorize === undefined || topics.length === 0) {
    goLive(instance, connection, resumption, undefined)
    return undefined
  }
  const ctx = instance.lifecycleContext(connection)
  return Promise.all(topics.map((topic) =>
    Promise.resolve()
      .then(() => authorize(ctx, topic))
      .then((ok) => ok === true, () => false)
  )).then((allowed) => {
    goLive(instance, connection, resumption, new Set(topics.filter((_, i) => allowed[i])))
  })
}

const goLive = (
  instance: Instance,
  connection: LiveConnection,
  resumption: Resumption,
  allowed: ReadonlySet<string> | undefined
): void => {
  const store = instance.recovery!
  const { session } = resumption
  connection.sendFrame(encodeSessionFrame({ sessionId: connection.clientId, token: resumption.token, seq: store.current() }))
  if (session === undefined) {
    if (resumption.requested) connection.sendFrame(refused)
    return
  }
  if (allowed !== undefined) {
    let dropped = false
    for (const topic of connection.topics) {
      if (!allowed.has(topic)) dropped = connection.topics.delete(topic) || dropped
    }
    if (dropped) connection.persist()
  }
  const { frames, gaps } = store.replay(session, connection.topics)
  for (const frame of frames) connection.sendFrame(frame)
  connection.resuming = false
  instance.pubsub.track(connection)
  connection.sendFrame(encodeResumedFrame({ recovered: true, replayed: frames.length, gaps }))
}

/**
 * What a close leaves of the session: the client's 1000 ends it; any
 * other close keeps it resumable for `sessionTtlMs`. True while it may
 * still be resumed.
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

/**
 * A resent rpc request (same correlationId, same session) is answered from
 * the reply cache, or when its handler is still running, with that
 * handler's one answer: the handler never runs twice. True when handled.
 */
export const answeredBefore = (instance: Instance, ctx: HandlerContext): boolean => {
  const store = instance.recovery
  const { correlationId, connection } = ctx
  if (store === undefined || ctx.response === undefined || correlationId === undefined) return false
  const session = connection.clientId
  const cached = store.cachedReply(session, correlationId)
  if (cached !== undefined) {
    connection.sendFrame(cached)
    return true
  }
  if (instance.pendingReplies.wait(session, correlationId, (frame) => connection.sendFrame(frame))) return true
  instance.pendingReplies.start(session, correlationId)
  return false
}
