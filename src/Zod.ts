/**
 * `durable-ws/zod`: messages that are zod schemas of their whole envelope,
 * shaped like `@ws-kit/zod`, so a WS-Kit app changes only its import line.
 *
 * `message("PING", { text: z.string() })` is a strict `z.object` of
 * `{ type, meta, payload }` — `Ping.safeParse(frame)`, `z.infer<typeof Ping>`
 * and `z.discriminatedUnion("type", [...])` work as with WS-Kit — and it
 * stands for a durable-ws message (under {@link MessageDefinition}), so the
 * router, `send`, `publish` and the client take it as they take
 * `durable-ws`'s own. Payloads are strict (unknown keys are refused), as in
 * WS-Kit; a third argument declares extended meta, which inbound frames
 * must then pass.
 *
 * zod is an optional peer dependency, used only by this module.
 *
 * @since 0.1.0
 */
import { z } from "zod"
import type { Builder } from "./internal/envelope"
import { defineMessage, defineRpc } from "./internal/envelope"
import type { DefinesMessage, MessageSchema, RpcSchema } from "./Message"
import type { Router, RouterOptions } from "./Router"
import { createRouter as createCoreRouter, unchanged } from "./Router"

export { withMessaging, withPubSub, withRpc } from "./Router"

export { z }
export type { InferMeta, InferPayload, InferResponse, InferType } from "./Message"

/**
 * Per-schema options, as WS-Kit's: `strict: false` keeps a payload given as
 * a zod object as it is (unknown keys allowed); by default it is made strict.
 *
 * @since 0.1.0
 * @category models
 */
export interface SpecOptions {
  readonly strict?: boolean
}

/**
 * A payload as WS-Kit takes it: a record of zod fields, or a zod object.
 *
 * @since 0.1.0
 * @category models
 */
export type PayloadDef = z.ZodRawShape | z.ZodObject

/**
 * Extended meta as WS-Kit takes it: a record of zod fields.
 *
 * @since 0.1.0
 * @category models
 */
export type MetaDef = z.ZodRawShape

/**
 * The strict object a payload definition becomes.
 *
 * @since 0.1.0
 * @category models
 */
export type PayloadObject<P> = P extends z.ZodObject ? P
  : P extends z.ZodRawShape ? z.ZodObject<P, z.core.$strict>
  : never

type StandardMeta = {
  readonly timestamp: z.ZodOptional<z.ZodNumber>
  readonly correlationId: z.ZodOptional<z.ZodString>
}

/**
 * The strict object a message's `meta` is: `timestamp` and `correlationId`,
 * both optional, plus the extended fields.
 *
 * @since 0.1.0
 * @category models
 */
export type MetaObject<M> = z.ZodObject<
  [M] extends [z.ZodRawShape] ? Omit<StandardMeta, keyof M> & M : StandardMeta,
  z.core.$strict
>

/**
 * The fields of a message's envelope schema.
 *
 * @since 0.1.0
 * @category models
 */
export type EnvelopeShape<T extends string, P, M> =
  & { readonly type: z.ZodLiteral<T>; readonly meta: z.ZodDefault<z.ZodOptional<MetaObject<M>>> }
  & ([P] extends [undefined] ? {} : { readonly payload: PayloadObject<P> })

/**
 * The durable-ws message an envelope stands for.
 *
 * @since 0.1.0
 * @category models
 */
export type Definition<T extends string, P, M> =
  & MessageSchema<T, [P] extends [undefined] ? undefined : PayloadObject<P>>
  & ([M] extends [z.ZodRawShape] ? { readonly meta: MetaObject<M> } : {})

/**
 * A message: a strict zod schema of its envelope that stands for a
 * durable-ws message.
 *
 * @since 0.1.0
 * @category models
 */
export type MessageEnvelope<T extends string, P = undefined, M = undefined> =
  & z.ZodObject<EnvelopeShape<T, P, M>, z.core.$strict>
  & DefinesMessage<Definition<T, P, M>>
  & { readonly messageType: T }

/**
 * An rpc request: its envelope schema, with the response's as `response`.
 *
 * @since 0.1.0
 * @category models
 */
