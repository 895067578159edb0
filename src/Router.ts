/**
 * The router: message routes, middleware, lifecycle hooks, and the dispatch
 * that carries one frame from decoding to its handler.
 *
 * Handlers may return nothing, a Promise, or an Effect. Effect handlers may
 * use the built-in services ({@link Connection}, {@link Connections},
 * {@link PubSub}, {@link Storage}) and the services `R` declared on the
 * router, which the Durable Object's `layer` must then provide.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Predicate from "effect/Predicate"
import type { Connection } from "./Connection"
import type { Connections } from "./Connections"
import { HandlerTimeout, toWireError, UnknownMessageType, ValidationError } from "./Errors"
import type { WireError } from "./Errors"
import type { CloseContext, ConnectionContext, MessageContext, RpcContext } from "./HandlerContext"
import { HandlerContext } from "./HandlerContext"
import { currentInstance } from "./internal/als"
import type { LiveConnection } from "./internal/connection"
import type { Instance } from "./internal/instance"
import type { MessageSchema, PayloadArgs, RpcSchema } from "./Message"
import { decodeEnvelope, decodePayload, encodeErrorFrame, heartbeat, isInvalidFrame, isReservedType } from "./Message"
import type { PublishOptions, PublishResult, PubSub } from "./PubSub"
import type { Storage } from "./Storage"

/**
 * The services every Effect handler may use without a layer.
 *
 * @since 0.1.0
 * @category models
 */
export type BuiltinServices = Connection | Connections | PubSub | Storage

/**
 * What a handler may return: nothing, a Promise, or an Effect whose
 * requirements the router (and so the Durable Object's layer) covers.
 *
 * @since 0.1.0
 * @category models
 */
export type HandlerResult<R> = void | undefined | PromiseLike<unknown> | Effect.Effect<unknown, unknown, R | BuiltinServices>

/**
 * @since 0.1.0
 * @category models
 */
export type Handler<Ctx, R = never> = (ctx: Ctx) => HandlerResult<R>

/**
 * Middleware runs before every message handler, in registration order.
 * Not calling `next` short-circuits the handler.
 *
 * @since 0.1.0
 * @category models
 */
export type Middleware<TData = {}, R = never> = (
  ctx: MessageContext<MessageSchema, TData>,
  next: () => Promise<void>
) => HandlerResult<R>

/**
 * @since 0.1.0
 * @category models
 */
export type ErrorHook<TData = {}> = (error: unknown, ctx: ConnectionContext<TData> | undefined) => void

type AnyHandler = (ctx: HandlerContext) => HandlerResult<unknown>
type AnyMiddleware = (ctx: HandlerContext, next: () => Promise<void>) => HandlerResult<unknown>

/**
 * The parts of a router the runtime reads, with handler types erased.
 *
 * @internal
 */
export interface RouterTables {
  readonly routes: ReadonlyMap<string, Route>
  readonly middleware: ReadonlyArray<AnyMiddleware>
  readonly openHooks: ReadonlyArray<AnyHandler>
  readonly closeHooks: ReadonlyArray<AnyHandler>
  readonly errorHooks: ReadonlyArray<(error: unknown, ctx: never) => void>
}

/** @internal */
export interface Route {
  readonly message: MessageSchema
  readonly handler: AnyHandler
  readonly response: MessageSchema | undefined
}

/**
 * A typed WebSocket router. Define it once (usually at module level) and
 * hand it to `createDurableObjectHandler` or `WebSocketDurableObject`.
 *
 * @since 0.1.0
 * @category models
 */
export class Router<TData = {}, R = never> {
  /** @internal */
  readonly routes = new Map<string, Route>()
  /** @internal */
  readonly middleware: Array<AnyMiddleware> = []
  /** @internal */
  readonly openHooks: Array<AnyHandler> = []
  /** @internal */
  readonly closeHooks: Array<AnyHandler> = []
  /** @internal */
  readonly errorHooks: Array<ErrorHook<TData>> = []
  declare readonly "~requirements": R

