/**
 * Message schemas, and validating payloads against them.
 *
 * A message is a `type` plus an optional payload schema: an Effect Schema,
 * any Standard Schema v1 validator (zod, valibot, arktype, ...), or a
 * record of fields mixing both. Inbound payloads are decoded with it and
 * outbound ones encoded (or validated) with it, on the server and in the
 * client alike; how a payload travels is the business of `Protocol`.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import type * as Types from "effect/Types"
import { ValidationError } from "./Errors"
import type { Outcome, PayloadCodec } from "./internal/codec"
import { allEffectFields, fieldsCodec, invalidField, isAnySchema, isPending, schemaCodec } from "./internal/codec"
import { isReservedType, progressType } from "./Protocol"
import type { StandardSchemaV1 } from "./StandardSchema"

/**
 * A payload schema: an Effect Schema or any Standard Schema v1 validator.
 * Effect Schemas must not need services to decode or encode (plain data
 * schemas never do).
 *
 * @since 0.1.0
 * @category models
 */
export type PayloadSchema = Schema.Top | StandardSchemaV1

/**
 * A payload given as a record of fields, each an Effect Schema or a
 * Standard Schema.
 *
 * @since 0.1.0
 * @category models
 */
export interface Fields {
  readonly [key: string]: PayloadSchema
}

type EffectKeys<F> = { [K in keyof F]: F[K] extends Schema.Top ? K : never }[keyof F]
type StandardKeys<F> = Exclude<keyof F, EffectKeys<F>>
type EffectView<F, Side extends "Type" | "Encoded"> = { [K in EffectKeys<F>]: F[K] } extends
  infer E extends Schema.Struct.Fields ? Side extends "Type" ? Schema.Struct.Type<E> : Schema.Struct.Encoded<E>
  : never
type StandardSide<S, Side extends "input" | "output"> = S extends StandardSchemaV1
  ? Side extends "input" ? StandardSchemaV1.InferInput<S> : StandardSchemaV1.InferOutput<S>
  : never
// A Standard field that admits `undefined` is an optional key, as `z.object` and `v.object` make it.
type OptionalKeys<F, Side extends "input" | "output"> = {
  [K in StandardKeys<F>]: undefined extends StandardSide<F[K], Side> ? K : never
}[StandardKeys<F>]
type StandardView<F, Side extends "input" | "output"> =
  & { readonly [K in Exclude<StandardKeys<F>, OptionalKeys<F, Side>>]: StandardSide<F[K], Side> }
  & { readonly [K in OptionalKeys<F, Side>]?: StandardSide<F[K], Side> }

/**
 * The decoded payload of a record of {@link Fields}: what handlers get.
 *
 * @since 0.1.0
 * @category models
 */
export type FieldsType<F extends Fields> = Types.Simplify<EffectView<F, "Type"> & StandardView<F, "output">>

/**
 * The wire form of a record of {@link Fields}: what a Standard Schema
 * validator over it accepts.
 *
 * @since 0.1.0
 * @category models
 */
export type FieldsEncoded<F extends Fields> = Types.Simplify<EffectView<F, "Encoded"> & StandardView<F, "input">>

/**
 * What `send`, `reply` and `publish` take for a record of {@link Fields}:
 * the decoded form of Effect fields (they are encoded), the input of
 * Standard fields (they are validated).
 *
 * @since 0.1.0
 * @category models
 */
export type FieldsOutgoing<F extends Fields> = Types.Simplify<EffectView<F, "Type"> & StandardView<F, "input">>

/**
 * The schema of a record of fields with at least one Standard Schema among
 * them. It is itself a Standard Schema (vendor `"durable-ws"`) whose
 * `validate` decodes a payload; a record of Effect fields only becomes a
 * `Schema.Struct` instead.
 *
 * @since 0.1.0
 * @category models
 */
export interface FieldsSchema<F extends Fields = Fields> extends StandardSchemaV1<FieldsEncoded<F>, FieldsType<F>> {
  readonly fields: F
}

const codecs = Symbol.for("durable-ws/Message/codecs")
const metaCodecs = Symbol.for("durable-ws/Message/metaCodecs")

/**
 * A message definition: its wire `type` and the schema of its payload
 * (`undefined` for a message without payload).
 *
 * @since 0.1.0
 * @category models
 */
export interface MessageSchema<
  Type extends string = string,
  S extends PayloadSchema | undefined = PayloadSchema | undefined