export type RpcEnvelope<ReqT extends string, ReqP, ResT extends string, ResP, ReqM = undefined, ResM = undefined> =
  & z.ZodObject<EnvelopeShape<ReqT, ReqP, ReqM>, z.core.$strict>
  & DefinesMessage<
    & RpcSchema<
      ReqT,
      [ReqP] extends [undefined] ? undefined : PayloadObject<ReqP>,
      Definition<ResT, ResP, ResM>,
      undefined
    >
    & ([ReqM] extends [z.ZodRawShape] ? { readonly meta: MetaObject<ReqM> } : {})
  >
  & { readonly messageType: ReqT; readonly responseType: ResT; readonly response: MessageEnvelope<ResT, ResP, ResM> }

const isZodObject = (u: unknown): u is z.ZodObject => u instanceof z.ZodObject

const payloadObject = (payload: PayloadDef | undefined, options: SpecOptions | undefined): z.ZodType | undefined => {
  if (payload === undefined) return undefined
  if (!isZodObject(payload)) return z.strictObject(payload)
  return options?.strict === false ? payload : payload.strict()
}

const build: Builder<PayloadDef, MetaDef, z.ZodObject> = (side) => {
  const payload = payloadObject(side.payload, side.options)
  const meta = z.strictObject({ timestamp: z.number().optional(), correlationId: z.string().optional(), ...side.meta })
  return {
    payload,
    meta,
    extended: side.meta !== undefined,
    envelope: (type) =>
      z.strictObject({
        type: z.literal(type),
        meta: meta.optional().default({}),
        ...(payload === undefined ? {} : { payload })
      })
  }
}

/**
 * Defines a message, positionally or as an object. The result is a strict
 * zod schema of the envelope `{ type, meta, payload }` that the router,
 * `send`, `publish` and the client take as a message.
 *
 * @example
 * const Ping = message("PING", { text: z.string() })
 * const Join = message({ type: "JOIN", payload: { roomId: z.string() }, meta: { token: z.string() } })
 * Ping.safeParse({ type: "PING", meta: {}, payload: { text: "hi" } }).success // true
 *
 * @since 0.1.0
 * @category constructors
 */
export function message<const T extends string, P extends PayloadDef | undefined = undefined, M extends MetaDef | undefined = undefined>(
  spec: { readonly type: T; readonly payload?: P; readonly meta?: M; readonly options?: SpecOptions }
): MessageEnvelope<T, P, M>
export function message<const T extends string, P extends PayloadDef | undefined = undefined, M extends MetaDef | undefined = undefined>(
  type: T,
  payload?: P,
  meta?: M
): MessageEnvelope<T, P, M>
export function message(
  specOrType: string | { readonly type: string; readonly payload?: PayloadDef; readonly meta?: MetaDef; readonly options?: SpecOptions },
  payload?: PayloadDef,
  meta?: MetaDef
): z.ZodObject {
  return defineMessage(build, specOrType, payload, meta)
}

interface SideSpec {
  readonly type: string
  readonly payload?: PayloadDef
  readonly meta?: MetaDef
  readonly options?: SpecOptions
}

/**
 * Defines a request/response pair, positionally or as `{ req, res }`. The
 * result is the request's envelope schema; `response` is the response's.
 *
 * @example
 * const GetUser = rpc("GET_USER", { id: z.string() }, "USER", { name: z.string() })
 * const Search = rpc({ req: { type: "SEARCH", payload: { q: z.string() } }, res: { type: "RESULTS", payload: { hits: z.number() } } })
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
  readonly req: { readonly type: ReqT; readonly payload?: ReqP; readonly meta?: ReqM; readonly options?: SpecOptions }
  readonly res: { readonly type: ResT; readonly payload?: ResP; readonly meta?: ResM; readonly options?: SpecOptions }
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
): z.ZodObject {
  return defineRpc(build, specOrType, request, responseType, response)
}

/**
 * Creates a router: the same as `durable-ws`'s `createRouter`, here so that
 * WS-Kit's `import { z, message, createRouter } from "@ws-kit/zod"` needs
 * only its module name changed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createRouter: <TData = {}, R = never>(options?: RouterOptions) => Router<TData, R> = createCoreRouter

/**
 * WS-Kit's validation plugin. durable-ws validates every message with the
 * schema it was defined with, so `router.plugin(withZod())` changes nothing;
 * it is here so WS-Kit code compiles and runs unchanged.
 *
 * @since 0.1.0
 * @category plugins
 */
export const withZod = (_options?: { readonly validateOutgoing?: boolean }): typeof unchanged => unchanged

/**
 * The whole envelope of a message: `z.infer<typeof M>`.
 *
 * @since 0.1.0
 * @category models
 */
export type InferMessage<S extends z.ZodType> = z.infer<S>
