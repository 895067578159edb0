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
import { currentScope } from "./internal/server/scope"
import type { AnyErrorHook, AnyHandler, AnyMiddleware, RouterTables } from "./internal/server/routes"
import { registerTables } from "./internal/server/routes"
import type { MessageSchema, PayloadArgs, RpcSchema } from "./Message"
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

const outsideHandler: PublishResult = {
  ok: false,
  error: "FAILED_PRECONDITION",
  message: "router.publish needs the instance handling the current message and none is known here; " +
    "use ctx.publish inside handlers, or the Durable Object handler's publish outside them"
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
  readonly #tables: RouterTables = registerTables(this)

  /** Handles a message type. */
  on<M extends MessageSchema>(message: M, handler: Handler<MessageContext<M, TData>, R>): this {
    this.#tables.add(message, handler as unknown as AnyHandler, undefined)
    return this
  }

  /** Handles an RPC request; the handler answers with `ctx.reply(...)`. */
  rpc<M extends RpcSchema>(message: M, handler: Handler<RpcContext<M, TData>, R>): this {
    this.#tables.add(message, handler as unknown as AnyHandler, message.response)
    return this
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

  /** Sees every handler failure, with the original error. */
  onError(hook: ErrorHook<TData>): this {
    this.#tables.errorHooks.push(hook as unknown as AnyErrorHook)
    return this
  }

  /**
   * Publishes to subscribers of `topic` in the Durable Object instance that
   * is handling the current message — never another instance — as a
   * publish from the current connection, exactly like `ctx.publish`:
   * `authorizePublish` is consulted and `excludeSelf` applies. Outside a
   * handler there is no current instance: use the handler's `publish`.
   */
  publish<M extends MessageSchema>(
    topic: string,
    message: M,
    ...[payload, options]: PayloadArgs<M, PublishOptions>
  ): Promise<PublishResult> {
    const scope = currentScope()
    return scope === undefined ? Promise.resolve(outsideHandler) : scope.publish(topic, message, payload, options)
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