  private add(message: MessageSchema, handler: AnyHandler, response: MessageSchema | undefined): this {
    if (this.routes.has(message.type)) {
      throw new Error(`durable-ws: a handler for "${message.type}" is already registered`)
    }
    this.routes.set(message.type, { message, handler, response })
    return this
  }

  /** Handles a message type. */
  on<M extends MessageSchema>(message: M, handler: Handler<MessageContext<M, TData>, R>): this {
    return this.add(message, handler as unknown as AnyHandler, undefined)
  }

  /** Handles an RPC request; the handler answers with `ctx.reply(...)`. */
  rpc<M extends RpcSchema>(message: M, handler: Handler<RpcContext<M, TData>, R>): this {
    return this.add(message, handler as unknown as AnyHandler, message.response)
  }

  /** Adds middleware that runs before every message handler. */
  use(middleware: Middleware<TData, R>): this {
    this.middleware.push(middleware as unknown as AnyMiddleware)
    return this
  }

  /** Runs when a connection opens, before its first message is handled. */
  onOpen(handler: Handler<ConnectionContext<TData>, R>): this {
    this.openHooks.push(handler as unknown as AnyHandler)
    return this
  }

  /** Runs when a connection closes, with the client's code and reason. */
  onClose(handler: Handler<CloseContext<TData>, R>): this {
    this.closeHooks.push(handler as unknown as AnyHandler)
    return this
  }

  /** Sees every handler failure, with the original error. */
  onError(hook: ErrorHook<TData>): this {
    this.errorHooks.push(hook)
    return this
  }

  /**
   * Publishes to subscribers of `topic` in the Durable Object instance that
   * is handling the current message — never another instance. Outside a
   * handler there is no current instance: use the handler's `publish`.
   */
  publish<M extends MessageSchema>(
    topic: string,
    message: M,
    ...[payload, options]: PayloadArgs<M, PublishOptions>
  ): Promise<PublishResult> {
    const instance = currentInstance()
    if (instance === undefined) {
      return Promise.resolve({
        ok: false,
        error: "FAILED_PRECONDITION",
        message: "router.publish needs the instance handling the current message and none is known here; " +
          "use ctx.publish inside handlers, or the Durable Object handler's publish outside them"
      })
    }
    return instance.publish(topic, message, payload, options, undefined)
  }
}

/**
 * Creates a router. `TData` is the connection data `authenticate` returns;
 * `R` lists the services Effect handlers need beyond the built-in ones.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createRouter = <TData = {}, R = never>(): Router<TData, R> => new Router<TData, R>()

// ---------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------

const toEffect = (result: HandlerResult<unknown>): Effect.Effect<unknown, unknown> => {
  if (Effect.isEffect(result)) return result as Effect.Effect<unknown, unknown>
  if (Predicate.isPromiseLike(result)) return Effect.tryPromise({ try: () => result, catch: (error) => error })
  return Effect.void
}

/** Calls user code; a synchronous throw becomes a failure like any other. */
const invoke = <Args extends ReadonlyArray<unknown>>(
  f: (...args: Args) => HandlerResult<unknown>,
  ...args: Args
): Effect.Effect<unknown, unknown> =>
  Effect.suspend(() => {
    try {
      return toEffect(f(...args))
    } catch (error) {
      return Effect.fail(error)
    }
  })

const middlewareChain = (
  instance: Instance,
  connection: LiveConnection,
  middleware: ReadonlyArray<AnyMiddleware>,
  index: number,
  handler: AnyHandler,
  ctx: HandlerContext
): Effect.Effect<unknown, unknown> => {
  if (index === middleware.length) return invoke(handler, ctx)
  return Effect.suspend(() => {
    let downstream: Promise<void> | undefined
    let settled = false
    const next = () =>
      downstream ??= instance
        .runPromise(middlewareChain(instance, connection, middleware, index + 1, handler, ctx), connection)
        .then(() => undefined)
        .finally(() => {
          settled = true
        })
    return Effect.flatMap(invoke(middleware[index]!, ctx, next), () => {
      // A middleware that awaited next() has already seen its outcome; one that
      // did not is still waited for, and its failure is not lost.
      if (downstream === undefined || settled) return Effect.void
      const pending = downstream
      return Effect.tryPromise({ try: () => pending, catch: (error) => error })
    })
  })
}

