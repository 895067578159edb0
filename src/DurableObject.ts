/**
 * The Durable Object runtime: upgrade requests become connections, socket
 * events become dispatches, and the Hibernation API keeps idle rooms free.
 *
 * With `state`, sockets are accepted with `state.acceptWebSocket`, so the
 * object may be evicted between messages: connection data and subscriptions
 * live in each socket's attachment and are read back on wake. Without
 * `state`, sockets are accepted in memory (`accept()`) with the same router
 * behaviour.
 *
 * @since 0.1.0
 */
import { DurableObject } from "cloudflare:workers"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import { v7 as uuidv7 } from "uuid"
import type { ConnectionData } from "./Connection"
import { maxAttachmentBytes, mergeData, resourceIdOf } from "./Connection"
import type { ConnectionInfo } from "./Connections"
import type { ConnectionContext } from "./HandlerContext"
import type { InstanceConfig, TopicHook } from "./internal/instance"
import { hibernatingRegistry, memoryRegistry } from "./internal/registry"
import { Instance } from "./internal/instance"
import type { RateLimit } from "./internal/rateLimit"
import { checkRateLimit } from "./internal/rateLimit"
import type { MessageSchema, PayloadArgs } from "./Message"
import { heartbeat, utf8Length } from "./Message"
import type { PublishOptions, PublishResult } from "./PubSub"
import type { Router } from "./Router"
import type { Connections } from "./Connections"
import type { PubSub } from "./PubSub"
import type { Storage } from "./Storage"

export type { RateLimit } from "./internal/rateLimit"

/**
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  maxConnections: 1000,
  maxPayloadBytes: 1024 * 1024
} as const

/**
 * What `authenticate` may return: the connection's data, or
 * `undefined`/`null` to refuse (HTTP 401).
 *
 * @since 0.1.0
 * @category models
 */
export type AuthResult<TData, R> =
  | TData
  | undefined
  | null
  | PromiseLike<TData | undefined | null>
  | Effect.Effect<TData | undefined | null, unknown, R>

/**
 * @since 0.1.0
 * @category models
 */
export interface HandlerOptions<TData, R> {
  /** The object's state. With it the Hibernation API is used. */
  readonly state?: DurableObjectState
  readonly env?: Cloudflare.Env
  /** Runs on every upgrade; refusing, throwing or failing answers 401. */
  readonly authenticate?: (request: Request) => AuthResult<TData, R>
  /** Open sockets per instance (default 1000); beyond it upgrades get 503. */
  readonly maxConnections?: number
  /** Largest inbound frame in bytes (default 1 MiB). */
  readonly maxPayloadBytes?: number
  /** When set, upgrades from any other `Origin` get 403. */
  readonly allowedOrigins?: ReadonlyArray<string>
  /** Answers requests that are not WebSocket upgrades (default: 426). */
  readonly onRequest?: (request: Request) => Response | Promise<Response>
  /** Per-connection token bucket; off by default. */
  readonly rateLimit?: RateLimit
  /** Return `true` to allow a subscription. */
  readonly authorizeSubscribe?: (ctx: ConnectionContext<TData>, topic: string) => boolean | PromiseLike<boolean>
  /** Return `true` to allow a publish from a connection. */
  readonly authorizePublish?: (ctx: ConnectionContext<TData>, topic: string) => boolean | PromiseLike<boolean>
  /** Handlers running longer get `DEADLINE_EXCEEDED`; off by default. */
  readonly handlerTimeoutMs?: number
}

/**
 * The `layer` option: required, and required to provide every service the
 * router's Effect handlers need, when the router declares any.
 *
 * @since 0.1.0
 * @category models
 */
export type LayerOption<R> = [R] extends [never] ? { readonly layer?: Layer.Layer<never, unknown, InstanceServices> }
  : { readonly layer: Layer.Layer<R, unknown, InstanceServices> }

/**
 * The built-in services a user layer may depend on: they are provided to it
 * when the instance builds it (the current `Connection` is not, since a
 * layer belongs to the instance, not to one connection).
 *
 * @since 0.1.0
 * @category models
 */
export type InstanceServices = Connections | PubSub | Storage

