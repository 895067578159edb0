/**
 * The one way a socket becomes a connection, for every front door (the
 * Durable Object handler and `Testing.make`): the capacity check, the
 * resume claim, the connection data and its size, then the socket is
 * accepted and opened. The HTTP-only checks (method, origin,
 * `authenticate`) come before, in the handler.
 */
import type { ConnectionData } from "../../Connection"
import { ConnectionLimitExceeded, PayloadTooLarge, RateLimited, Unauthorized } from "../../Errors"
import type { LiveConnection } from "./connection"
import { oversized } from "./connection"
import type { Socket } from "./data"
import { mergeData } from "./data"
import type { Instance } from "./instance"
import { prepareResume } from "./recovery"
import * as Sockets from "./sockets"
import { uuidv7 } from "./uuid"

/** What a connection is admitted with. */
export interface Arrival {
  /**
   * What `authenticate` returned (or the test's data): merged over the
   * system fields. `undefined` when there is none (the session's identity
   * is then `""`).
   */
  readonly authenticated: unknown
  readonly resourceId: string | undefined
  /** The resume parameter's value, when the client asked to resume. */
  readonly resume: string | null
  /** The client reads `$batch` frames. */
  readonly batches?: boolean
}

/**
 * Why a connection was refused: the object answers 503, 500, 429 (with
 * `Retry-After`) and 401; `Testing` rejects with the error.
 */
export type Refusal = ConnectionLimitExceeded | PayloadTooLarge | RateLimited | Unauthorized

/**
 * Whether the instance is at `maxConnections`, not counting the sockets of
 * `replacing` (the session a resume takes over: its older socket is about
 * to be closed).
 */
export const full = (instance: Instance, replacing?: string): ConnectionLimitExceeded | undefined => {
  const limit = instance.config.maxConnections
  return !instance.hasRoom(limit, replacing)
    ? new ConnectionLimitExceeded({ limit, message: "Too many connections" })
    : undefined
}

/** The session identity of an arrival; a failing `recovery.identity` refuses it like `authenticate`. */
const identify = (instance: Instance, authenticated: unknown): string | Unauthorized => {
  const recovery = instance.config.recovery
  if (recovery === undefined || authenticated === undefined) return ""
  try {
    return recovery.identity(authenticated)
  } catch (error) {
    console.warn("durable-ws: recovery.identity failed", error)
    return new Unauthorized({ message: "Unauthorized" })
  }
}

/**
 * Admits a connection: `accept` is called, with the connection's clientId,
 * only when every check passed, and must return the accepted socket.
 */
export const admit = async (
  instance: Instance,
  arrival: Arrival,
  accept: (clientId: string) => Socket
): Promise<LiveConnection | Refusal> => {
  const identity = identify(instance, arrival.authenticated)
  if (identity instanceof Unauthorized) return identity
  const claim = instance.recovery === undefined
    ? undefined
    : await prepareResume(instance.recovery, arrival.resume, identity)
  // From here on nothing yields: a session read by the claim is taken over only once every check passed.
  const resumption = claim?.()
  if (resumption?.retryAfterMs !== undefined) {
    return new RateLimited({ retryAfterMs: resumption.retryAfterMs, message: "Too many resumes of this session" })
  }
  const session = resumption?.session
  // Earlier steps may have yielded: other upgrades can have taken the last slots meanwhile. A
  // resume's older socket of the same session is about to be closed: it does not count.
  const refused = full(instance, session?.id)
  if (refused !== undefined) return refused
  const data: ConnectionData<Record<string, unknown>> = mergeData(
    session?.data ?? systemData(arrival.resourceId),
    typeof arrival.authenticated === "object" && arrival.authenticated !== null
      ? arrival.authenticated as Record<string, unknown>
      : undefined
  )
  // The attachment as it will be written: data, subscriptions (a resume's), rate-limit bucket.
  const attachment = {
    d: data,
    t: session === undefined ? [] : Array.from(session.topics.keys()),
    ...(session?.bucket === undefined ? {} : { r: session.bucket }),
    ...(arrival.batches === true ? { b: 1 } : {})
  }
  const tooLarge = oversized(attachment, "Connection data is")
  if (tooLarge !== undefined) {
    console.error(`durable-ws: ${tooLarge.message}`)
    return tooLarge
  }
  resumption?.take()
  return Sockets.open(instance, accept(data.clientId), data, resumption, arrival.batches === true)
}

const systemData = (resourceId: string | undefined): ConnectionData<Record<string, unknown>> => {
  const connectedAt = Date.now()
  return resourceId === undefined
    ? { clientId: uuidv7(connectedAt), connectedAt }
    : { clientId: uuidv7(connectedAt), resourceId, connectedAt }
}

/** Whether an admission ended in a refusal. */
export const isRefusal = (u: LiveConnection | Refusal): u is Refusal =>
  u instanceof ConnectionLimitExceeded || u instanceof PayloadTooLarge || u instanceof RateLimited ||
  u instanceof Unauthorized
