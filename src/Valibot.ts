/**
 * `durable-ws/valibot`: messages that are valibot schemas of their whole
 * envelope, shaped like `@ws-kit/valibot`, so a WS-Kit app changes only its
 * import line.
 *
 * `message("PING", { text: v.string() })` is a `v.strictObject` of
 * `{ type, meta, payload }` — `v.safeParse(Ping, frame)`,
 * `v.InferOutput<typeof Ping>` and `v.variant("type", [...])` work as with
 * WS-Kit — and it stands for a durable-ws message (under
 * {@link MessageDefinition}), so the router, `send`, `publish` and the client
 * take it. A payload given as fields is strict (unknown keys are refused), as
 * in WS-Kit; a schema given whole is used as it is. A third argument declares
 * extended meta, which inbound frames must then pass.
 *
 * valibot is an optional peer dependency, used only by this module.
 *
 * @since 0.1.0
 */
import * as v from "valibot"
import type { Builder } from "./internal/envelope"
import { defineMessage, defineRpc } from "./internal/envelope"
import type { DefinesMessage, MessageSchema, RpcSchema } from "./Message"
import type { Router, RouterOptions } from "./Router"
import { createRouter as createCoreRouter, unchanged } from "./Router"

export { withMessaging, withPubSub, withRpc } from "./Router"

export { v }
export type { InferMeta, InferPayload, InferResponse, InferType } from "./Message"

type AnySchema = v.GenericSchema

/**
 * A payload as WS-Kit takes it: a record of valibot fields, or a schema.
 *
 * @since 0.1.0
 * @category models
 */
export type PayloadDef = v.ObjectEntries | AnySchema

/**
 * Extended meta as WS-Kit takes it: a record of valibot fields.
 *
 * @since 0.1.0
 * @category models
 */
export type MetaDef = v.ObjectEntries

/**
 * The schema a payload definition becomes: a strict object for fields, the
 * schema itself otherwise.
 *
 * @since 0.1.0
 * @category models
 */
export type PayloadObject<P> = P extends AnySchema ? P
  : P extends v.ObjectEntries ? v.StrictObjectSchema<P, undefined>
  : never

type StandardMeta = {
  readonly timestamp: v.OptionalSchema<v.NumberSchema<undefined>, undefined>
  readonly correlationId: v.OptionalSchema<v.StringSchema<undefined>, undefined>
}

/**
 * The strict object a message's `meta` is: `timestamp` and `correlationId`,
 * both optional, plus the extended fields.
 *
 * @since 0.1.0
 * @category models
 */
export type MetaObject<M> = v.StrictObjectSchema<
  [M] extends [v.ObjectEntries] ? Omit<StandardMeta, keyof M> & M : StandardMeta,
  undefined
>

/**
 * The entries of a message's envelope schema.
 *
 * @since 0.1.0
 * @category models
 */
export type EnvelopeEntries<T extends string, P, M> =
  & {
    readonly type: v.LiteralSchema<T, undefined>
    readonly meta: MetaObject<M> extends infer O extends AnySchema ? v.OptionalSchema<O, {}> : never
  }
  & ([P] extends [undefined] ? {} : { readonly payload: PayloadObject<P> })

/**
 * The durable-ws message an envelope stands for.
 *
 * @since 0.1.0
 * @category models
 */
export type Definition<T extends string, P, M> =
  & MessageSchema<T, [P] extends [undefined] ? undefined : PayloadObject<P>>
  & ([M] extends [v.ObjectEntries] ? { readonly meta: MetaObject<M> } : {})

/**
 * A message: a strict valibot schema of its envelope that stands for a
 * durable-ws message.
 *
 * @since 0.1.0
 * @category models
 */
export type MessageEnvelope<T extends string, P = undefined, M = undefined> =
  & v.StrictObjectSchema<EnvelopeEntries<T, P, M>, undefined>
  & DefinesMessage<Definition<T, P, M>>
  & { readonly messageType: T }

/**
 * An rpc request: its envelope schema, with the response's as `response`.
 *
 * @since 0.1.0
 * @category models
 */
export type RpcEnvelope<ReqT extends string, ReqP, ResT extends string, ResP, ReqM = undefined, ResM = undefined> =
  & v.StrictObjectSchema<EnvelopeEntries<ReqT, ReqP, ReqM>, undefined>
  & DefinesMessage<
    & RpcSchema<
      ReqT,
      [ReqP] extends [undefined] ? undefined : PayloadObject<ReqP>,
      Definition<ResT, ResP, ResM>,
      undefined
    >
    & ([ReqM] extends [v.ObjectEntries] ? { readonly meta: MetaObject<ReqM> } : {})
  >
  & { readonly messageType: ReqT; readonly responseType: ResT; readonly response: MessageEnvelope<ResT, ResP, ResM> }

