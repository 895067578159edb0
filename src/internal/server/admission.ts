/**
 * The one way a socket becomes a connection, for every front door (the
 * Durable Object handler and `Testing.make`): the capacity check, the
 * resume claim, the connection data and its size, then the socket is
 * accepted and opened. The HTTP-only checks (method, origin,
 * `authenticate`) come before, in the handler.
 */
import { v7 as uuidv7 } from "uuid"
import type { ConnectionData } from "../../Connection"
import { maxAttachmentBytes } from "../../Connection"
import { ConnectionLimitExceeded, PayloadTooLarge } from "../../Errors"
import { utf8Length } from "../../Protocol"
import type { LiveConnection } from "./connection"
import type { Socket } from "./data"
import { mergeData } from "./data"
import type { Instance } from "./instance"
import { prepareResume } from "./recovery"
import * as Sockets from "./sockets"

/** What a connection is admitted with. */
export interface Arrival {
  /** What `authenticate` returned (or the test's data): merged over the system fields. */
  readonly authenticated: unknown
  readonly resourceId: string | undefined
  /** The resume parameter's value, when the client asked to resume. */
  readonly resume: string | null
}

/** Why a connection was refused: the object answers 503 and 500, `Testing` rejects with the error. */
export type Refusal = ConnectionLimitExceeded | PayloadTooLarge

/** Whether the instance is at `maxConnections`. */
export const full = (instance: Instance): ConnectionLimitExceeded | undefined => {
  const limit = instance.config.maxConnections
  return !instance.hasRoom(limit) ? new ConnectionLimitExceeded({ limit, message: "Too many connections" }) : undefined
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
  const claim = instance.recovery === undefined ? undefined : await prepareResume(instance.recovery, arrival.resume)
  // Earlier steps may have yielded: other upgrades can have taken the last slots meanwhile.
  const refused = full(instance)
  if (refused !== undefined) return refused
  // From here on nothing yields: a session claimed is a session taken over.
  const resumption = claim?.()
  const data: ConnectionData<Record<string, unknown>> = mergeData(
    resumption?.session?.data ?? systemData(arrival.resourceId),
    typeof arrival.authenticated === "object" && arrival.authenticated !== null
      ? arrival.authenticated as Record<string, unknown>
      : undefined
  )
  const size = utf8Length(JSON.stringify({ d: data, t: [] }))
  if (size > maxAttachmentBytes) {
    console.error(`durable-ws: connection data is ${size} bytes; the limit is ${maxAttachmentBytes}`)
    return new PayloadTooLarge({
      size,
      limit: maxAttachmentBytes,
      message: `Connection data is ${size} bytes; the limit is ${maxAttachmentBytes}`
    })
  }
  return Sockets.open(instance, accept(data.clientId), data, resumption)
}

const systemData = (resourceId: string | undefined): ConnectionData<Record<string, unknown>> =>
  resourceId === undefined
    ? { clientId: uuidv7(), connectedAt: Date.now() }
    : { clientId: uuidv7(), resourceId, connectedAt: Date.now() }

/** Whether an admission ended in a refusal. */
export const isRefusal = (u: LiveConnection | Refusal): u is Refusal =>
  u instanceof ConnectionLimitExceeded || u instanceof PayloadTooLarge