> {
  readonly _tag: "MessageSchema"
  readonly type: Type
  readonly schema: S
  /** The payload codecs, built once with the message: opaque, and not part of the wire contract. */
  readonly [codecs]: unknown
  /**
   * The meta codecs, when the message declares a meta schema (its extended
   * meta, then also its `meta` field): inbound frames must pass it, and
   * handlers get it typed. Opaque, like the payload codecs.
   */
  readonly [metaCodecs]?: unknown
}

/**
 * The key under which a schema that stands for a message keeps the message
 * it stands for. `durable-ws/zod` and `durable-ws/valibot` build each
 * message as a schema of its whole envelope (`Ping.safeParse(frame)`) with
 * the message under this key, so the router, `send`, `publish` and the
 * client take either.
 *
 * @since 0.1.0
 * @category symbols
 */
export const MessageDefinition: unique symbol = Symbol.for("durable-ws/Message/definition")

/**
 * Something that stands for a message: a validator's schema of the whole
 * envelope, carrying the {@link MessageSchema} under {@link MessageDefinition}.
 *
 * @since 0.1.0
 * @category models
 */
export interface DefinesMessage<M extends MessageSchema = MessageSchema> {
  readonly [MessageDefinition]: M
}

/**
 * What every API that takes a message accepts: a message, or a schema that
 * stands for one.
 *
 * @since 0.1.0
 * @category models
 */
export type MessageLike = MessageSchema | DefinesMessage

/**
 * What every API that takes an rpc accepts.
 *
 * @since 0.1.0
 * @category models
 */
export type RpcLike = RpcSchema | DefinesMessage<RpcSchema>

/**
 * The message a {@link MessageLike} stands for.
 *
 * @since 0.1.0
 * @category models
 */
export type MessageOf<M> = M extends DefinesMessage<infer D extends MessageSchema> ? D
  : M extends MessageSchema ? M
  : never

/**
 * The rpc an {@link RpcLike} stands for.
 *
 * @since 0.1.0
 * @category models
 */
export type RpcOf<M> = M extends DefinesMessage<infer D extends RpcSchema> ? D
  : M extends RpcSchema ? M
  : never

/**
 * The message a {@link MessageLike} stands for, at run time.
 *
 * @since 0.1.0
 * @category guards
 */
export const messageOf = <M extends MessageLike>(m: M): MessageOf<M> =>
  (MessageDefinition in m ? m[MessageDefinition] : m) as MessageOf<M>

/**
 * The message type literal of a schema that stands for a message (`"PING"`),
 * as WS-Kit's `InferType`.
 *
 * @since 0.1.0
 * @category models
 */
export type InferType<S extends DefinesMessage> = S[typeof MessageDefinition]["type"]

/**
 * The payload type of a schema that stands for a message (`never` for one
 * without payload), as WS-Kit's `InferPayload`.
 *
 * @since 0.1.0
 * @category models
 */
export type InferPayload<S extends DefinesMessage> = S[typeof MessageDefinition]["schema"] extends undefined ? never
  : Payload<S>

/**
 * The extended meta fields of a schema that stands for a message (`{}` for
 * none), as WS-Kit's `InferMeta`.
 *
 * @since 0.1.0
 * @category models
 */
export type InferMeta<S extends DefinesMessage> = S[typeof MessageDefinition] extends
  { readonly meta: infer M extends PayloadSchema } ? Omit<Decoded<M>, "timestamp" | "correlationId"> : {}

/**
 * The response payload of a schema that stands for an rpc (`never` for a
 * message), as WS-Kit's `InferResponse`.
 *
 * @since 0.1.0
 * @category models
 */
export type InferResponse<S extends DefinesMessage> = S[typeof MessageDefinition] extends RpcSchema
  ? Payload<S[typeof MessageDefinition]["response"]>
  : never

/**
 * The rpc an {@link RpcLike} stands for, at run time.
 *
 * @since 0.1.0
 * @category guards
 */
export const rpcOf = <M extends RpcLike>(m: M): RpcOf<M> =>
  (MessageDefinition in m ? m[MessageDefinition] : m) as RpcOf<M>

/**
 * A request/response pair: the request is a message whose handler must
 * `reply` with a payload of `response`.
 *
 * @since 0.1.0
 * @category models
 */
export interface RpcSchema<
  Type extends string = string,
  S extends PayloadSchema | undefined = PayloadSchema | undefined,
  Response extends MessageSchema = MessageSchema,
  Progress extends MessageSchema | undefined = MessageSchema | undefined
> extends MessageSchema<Type, S> {
  readonly response: Response
  /** What the handler's `ctx.progress` sends before the reply; undefined when the rpc declares none. */
  readonly progress: Progress
}

