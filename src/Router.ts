/**
 * The router: message routes, middleware and lifecycle hooks. It only
 * records them; the Durable Object handler (or `Testing.make`) runs them.
 *
 * Handlers may return nothing, a Promise, or an Effect. Effect handlers may
 * use the built-in services ({@link Connection}, {@link Connections},
 * {@link PubSub}, {@link Storage}) and the services `R` declared on the
 * router, which the Durable Object's `layer` must then provide.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import type { Connection } from "./Connection"
import type { Connections } from "./Connections"
import type { CloseContext, ConnectionContext, MessageContext, OpenContext, RpcContext } from "./HandlerContext"
import type { AnyErrorHook, AnyHandler, AnyMiddleware, AnyObserver, RouterTables } from "./internal/server/routes"
import { registerTables, tablesOf } from "./internal/server/routes"
import { currentScope } from "./internal/server/scope"
import type { MessageLike, PayloadArgs, RpcLike, RpcSchema } from "./Message"
import { messageOf, rpcOf } from "./Message"
import type { Presence } from "./Presence"
import type { PublishOptions, PublishResult, PubSub } from "./PubSub"
import type { Storage } from "./Storage"

/**
 * The services every Effect handler may use without a layer.
 *
 * @since 0.1.0
 * @category models
 */
export type BuiltinServices = Connection | Connections | PubSub | Presence | Storage

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
  ctx: MessageContext<MessageLike, TData>,
  next: () => Promise<void>
) => HandlerResult<R>

/**
 * Sees every handler failure (with the handler's context), every error a
 * handler sends with `ctx.error`, and every frame refused before reaching a
 * handler — not JSON, no type, an unknown type, over the size limit — with
 * no context. Returning `false` keeps the error frame the library would
 * send for a failure or a refused frame from being sent.
 *
 * @since 0.1.0
 * @category models
 */
export type ErrorHook<TData = {}> = (
  error: unknown,
  ctx: (ConnectionContext<TData> & { readonly type?: string }) | undefined
) => void | boolean | PromiseLike<void>

/**
 * What a publish looked like, for {@link RouterObserver.onPublish}.
 *
 * @since 0.1.0
 * @category models
 */
export interface PublishRecord {
  readonly topic: string
  readonly type: string
  /** The payload as it went on the wire (encoded). */
  readonly payload: unknown
  readonly meta?: Readonly<Record<string, unknown>> | undefined
}

/**
 * What `router.observe` can watch (every callback optional), for tests
 * and monitoring. Callbacks run synchronously, in registration order; one
 * that throws is logged and does not stop the others.
 *
 * @since 0.1.0
 * @category models
 */
export interface RouterObserver<TData = {}> {
  /** A publish that was delivered (whatever the number of subscribers). */
  readonly onPublish?: (record: PublishRecord) => void
  /** Any error `onError` hooks see, with the client and message type when known. */
  readonly onError?: (error: unknown, meta?: { readonly clientId?: string; readonly type?: string }) => void
  readonly onConnectionOpen?: (clientId: string, data: Readonly<ConnectionContext<TData>["data"]>) => void
  readonly onConnectionClose?: (clientId: string, meta?: { readonly code?: number; readonly reason?: string }) => void
}

/**
 * `createRouter`'s options. `limits.maxPayloadBytes` is the largest inbound
 * frame (the Durable Object handler's own `maxPayloadBytes` wins when both
 * are set); `limits.maxPending` is how many frames one connection may have
 * waiting or running at once before more are refused with
 * `RESOURCE_EXHAUSTED`.
 *
 * @since 0.1.0
 * @category models
 */
export interface RouterOptions {
  readonly limits?: RouterLimits
  /**
   * Accepted for WS-Kit's sake and not needed: the runtime itself answers
   * `{"type":"__heartbeat"}` (without waking a hibernated object), and
   * clients decide when a connection is dead.
   */
  readonly heartbeat?: { readonly intervalMs?: number; readonly timeoutMs?: number }
  /** Accepted for WS-Kit's sake: a failing handler's client always gets an error frame (an `onError` hook returning `false` keeps it). */
  readonly autoSendErrorOnThrow?: boolean
  /** Accepted for WS-Kit's sake: an unexpected error's details never reach the client. */
  readonly exposeErrorDetails?: boolean
  /** Accepted for WS-Kit's sake: an rpc left unanswered gets `DEADLINE_EXCEEDED` at its deadline instead of a warning. */
  readonly warnIncompleteRpc?: boolean
}