const sendError = (connection: LiveConnection, error: WireError, correlationId: string | undefined) => {
  connection.sendFrame(encodeErrorFrame(error, correlationId))
}

const reject = (connection: LiveConnection, error: unknown, correlationId: string | undefined): undefined => {
  sendError(connection, toWireError(error), correlationId)
  return undefined
}

/**
 * Reports a failed handler: the client gets the mapped error (generic for
 * unknown errors), `onError` gets the original, the connection stays open.
 *
 * @internal
 */
export const reportError = (
  instance: Instance,
  ctx: HandlerContext,
  error: unknown,
  notifyClient: boolean
): void => {
  const wire = toWireError(error)
  if (notifyClient) sendError(ctx.connection, wire, ctx.correlationId)
  const hooks = instance.router.errorHooks
  if (hooks.length === 0) {
    if (wire.code === "INTERNAL") console.error("durable-ws: handler failed", error)
    return
  }
  for (const hook of hooks) {
    try {
      hook(error, ctx as never)
    } catch (hookError) {
      console.error("durable-ws: onError hook threw", hookError)
    }
  }
}

/**
 * {@link reportError} for an Effect's failure cause.
 *
 * @internal
 */
export const reportFailure = (
  instance: Instance,
  ctx: HandlerContext,
  cause: Cause.Cause<unknown>,
  notifyClient: boolean
): Effect.Effect<void> => Effect.sync(() => reportError(instance, ctx, Cause.squash(cause), notifyClient))

// An unknown type is client input: name it in the error, but never reflect a huge one back whole.
const shownType = (type: string): string => type.length <= 64 ? type : `${type.slice(0, 64)}…`

const missingReply: WireError = { code: "INTERNAL", message: "RPC handler completed without replying" }

interface Prepared {
  readonly ctx: HandlerContext
  readonly route: Route
}

/**
 * Decode → route → validate. A frame that fails any step is answered here,
 * with the error the spec prescribes, and yields nothing to handle.
 */
const prepare = (instance: Instance, connection: LiveConnection, frame: string | ArrayBuffer): Prepared | undefined => {
  const envelope = decodeEnvelope(frame, instance.maxPayloadBytes)
  if (isInvalidFrame(envelope)) return reject(connection, envelope.error, envelope.correlationId)
  const { type, correlationId } = envelope
  if (type === "__heartbeat") {
    connection.sendFrame(heartbeat.response)
    return undefined
  }
  const route = isReservedType(type) ? undefined : instance.router.routes.get(type)
  if (route === undefined) {
    return reject(
      connection,
      new UnknownMessageType({
        type,
        message: isReservedType(type)
          ? `Message type "${shownType(type)}" is reserved`
          : `No handler for message type "${shownType(type)}"`
      }),
      correlationId
    )
  }
  if (route.response !== undefined && correlationId === undefined) {
    return reject(
      connection,
      new ValidationError({ message: `RPC request "${type}" requires meta.correlationId` }),
      undefined
    )
  }
  const payload = decodePayload(route.message, envelope.payload)
  if (!payload.ok) return reject(connection, payload.error, correlationId)
  const ctx = new HandlerContext(
    instance,
    connection,
    type,
    payload.value,
    envelope.meta,
    correlationId,
    route.response
  )
  return { ctx, route }
}