type Decoded<S> = S extends Schema.Top ? S["Type"]
  : S extends StandardSchemaV1 ? StandardSchemaV1.InferOutput<S>
  : undefined

type Outgoing<S> = S extends Schema.Top ? S["Type"]
  : S extends FieldsSchema<infer F> ? FieldsOutgoing<F>
  : S extends StandardSchemaV1 ? StandardSchemaV1.InferInput<S>
  : undefined

/**
 * The decoded progress payload of an rpc (`unknown` when it declares none:
 * its handler may still send progress, unchecked).
 *
 * @since 0.1.0
 * @category models
 */
export type ProgressOf<M extends RpcLike> = RpcOf<M>["progress"] extends MessageSchema ? Payload<RpcOf<M>["progress"]>
  : unknown

/**
 * The decoded payload type of a message (`undefined` when it has none):
 * an Effect Schema's `Type`, a Standard Schema's output.
 *
 * @since 0.1.0
 * @category models
 */
export type Payload<M extends MessageLike> = Decoded<MessageOf<M>["schema"]>

/**
 * The decoded `meta` of a message: its declared meta schema's type, or a
 * plain record when it declares none.
 *
 * @since 0.1.0
 * @category models
 */
export type MetaOf<M extends MessageLike> = MessageOf<M> extends { readonly meta: infer S extends PayloadSchema }
  ? Readonly<Decoded<S>> & Readonly<Record<string, unknown>>
  : Readonly<Record<string, unknown>>

/**
 * The payload type `send`, `reply` and `publish` take for a message: an
 * Effect Schema's `Type` (it is encoded on the way out), a Standard
 * Schema's input (it is validated, and its output sent).
 *
 * @since 0.1.0
 * @category models
 */
export type OutgoingPayload<M extends MessageLike> = Outgoing<MessageOf<M>["schema"]>

/**
 * The arguments that follow a message in `send`/`publish`: the payload when
 * the message has one, nothing when it does not.
 *
 * @since 0.1.0
 * @category models
 */
export type PayloadArgs<M extends MessageLike, Opts> = MessageOf<M>["schema"] extends PayloadSchema
  ? [payload: OutgoingPayload<M>, options?: Opts]
  : [payload?: undefined, options?: Opts]

/**
 * Like {@link PayloadArgs}, with the options required: the form of `send`
 * that returns a Promise (`{ waitFor }`).
 *
 * @since 0.1.0
 * @category models
 */
export type PayloadArgsWithOptions<M extends MessageLike, Opts> = MessageOf<M>["schema"] extends PayloadSchema
  ? [payload: OutgoingPayload<M>, options: Opts]
  : [payload: undefined, options: Opts]

const checkType = (type: string): void => {
  if (typeof type !== "string" || type.length === 0) {
    throw new TypeError("durable-ws: a message type must be a non-empty string")
  }
  if (isReservedType(type)) {
    throw new TypeError(`durable-ws: message type "${type}" is reserved ("$" and "__" prefixes belong to the protocol)`)
  }
}

const toStandardResult = (outcome: Outcome): StandardSchemaV1.Result<unknown> =>
  outcome.ok ? { value: outcome.value } : { issues: outcome.issues }

const fieldsSchema = (fields: Fields, codec: PayloadCodec): FieldsSchema => {
  const validate = (value: unknown): StandardSchemaV1.Result<unknown> | Promise<StandardSchemaV1.Result<unknown>> => {
    const outcome = codec.decode(value)
    return isPending(outcome) ? outcome.then(toStandardResult) : toStandardResult(outcome)
  }
  return { fields, "~standard": { version: 1, vendor: "durable-ws", validate } } as FieldsSchema
}

interface Definition {
  readonly schema: PayloadSchema | undefined
  readonly codec: PayloadCodec | undefined
}

const none: Definition = { schema: undefined, codec: undefined }

const define = (type: string, payload: PayloadInput): Definition => {
  if (payload === undefined) return none
  if (isAnySchema(payload)) return { schema: payload, codec: schemaCodec(payload) }
  if (!Predicate.isObject(payload) || Array.isArray(payload)) {
    throw new TypeError(`durable-ws: the payload of "${type}" must be a record of fields, a schema, or absent`)
  }
  const fields = payload as Readonly<Record<string, unknown>>
  const bad = invalidField(fields)
  if (bad !== undefined) {
    throw new TypeError(`durable-ws: field "${bad}" of "${type}" is neither an Effect Schema nor a Standard Schema`)
  }
  if (allEffectFields(fields)) {
    const struct = Schema.Struct(fields)
    return { schema: struct, codec: schemaCodec(struct) }
  }
  const codec = fieldsCodec(fields as Fields)
  return { schema: fieldsSchema(fields as Fields, codec), codec }
}

