/**
 * What `durable-ws/zod` and `durable-ws/valibot` share: reading the
 * positional and object forms of `message`/`rpc`, the meta keys the server
 * owns, and hanging the message definition on a validator's envelope schema
 * (non-enumerable, so the validator never sees it).
 */
import type { MessageSchema, PayloadSchema } from "../Message"
import * as Message from "../Message"

/** One side of a message as written: its type, payload, extended meta and options. */
export interface Spec<P, M> {
  readonly type: string
  readonly payload?: P | undefined
  readonly meta?: M | undefined
  /** `strict: false` keeps a given payload object as it is (unknown keys allowed). */
  readonly options?: { readonly strict?: boolean } | undefined
}

/** Reads `message(type, payload?, meta?)` or `message({ type, payload?, meta?, options? })`. */
const messageSpec = <P, M>(specOrType: string | Spec<P, M>, payload?: P, meta?: M): Spec<P, M> =>
  typeof specOrType === "string" ? { type: specOrType, payload, meta } : specOrType

/** Reads `rpc(reqType, reqPayload, resType, resPayload)` or `rpc({ req, res })`. */
const rpcSpec = <P, M>(
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
const checkMetaKeys = (type: string, meta: object | undefined): void => {
  if (meta === undefined) return
  const reserved = reservedMetaKeys.filter((key) => Object.hasOwn(meta, key))
  if (reserved.length > 0) {
    throw new TypeError(`durable-ws: meta of "${type}" may not declare ${reserved.join(", ")} (set by the server)`)
  }
}

/** Makes `schema` stand for `definition`: the router, `send`, `publish` and the client then take it. */
const defineOn = <S extends object>(
  schema: S,
  definition: MessageSchema,
  extra: Readonly<Record<string, unknown>> = {}
): S => {
  const properties: PropertyDescriptorMap = {
    [Message.MessageDefinition]: { value: definition, enumerable: false },
    messageType: { value: definition.type, enumerable: false }
  }
  for (const [key, value] of Object.entries(extra)) properties[key] = { value, enumerable: false }
  return Object.defineProperties(schema, properties)
}

/** One side built in a validator: its payload schema, its meta schema, whether the meta was extended. */
export interface Built<Envelope> {
  readonly payload: PayloadSchema | undefined
  readonly meta: PayloadSchema
  readonly extended: boolean
  /** The envelope schema `{ type, meta, payload? }` of that side. */
  readonly envelope: (type: string) => Envelope
}

/** How one validator builds a side of a message: its own schemas, the same shape for both. */
export type Builder<P, M, Envelope extends object> = (side: Spec<P, M>) => Built<Envelope>

/** `message(...)` for a validator: the envelope schema, standing for the message. */
export const defineMessage = <P, M, Envelope extends object>(
  builder: Builder<P, M, Envelope>,
  specOrType: string | Spec<P, M>,
  payload?: P,
  meta?: M
): Envelope => {
  const spec = messageSpec(specOrType, payload, meta)
  checkMetaKeys(spec.type, spec.meta as object | undefined)
  const built = builder(spec)
  const definition = Message.message(spec.type, built.payload, built.extended ? built.meta : undefined)
  return defineOn(built.envelope(spec.type), definition)
}

/** `rpc(...)` for a validator: the request's envelope schema, with the response's as `response`. */
export const defineRpc = <P, M, Envelope extends object>(
  builder: Builder<P, M, Envelope>,
  specOrType: string | { readonly req: Spec<P, M>; readonly res: Spec<P, M> },
  request?: P,
  responseType?: string,
  response?: P
): Envelope => {
  const { req, res } = rpcSpec(specOrType, request, responseType, response)
  checkMetaKeys(req.type, req.meta as object | undefined)
  checkMetaKeys(res.type, res.meta as object | undefined)
  const builtReq = builder(req)
  const builtRes = builder(res)
  const definition = Message.rpc(
    req.type,
    builtReq.payload,
    res.type,
    builtRes.payload,
    builtReq.extended ? { meta: builtReq.meta } : {}
  )
  const responseEnvelope = defineOn(builtRes.envelope(res.type), definition.response)
  return defineOn(builtReq.envelope(req.type), definition, { response: responseEnvelope, responseType: res.type })
}