/**
 * What `merge` and `mount` do with a type both routers handle.
 *
 * @since 0.1.0
 * @category models
 */
export type OnConflict = "error" | "skip" | "replace"

/**
 * `createRouter`'s `limits`.
 *
 * @since 0.1.0
 * @category models
 */
export interface RouterLimits {
  readonly maxPayloadBytes?: number | undefined
  readonly maxPending?: number | undefined
}

/**
 * `merge`'s and `mount`'s options: what to do with a type both routers
 * handle (`"error"`, the default, throws).
 *
 * @since 0.1.0
 * @category models
 */
export interface ComposeOptions {
  readonly onConflict?: OnConflict
}

/**
 * The handler's context a route gets: an rpc's for an rpc, a message's otherwise.
 *
 * @since 0.1.0
 * @category models
 */
export type ContextOf<M extends MessageLike, TData> = M extends RpcLike ? RpcContext<M, TData> : MessageContext<M, TData>

/**
 * One route being built: `router.route(Message).use(mw).on(handler)`. Its
 * middleware runs after the router's own, for this message only.
 *
 * @since 0.1.0
 * @category models
 */
export interface RouteBuilder<M extends MessageLike, TData = {}, R = never> {
  /** Adds middleware for this route only. */
  use(middleware: Middleware<TData, R>): RouteBuilder<M, TData, R>
  /** Registers the handler: as an rpc handler when the message is an rpc. */
  on(handler: Handler<ContextOf<M, TData>, R>): void
}

const outsideHandler: PublishResult = {
  ok: false,
  error: "FAILED_PRECONDITION",
  message: "router.publish needs the instance handling the current message and none is known here; " +
    "use ctx.publish inside handlers, or the Durable Object handler's publish outside them"
}

/**
 * Options of one rpc route.
 *
 * @since 0.1.0
 * @category models
 */
export interface RpcRouteOptions {
  /**
   * Running the handler twice for one request does no harm. With
   * `recovery`, a resend of a request whose handler a restart cut off runs
   * it again instead of getting `RPC_ERROR ABORTED` (`details.reason:
   * "INTERRUPTED"`).
   */
  readonly idempotent?: boolean
}

/**
 * A typed WebSocket router. Define it once (usually at module level) and
 * hand it to `createDurableObjectHandler` or `WebSocketDurableObject`.
 *
 * @since 0.1.0
 * @category models
 */
export class Router<TData = {}, R = never> {
  declare readonly "~requirements": R
  readonly #tables: RouterTables

  constructor(options: RouterOptions = {}) {
    this.#tables = registerTables(this, options.limits)
  }

  /** Handles a message type. */
  on<M extends MessageLike>(message: M, handler: Handler<MessageContext<M, TData>, R>): this {
    this.#tables.add(messageOf(message), handler as unknown as AnyHandler, undefined)
    return this
  }

  /**
   * Handles an RPC request; the handler answers with `ctx.reply(...)`.
   * With `recovery`, a request runs at most once; declare it
   * `{ idempotent: true }` to have a resend run it again when a restart cut
   * its handler off (instead of answering `ABORTED`).
   */
  rpc<M extends RpcLike>(message: M, handler: Handler<RpcContext<M, TData>, R>, options?: RpcRouteOptions): this {
    const rpc = rpcOf(message)
    this.#tables.add(rpc, handler as unknown as AnyHandler, rpc.response, [], options?.idempotent === true)
    return this
  }

  /**
   * Applies a plugin: a function of the router that returns it (or what it
   * built on it). WS-Kit's `withZod()`, `withValibot()` and the other
   * plugins its docs show are no-ops here (see docs/migrating-from-ws-kit.md),
   * so `createRouter().plugin(withZod())` runs unchanged.
   */
  plugin<Out>(plugin: (router: this) => Out): Out {
    return plugin(this)
  }

  /** Adds middleware that runs before every message handler. */
  use(middleware: Middleware<TData, R>): this {
    this.#tables.middleware.push(middleware as unknown as AnyMiddleware)
    return this
  }

  /** Runs when a connection opens, before its first message is handled. */
  onOpen(handler: Handler<OpenContext<TData>, R>): this {
    this.#tables.openHooks.push(handler as unknown as AnyHandler)
    return this
  }