const isSchema = (u: PayloadDef): u is AnySchema => "kind" in u && u["kind"] === "schema"

const build: Builder<PayloadDef, MetaDef, AnySchema> = (side) => {
  const payload = side.payload === undefined ? undefined : isSchema(side.payload) ? side.payload : v.strictObject(side.payload)
  const meta = v.strictObject({ timestamp: v.optional(v.number()), correlationId: v.optional(v.string()), ...side.meta })
  return {
    payload,
    meta,
    extended: side.meta !== undefined,
    envelope: (type) => {
      const entries: v.ObjectEntries = { type: v.literal(type), meta: v.optional(meta, {}) }
      return v.strictObject(payload === undefined ? entries : { ...entries, payload })
    }
  }
}

/**
 * Defines a message, positionally or as an object. The result is a strict
 * valibot schema of the envelope `{ type, meta, payload }` that the router,
 * `send`, `publish` and the client take as a message.
 *
 * @example
 * const Ping = message("PING", { text: v.string() })
 * v.safeParse(Ping, { type: "PING", meta: {}, payload: { text: "hi" } }).success // true
 *
 * @since 0.1.0
 * @category constructors
 */
export function message<const T extends string, P extends PayloadDef | undefined = undefined, M extends MetaDef | undefined = undefined>(
  spec: { readonly type: T; readonly payload?: P; readonly meta?: M }
): MessageEnvelope<T, P, M>
export function message<const T extends string, P extends PayloadDef | undefined = undefined, M extends MetaDef | undefined = undefined>(
  type: T,
  payload?: P,
  meta?: M
): MessageEnvelope<T, P, M>
export function message(
  specOrType: string | { readonly type: string; readonly payload?: PayloadDef; readonly meta?: MetaDef },
  payload?: PayloadDef,
  meta?: MetaDef
): AnySchema {
  return defineMessage(build, specOrType, payload, meta)
}

interface SideSpec {
  readonly type: string
  readonly payload?: PayloadDef
  readonly meta?: MetaDef
}

/**
 * Defines a request/response pair, positionally or as `{ req, res }`. The
 * result is the request's envelope schema; `response` is the response's.
 *
 * @since 0.1.0
 * @category constructors
 */
export function rpc<
  const ReqT extends string,
  ReqP extends PayloadDef | undefined,
  const ResT extends string,
  ResP extends PayloadDef | undefined,
  ReqM extends MetaDef | undefined = undefined,
  ResM extends MetaDef | undefined = undefined
>(spec: {
  readonly req: { readonly type: ReqT; readonly payload?: ReqP; readonly meta?: ReqM }
  readonly res: { readonly type: ResT; readonly payload?: ResP; readonly meta?: ResM }
}): RpcEnvelope<ReqT, ReqP, ResT, ResP, ReqM, ResM>
export function rpc<
  const ReqT extends string,
  ReqP extends PayloadDef | undefined,
  const ResT extends string,
  ResP extends PayloadDef | undefined
>(requestType: ReqT, request: ReqP, responseType: ResT, response: ResP): RpcEnvelope<ReqT, ReqP, ResT, ResP>
export function rpc(
  specOrType: string | { readonly req: SideSpec; readonly res: SideSpec },
  request?: PayloadDef,
  responseType?: string,
  response?: PayloadDef
): AnySchema {
  return defineRpc(build, specOrType, request, responseType, response)
}

/**
 * Creates a router: the same as `durable-ws`'s `createRouter`, here so that
 * WS-Kit's `import { v, message, createRouter } from "@ws-kit/valibot"` needs
 * only its module name changed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createRouter: <TData = {}, R = never>(options?: RouterOptions) => Router<TData, R> = createCoreRouter

/**
 * WS-Kit's validation plugin. durable-ws validates every message with the
 * schema it was defined with, so `router.plugin(withValibot())` changes
 * nothing; it is here so WS-Kit code compiles and runs unchanged.
 *
 * @since 0.1.0
 * @category plugins
 */
export const withValibot = (_options?: { readonly validateOutgoing?: boolean }): typeof unchanged => unchanged

/**
 * The whole envelope of a message: `v.InferOutput<typeof M>`.
 *
 * @since 0.1.0
 * @category models
 */
export type InferMessage<S extends AnySchema> = v.InferOutput<S>