const make = (type: string, payload: PayloadInput, reserved = false, meta: PayloadInput = undefined): MessageSchema => {
  if (!reserved) checkType(type)
  const { schema, codec } = define(type, payload)
  if (meta === undefined) return { _tag: "MessageSchema", type, schema, [codecs]: codec }
  const declared = define(type, meta)
  const withMeta: MessageSchema & { readonly meta: PayloadSchema | undefined } = {
    _tag: "MessageSchema",
    type,
    schema,
    meta: declared.schema,
    [codecs]: codec,
    [metaCodecs]: declared.codec
  }
  return withMeta
}

/**
 * What a payload can be given as: a record of fields, a schema (Effect or
 * Standard), or nothing.
 *
 * @since 0.1.0
 * @category models
 */
export type PayloadInput = Schema.Struct.Fields | Fields | PayloadSchema | undefined

/**
 * The schema a {@link PayloadInput} becomes: the schema itself, a
 * `Schema.Struct` for Effect fields, a {@link FieldsSchema} when any field
 * is a Standard Schema.
 *
 * @since 0.1.0
 * @category models
 */
export type SchemaOf<P extends PayloadInput> = P extends undefined ? undefined
  : P extends Schema.Top ? P
  : P extends StandardSchemaV1 ? P
  : P extends Schema.Struct.Fields ? Schema.Struct<P>
  : P extends Fields ? FieldsSchema<P>
  : never

/**
 * The `meta` field a message declared with a meta schema carries.
 *
 * @since 0.1.0
 * @category models
 */
export type MetaField<Meta extends PayloadInput> = [Meta] extends [undefined] ? {} : { readonly meta: SchemaOf<Meta> }

/**
 * Defines a message. The payload is a record of fields, a schema, or
 * absent; a schema or field is an Effect Schema or any Standard Schema v1
 * validator, mixed freely. An optional third argument declares the frame's
 * extended `meta` (fields or a schema): inbound frames must pass it, and
 * `ctx.meta` is typed by it.
 *
 * @example
 * const Ping = message("PING", { text: Schema.String })
 * const Zed = message("ZED", { text: z.string(), at: Schema.Number })
 * const Bare = message("BARE")
 * const Say = message("SAY", { text: Schema.String }, { roomId: Schema.String })
 *
 * @since 0.1.0
 * @category constructors
 */
export const message = <
  const Type extends string,
  const P extends PayloadInput = undefined,
  const Meta extends PayloadInput = undefined
>(
  type: Type,
  payload?: P,
  meta?: Meta
): MessageSchema<Type, SchemaOf<P>> & MetaField<Meta> =>
  make(type, payload, false, meta) as MessageSchema<Type, SchemaOf<P>> & MetaField<Meta>

/**
 * Options of {@link rpc}: `progress` declares what the handler may send
 * with `ctx.progress(...)` before it replies (fields or a schema).
 *
 * @since 0.1.0
 * @category models
 */
export interface RpcOptions<P extends PayloadInput = PayloadInput, Meta extends PayloadInput = PayloadInput> {
  readonly progress?: P
  /** The request's extended `meta` (fields or a schema), as `message`'s third argument. */
  readonly meta?: Meta
}

/**
 * The progress message an {@link RpcOptions} declares (`undefined` for none).
 *
 * @since 0.1.0
 * @category models
 */
export type ProgressMessage<O> = O extends { readonly progress: infer P extends PayloadInput }
  ? [P] extends [undefined] ? undefined : MessageSchema<typeof progressType, SchemaOf<P>>
  : undefined

/**
 * The `meta` field of an rpc whose {@link RpcOptions} declare one.
 *
 * @since 0.1.0
 * @category models
 */
export type RequestMeta<O> = O extends { readonly meta: infer Meta extends PayloadInput } ? MetaField<Meta> : {}

/**
 * Defines a request/response pair. The handler registered with
 * `router.rpc` replies with the response payload; the reply carries the
 * request's `meta.correlationId`. Either side may be fields, a schema, or
 * `undefined`. With `{ progress }` the handler may also send progress
 * (`ctx.progress(...)`) before its reply.
 *
 * @example
 * const GetUser = rpc("GET_USER", { id: Schema.String }, "USER", { name: Schema.String })
 * const Export = rpc("EXPORT", undefined, "EXPORTED", { url: Schema.String }, { progress: { done: Schema.Number } })
 *
 * @since 0.1.0
 * @category constructors
 */