  /** Runs when a connection closes, with the client's code and reason. */
  onClose(handler: Handler<CloseContext<TData>, R>): this {
    this.#tables.closeHooks.push(handler as unknown as AnyHandler)
    return this
  }

  /** Sees every failure, with the original error (see {@link ErrorHook}). */
  onError(hook: ErrorHook<TData>): this {
    this.#tables.errorHooks.push(hook as unknown as AnyErrorHook)
    return this
  }

  /** Starts a route whose middleware applies to this message only. */
  route<M extends MessageLike>(message: M): RouteBuilder<M, TData, R> {
    const tables = this.#tables
    const middleware: Array<AnyMiddleware> = []
    const builder: RouteBuilder<M, TData, R> = {
      use: (mw) => {
        middleware.push(mw as unknown as AnyMiddleware)
        return builder
      },
      on: (handler) => {
        const definition = messageOf(message)
        const response = "response" in definition ? (definition as RpcSchema).response : undefined
        tables.add(definition, handler as unknown as AnyHandler, response, middleware)
      }
    }
    return builder
  }

  /** Takes every route of `other` (its router-wide middleware and hooks stay there). */
  merge(other: Router<TData, R>, options?: ComposeOptions): this {
    this.#tables.adopt(tablesOf(other), "", options?.onConflict)
    return this
  }

  /** Takes every route of `other` under `prefix` + its type (`mount("chat.", chat)`: `"chat.SEND"`). */
  mount(prefix: string, other: Router<TData, R>, options?: ComposeOptions): this {
    this.#tables.adopt(tablesOf(other), prefix, options?.onConflict)
    return this
  }

  /** Watches publishes, errors, opens and closes; returns the function that stops watching. */
  observe(observer: RouterObserver<TData>): () => void {
    const observers = this.#tables.observers
    const entry = observer as AnyObserver
    observers.push(entry)
    return () => {
      const index = observers.indexOf(entry)
      if (index >= 0) observers.splice(index, 1)
    }
  }

  /**
   * Publishes to subscribers of `topic` in the Durable Object instance that
   * is handling the current message — never another instance — as a
   * publish from the current connection, exactly like `ctx.publish`:
   * `authorizePublish` is consulted and `excludeSelf` applies. Outside a
   * handler there is no current instance: use the handler's `publish`.
   */
  publish<M extends MessageLike>(
    topic: string,
    message: M,
    ...[payload, options]: PayloadArgs<M, PublishOptions>
  ): Promise<PublishResult> {
    const scope = currentScope()
    return scope === undefined ? Promise.resolve(outsideHandler) : scope.publish(topic, messageOf(message), payload, options)
  }
}

/**
 * Creates a router. `TData` is the connection data `authenticate` returns;
 * `R` lists the services Effect handlers need beyond the built-in ones.
 * `options.limits` as WS-Kit's `createRouter({ limits })` (see
 * {@link RouterOptions}).
 *
 * @since 0.1.0
 * @category constructors
 */
export const createRouter = <TData = {}, R = never>(options?: RouterOptions): Router<TData, R> =>
  new Router<TData, R>(options)

/**
 * A plugin that changes nothing: what WS-Kit's `withMessaging()`,
 * `withRpc()` and `withPubSub(...)` become. durable-ws's router always has
 * `send`, `reply`, `progress`, `publish` and topics, with the instance's
 * own pub/sub, so `router.plugin(withPubSub({ adapter }))` runs unchanged
 * (its options, such as an adapter, are not used).
 *
 * @since 0.1.0
 * @category plugins
 */
export const unchanged = <Rt>(router: Rt): Rt => router

/**
 * WS-Kit's messaging plugin; see {@link unchanged}.
 *
 * @since 0.1.0
 * @category plugins
 */
export const withMessaging = (_options?: unknown): typeof unchanged => unchanged

/**
 * WS-Kit's rpc plugin; see {@link unchanged}.
 *
 * @since 0.1.0
 * @category plugins
 */
export const withRpc = (_options?: unknown): typeof unchanged => unchanged

/**
 * WS-Kit's pub/sub plugin; see {@link unchanged}.
 *
 * @since 0.1.0
 * @category plugins
 */
export const withPubSub = (_options?: unknown): typeof unchanged => unchanged