/** A handler finished: an rpc that did not answer gets `RPC_ERROR INTERNAL`. */
const completed = ({ ctx, route }: Prepared): void => {
  if (route.response !== undefined && !ctx.replied) sendError(ctx.connection, missingReply, ctx.correlationId)
}

/** The general path: middleware and the handler deadline, as one Effect that never fails. */
const runHandler = (instance: Instance, prepared: Prepared): Effect.Effect<void> => {
  const { ctx, route } = prepared
  const middleware = instance.router.middleware
  let program = middleware.length === 0
    ? invoke(route.handler, ctx)
    : middlewareChain(instance, ctx.connection, middleware, 0, route.handler, ctx)
  const timeoutMs = instance.handlerTimeoutMs
  if (timeoutMs !== undefined) {
    program = Effect.timeoutOrElse(program, {
      duration: timeoutMs,
      orElse: () => {
        // A promise handler cannot be stopped: its late reply must not follow the error it got.
        ctx.replied = true
        return Effect.fail(
          new HandlerTimeout({ timeoutMs, message: `Handler for "${ctx.type}" ran past ${timeoutMs} ms` })
        )
      }
    })
  }
  return settleEffect(instance, prepared, program)
}

const settleEffect = (
  instance: Instance,
  prepared: Prepared,
  program: Effect.Effect<unknown, unknown>
): Effect.Effect<void> =>
  Effect.matchCauseEffect(program, {
    onFailure: (cause) => reportFailure(instance, prepared.ctx, cause, true),
    onSuccess: () => Effect.sync(() => completed(prepared))
  })

/**
 * Carries one inbound frame through decode → route → validate →
 * middleware → handler, and turns every failure into the wire error the
 * spec prescribes. Never rejects; returns nothing when the frame was
 * handled synchronously.
 *
 * Without middleware or a deadline, a handler that returns nothing or a
 * Promise is called directly: starting a fiber only to await a Promise
 * would cost more than the rest of the path. Effect handlers, middleware
 * and deadlines run as one Effect.
 *
 * @internal
 */
export const dispatch = (
  instance: Instance,
  connection: LiveConnection,
  frame: string | ArrayBuffer
): Promise<void> | undefined => {
  const prepared = prepare(instance, connection, frame)
  if (prepared === undefined) return undefined
  if (instance.router.middleware.length > 0 || instance.handlerTimeoutMs !== undefined) {
    return instance.runGuarded(runHandler(instance, prepared), connection)
  }
  const { ctx, route } = prepared
  let result: HandlerResult<unknown>
  try {
    result = route.handler(ctx)
  } catch (error) {
    reportError(instance, ctx, error, true)
    return undefined
  }
  if (Effect.isEffect(result)) {
    return instance.runGuarded(settleEffect(instance, prepared, result as Effect.Effect<unknown, unknown>), connection)
  }
  if (Predicate.isPromiseLike(result)) {
    return Promise.resolve(result).then(
      () => completed(prepared),
      (error: unknown) => reportError(instance, ctx, error, true)
    )
  }
  completed(prepared)
  return undefined
}

/**
 * Runs the lifecycle hooks (`onOpen`, `onClose`) in order; a failing hook is
 * reported to `onError` and does not stop the others.
 *
 * @internal
 */
export const runLifecycle = (
  instance: Instance,
  hooks: ReadonlyArray<AnyHandler>,
  ctx: HandlerContext
): Effect.Effect<void> =>
  Effect.forEach(
    hooks,
    (hook) =>
      Effect.matchCauseEffect(invoke(hook, ctx), {
        onFailure: (cause) => reportFailure(instance, ctx, cause, false),
        onSuccess: () => Effect.void
      }),
    { discard: true }
  )

/**
 * Unwraps an Exit for promise callers: the original error, not a wrapper.
 *
 * @internal
 */
export const exitToPromise = <A>(exit: Exit.Exit<A, unknown>): Promise<A> =>
  Exit.isSuccess(exit) ? Promise.resolve(exit.value) : Promise.reject(Cause.squash(exit.cause))
