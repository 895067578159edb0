/**
 * What `durable-ws/zod` and `durable-ws/valibot` share: reading the
 * positional and object forms of `message`/`rpc`, the meta keys the server
 * owns, and hanging the message definition on a validator's envelope schema
 * (non-enumerable, so the validator never sees it).
 */
import type { MessageSchema } from "../Message"
import { MessageDefinition } from "../Message"

/** One side of a message as written: its type, payload, extended meta and options. */
export interface Spec<P, M> {
  readonly type: string
  readonly payload?: P | undefined
  readonly meta?: M | undefined
  /** `strict: false` keeps a given payload object as it is (unknown keys allowed). */
  readonly options?: { readonly strict?: boolean } | undefined
}

/** Reads `message(type, payload?, meta?)` or `message({ type, payload?, meta?, options? })`. */
export const messageSpec = <P, M>(specOrType: string | Spec<P, M>, payload?: P, meta?: M): Spec<P, M> =>
  typeof specOrType === "string" ? { type: specOrType, payload, meta } : specOrType

/** Reads `rpc(reqType, reqPayload, resType, resPayload)` or `rpc({ req, res })`. */
export const rpcSpec = <P, M>(
  specOrType: string | { readonly req: Spec<P, M>; readonly res: Spec<P, M> },
  request?: P,
  responseType?: string,
  response?: P
): { readonly req: Spec<P, M>; readonly res: Spec<P, M> } => {
  if (typeof specOrType !== "string") return specOrType
  if (typeof responseType !== "string") throw new TypeError("durable-ws: rpc() needs a response type")
  return { req: { type: specOrType, payload: request }, res: { type: responseType, payload: response } }
}

// The server fills these in; a schema may not declare them.
const reservedMetaKeys = ["clientId", "receivedAt"]

/** Refuses an extended meta that declares a key the server owns. */
export const checkMetaKeys = (type: string, meta: object | undefined): void => {
  if (meta === undefined) return
  const reserved = reservedMetaKeys.filter((key) => Object.hasOwn(meta, key))
  if (reserved.length > 0) {
    throw new TypeError(`durable-ws: meta of "${type}" may not declare ${reserved.join(", ")} (set by the server)`)
  }
}

/** Makes `schema` stand for `definition`: the router, `send`, `publish` and the client then take it. */
export const defineOn = <S extends object>(
  schema: S,
  definition: MessageSchema,
  extra: Readonly<Record<string, unknown>> = {}
): S => {
  const properties: PropertyDescriptorMap = {
    [MessageDefinition]: { value: definition, enumerable: false },
    messageType: { value: definition.type, enumerable: false }
  }
  for (const [key, value] of Object.entries(extra)) properties[key] = { value, enumerable: false }
  return Object.defineProperties(schema, properties)
}