/**
 * @since 0.1.0
 * @category models
 */
export type DurableObjectHandlerOptions<TData, R> = HandlerOptions<TData, R> & LayerOption<R>

/**
 * The methods a Durable Object class forwards to, plus `publish` and
 * `connections` for use outside handlers.
 *
 * @since 0.1.0
 * @category models
 */
export interface DurableObjectHandler<TData = {}> {
  fetch(request: Request): Promise<Response>
  webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void>
  webSocketClose(ws: WebSocket, code: number, reason: string, wasClean: boolean): Promise<void>
  webSocketError(ws: WebSocket, error: unknown): Promise<void>
  /** Publishes to this instance's subscribers of `topic`. Never rejects. */
  publish<M extends MessageSchema>(topic: string, message: M, ...args: PayloadArgs<M, PublishOptions>): Promise<PublishResult>
  /** The open connections of this instance. */
  connections(): ReadonlyArray<ConnectionInfo<TData>>
}

const text = (status: number, body: string, headers?: Record<string, string>) =>
  new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8", ...headers } })

const positive = (name: string, value: number | undefined, fallback: number): number => {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value <= 0) throw new RangeError(`durable-ws: ${name} must be a positive integer`)
  return value
}

const runAuthenticate = async <TData, R>(
  authenticate: (request: Request) => AuthResult<TData, R>,
  request: Request,
  instance: Instance
): Promise<TData | undefined | null> => {
  const result = authenticate(request)
  if (Effect.isEffect(result)) {
    return instance.runPromise(result as Effect.Effect<TData | undefined | null, unknown, unknown>, undefined)
  }
  return await result
}

/**
 * Creates the WebSocket runtime for one Durable Object instance. Call it in
 * the object's constructor (or a field initializer) and forward the
 * object's `fetch` and `webSocket*` methods to it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createDurableObjectHandler = <TData, R>(
  router: Router<TData, R>,
  options: DurableObjectHandlerOptions<TData, R>
): DurableObjectHandler<TData> => {
  const { state } = options
  const maxConnections = positive("maxConnections", options.maxConnections, defaults.maxConnections)
  const maxPayloadBytes = positive("maxPayloadBytes", options.maxPayloadBytes, defaults.maxPayloadBytes)
  const handlerTimeoutMs = options.handlerTimeoutMs === undefined
    ? undefined
    : positive("handlerTimeoutMs", options.handlerTimeoutMs, 0)
  const memory = state === undefined ? memoryRegistry() : undefined
  const registry = memory ?? hibernatingRegistry(state!)
  const config: InstanceConfig = {
    env: options.env ?? ({} as Cloudflare.Env),
    storage: state?.storage,
    maxPayloadBytes,
    handlerTimeoutMs,
    rateLimit: options.rateLimit === undefined ? undefined : checkRateLimit(options.rateLimit),
    authorizeSubscribe: options.authorizeSubscribe as TopicHook | undefined,
    authorizePublish: options.authorizePublish as TopicHook | undefined,
    layer: options.layer as InstanceConfig["layer"]
  }
  const instance = new Instance(router, registry, config)
  // Heartbeats are answered by the runtime itself, so they never wake a hibernated object.
  state?.setWebSocketAutoResponse(new WebSocketRequestResponsePair(heartbeat.request, heartbeat.response))
  const allowedOrigins = options.allowedOrigins === undefined ? undefined : new Set(options.allowedOrigins)

  const upgrade = async (request: Request): Promise<Response> => {
    if (request.method !== "GET") return text(405, "WebSocket upgrades must use GET", { allow: "GET" })
    if (allowedOrigins !== undefined && !allowedOrigins.has(request.headers.get("Origin") ?? "")) {
      return text(403, "Origin not allowed")
    }
    if (registry.openCount() >= maxConnections) return text(503, "Too many connections")
    let authenticated: unknown = {}
    if (options.authenticate !== undefined) {
      try {
        authenticated = await runAuthenticate(options.authenticate, request, instance)
      } catch (error) {
        console.warn("durable-ws: authenticate failed", error)
        return text(401, "Unauthorized")
      }
      if (authenticated === undefined || authenticated === null) return text(401, "Unauthorized")
    }
    // Authentication may have yielded: other upgrades can have taken the last slots meanwhile.
    if (registry.openCount() >= maxConnections) return text(503, "Too many connections")
    const resourceId = resourceIdOf(new URL(request.url))
    const data: ConnectionData<Record<string, unknown>> = mergeData(
      resourceId === undefined
        ? { clientId: uuidv7(), connectedAt: Date.now() }
        : { clientId: uuidv7(), resourceId, connectedAt: Date.now() },
      typeof authenticated === "object" ? authenticated as Record<string, unknown> : undefined
    )
    const size = utf8Length(JSON.stringify({ d: data, t: [] }))
    if (size > maxAttachmentBytes) {
      console.error(`durable-ws: connection data is ${size} bytes; the limit is ${maxAttachmentBytes}`)
      return text(500, "Connection data too large")
    }
    const { 0: client, 1: server } = new WebSocketPair()
    if (state !== undefined) {
      state.acceptWebSocket(server, [data.clientId])
    } else {
      server.accept()
      memory!.add(server)
      server.addEventListener("message", (event) => void instance.message(server, event.data))
      server.addEventListener("close", (event) => void instance.close(server, event.code, event.reason))
      server.addEventListener("error", (event) => void instance.error(server, event.error))
    }
    instance.open(server, data)
    return new Response(null, { status: 101, webSocket: client })
  }

  return {
    fetch: (request) => {
      if (request.headers.get("Upgrade")?.toLowerCase() !== "websocket") {
        return options.onRequest !== undefined
          ? Promise.resolve(options.onRequest(request))
          : Promise.resolve(text(426, "Expected a WebSocket upgrade", { upgrade: "websocket" }))
      }
      return upgrade(request)
    },
    webSocketMessage: (ws, message) => instance.message(ws, message),
    webSocketClose: (ws, code, reason) => instance.close(ws, code, reason),
    webSocketError: (ws, error) => instance.error(ws, error),
    publish: (topic, message, ...[payload, publishOptions]) =>
      instance.publish(topic, message, payload, publishOptions, undefined),
    connections: () =>
      Array.from(instance.connections(), (connection) => instance.info(connection) as ConnectionInfo<TData>)
  }
}

/**
 * The class {@link WebSocketDurableObject} returns.
 *
 * @since 0.1.0
 * @category models
 */