export const rpc = <
  const ReqType extends string,
  const Req extends PayloadInput,
  const ResType extends string,
  const Res extends PayloadInput,
  const O extends RpcOptions = {}
>(
  requestType: ReqType,
  request: Req,
  responseType: ResType,
  response: Res,
  options?: O
): RpcSchema<ReqType, SchemaOf<Req>, MessageSchema<ResType, SchemaOf<Res>>, ProgressMessage<O>> & RequestMeta<O> => {
  const responseMessage = make(responseType, response)
  const progress = options?.progress === undefined ? undefined : make(progressType, options.progress, true)
  return { ...make(requestType, request, false, options?.meta), response: responseMessage, progress } as
    & RpcSchema<ReqType, SchemaOf<Req>, MessageSchema<ResType, SchemaOf<Res>>, ProgressMessage<O>>
    & RequestMeta<O>
}

/**
 * @since 0.1.0
 * @category guards
 */
export const isRpc = (m: MessageSchema): m is RpcSchema => "response" in m

/**
 * Whether a message declares a meta schema that inbound frames must pass.
 *
 * @since 0.1.0
 * @category guards
 */
export const declaresMeta = (m: MessageSchema): boolean => m[metaCodecs] !== undefined

/**
 * Validates an inbound frame's `meta` against the message's declared meta
 * schema (`{ ok: true }` with the meta as it came when it declares none).
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeMeta = (m: MessageSchema, meta: unknown): PayloadResult | Promise<PayloadResult> => {
  const c = m[metaCodecs] as PayloadCodec | undefined
  if (c === undefined) return { ok: true, value: meta }
  const outcome = c.decode(meta)
  return isPending(outcome) ? outcome.then((settled) => metaResult(m, settled)) : metaResult(m, outcome)
}

const metaResult = (m: MessageSchema, outcome: Outcome): PayloadResult =>
  outcome.ok ? outcome : {
    ok: false,
    error: new ValidationError({ message: `Invalid meta for "${m.type}"`, issues: outcome.issues })
  }

// ---------------------------------------------------------------------------
// Payload validation
// ---------------------------------------------------------------------------

/**
 * The outcome of validating a payload.
 *
 * @since 0.1.0
 * @category models
 */
export type PayloadResult =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly error: ValidationError }

const noPayload = (m: MessageSchema): PayloadResult => ({
  ok: false,
  error: new ValidationError({
    message: `Message "${m.type}" takes no payload`,
    issues: [{ path: [], message: "Expected no payload" }]
  })
})

const toResult = (m: MessageSchema, outcome: Outcome): PayloadResult =>
  outcome.ok
    ? outcome
    : { ok: false, error: new ValidationError({ message: `Invalid payload for "${m.type}"`, issues: outcome.issues }) }

const runCodec = (
  m: MessageSchema,
  input: unknown,
  direction: "decode" | "decodeParsed" | "encode"
): PayloadResult | Promise<PayloadResult> => {
  const c = m[codecs] as PayloadCodec | undefined
  if (c === undefined) return input === undefined || input === null ? { ok: true, value: undefined } : noPayload(m)
  const outcome = c[direction](input)
  return isPending(outcome) ? outcome.then((settled) => toResult(m, settled)) : toResult(m, outcome)
}

/**
 * Validates an inbound payload against the message's schema. The result
 * is a Promise only when an asynchronous Standard Schema validator (an
 * async zod refinement, a valibot `*Async` schema) answered with one.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodePayload = (m: MessageSchema, input: unknown): PayloadResult | Promise<PayloadResult> =>
  runCodec(m, input, "decode")

/**
 * {@link decodePayload} for a payload just parsed from a frame, which
 * nothing else holds: a payload that already is exactly what the schema
 * outputs (the declared keys, in order, and nothing else) may come back
 * as the same object instead of a copy.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeParsedPayload = (m: MessageSchema, input: unknown): PayloadResult | Promise<PayloadResult> =>
  runCodec(m, input, "decodeParsed")

/**
 * Validates an outbound payload and turns it into its JSON-ready form: an
 * Effect Schema encodes it; a Standard Schema, which has no encoder,
 * validates it and yields its output. A Promise only for an asynchronous
 * validator.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodePayload = (m: MessageSchema, input: unknown): PayloadResult | Promise<PayloadResult> =>
  runCodec(m, input, "encode")

/**
 * Whether a payload result is still being computed by an asynchronous
 * validator.
 *
 * @since 0.1.0
 * @category guards
 */
export const isPendingResult: (
  result: PayloadResult | Promise<PayloadResult>
) => result is Promise<PayloadResult> = isPending