export interface WebSocketDurableObjectClass<TData> {
  new(state: DurableObjectState, env: Cloudflare.Env): DurableObject<Cloudflare.Env> & {
    readonly ws: DurableObjectHandler<TData>
    fetch(request: Request): Promise<Response>
    webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void>
    webSocketClose(ws: WebSocket, code: number, reason: string, wasClean: boolean): Promise<void>
    webSocketError(ws: WebSocket, error: unknown): Promise<void>
  }
}

/**
 * A Durable Object class with everything wired:
 * `export class Lobby extends WebSocketDurableObject(router, { maxConnections: 500 }) {}`.
 * The handler is reachable as `this.ws` in subclasses.
 *
 * @since 0.1.0
 * @category constructors
 */
export const WebSocketDurableObject = <TData, R>(
  router: Router<TData, R>,
  options: Omit<HandlerOptions<TData, R>, "state" | "env"> & LayerOption<R>
): WebSocketDurableObjectClass<TData> =>
  class WebSocketRouterObject extends DurableObject<Cloudflare.Env> {
    readonly ws: DurableObjectHandler<TData>
    constructor(state: DurableObjectState, env: Cloudflare.Env) {
      super(state, env)
      this.ws = createDurableObjectHandler(router, { ...options, state, env } as DurableObjectHandlerOptions<TData, R>)
    }
    override fetch(request: Request): Promise<Response> {
      return this.ws.fetch(request)
    }
    override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
      return this.ws.webSocketMessage(ws, message)
    }
    override webSocketClose(ws: WebSocket, code: number, reason: string, wasClean: boolean): Promise<void> {
      return this.ws.webSocketClose(ws, code, reason, wasClean)
    }
    override webSocketError(ws: WebSocket, error: unknown): Promise<void> {
      return this.ws.webSocketError(ws, error)
    }
  }
