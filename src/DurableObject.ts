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
import { v7 as uuidv7 } from "uuid"
import type { ConnectionInfo } from "./Connections"
import { infoOf } from "./Connections"
import type { ConnectionData } from "./internal/data"
import { maxAttachmentBytes, mergeData, resourceIdOf } from "./internal/data"
import { Instance } from "./internal/instance"
import type { DurableObjectHandlerOptions, HandlerOptions, InstanceConfig, LayerOption } from "./internal/options"
import { resolveOptions } from "./internal/options"
import { prepareResume, resumeParameter } from "./internal/recovery"
import { hibernatingRegistry, memoryRegistry } from "./internal/registry"
import { tablesOf } from "./internal/routes"
import * as Runtime from "./internal/runtime"
import type { MessageSchema, PayloadArgs } from "./Message"
import { heartbeat, utf8Length } from "./Message"
import type { PublishOptions, PublishResult } from "./PubSub"
import type { Router } from "./Router"

export type { RateLimit } from "./internal/rateLimit"
export type { RecoveryOptions } from "./internal/recovery"
export { defaults } from "./internal/options"
export type {
  AuthResult,
  DurableObjectHandlerOptions,
  HandlerOptions,
  InstanceServices,
  LayerOption
} from "./internal/options"

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
  /** Publishes to this instance's subscribers of `topic`, from no connection. Never rejects. */
  publish<M extends MessageSchema>(topic: string, message: M, ...args: PayloadArgs<M, PublishOptions>): Promise<PublishResult>
  /** The open connections of this instance. */
  connections(): ReadonlyArray<ConnectionInfo<TData>>
}

const text = (status: number, body: string, headers?: Record<string, string>) =>
  new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8", ...headers } })

const runAuthenticate = async (instance: Instance, request: Request): Promise<unknown> => {
  const result = instance.config.authenticate!(request)
  if (Effect.isEffect(result)) return instance.run(result as Effect.Effect<unknown, unknown, unknown>)
  return await result
}

/** The upgrade checks of SPEC §7, in order; a refusal is an HTTP response and no socket. */
const upgrade = async (instance: Instance, config: InstanceConfig, request: Request): Promise<Response> => {
  if (request.method !== "GET") return text(405, "WebSocket upgrades must use GET", { allow: "GET" })
  if (config.allowedOrigins !== undefined && !config.allowedOrigins.has(request.headers.get("Origin") ?? "")) {
    return text(403, "Origin not allowed")
  }
  if (!instance.hasRoom(config.maxConnections)) return text(503, "Too many connections")
  let authenticated: unknown = {}
  if (config.authenticate !== undefined) {
    try {
      authenticated = await runAuthenticate(instance, request)
    } catch (error) {
      console.warn("durable-ws: authenticate failed", error)
      return text(401, "Unauthorized")
    }
    if (authenticated === undefined || authenticated === null) return text(401, "Unauthorized")
  }
  const url = new URL(request.url)
  const claim = instance.recovery === undefined
    ? undefined
    : await prepareResume(instance.recovery, url.searchParams.get(resumeParameter))
  // Authentication may have yielded: other upgrades can have taken the last slots meanwhile.
  if (!instance.hasRoom(config.maxConnections)) return text(503, "Too many connections")
  // From here on nothing yields: a session claimed is a session taken over.
  const resumption = claim?.()
  const resourceId = resourceIdOf(url)
  const data: ConnectionData<Record<string, unknown>> = mergeData(
    resumption?.session?.data ??
      (resourceId === undefined
        ? { clientId: uuidv7(), connectedAt: Date.now() }
        : { clientId: uuidv7(), resourceId, connectedAt: Date.now() }),
    typeof authenticated === "object" ? authenticated as Record<string, unknown> : undefined
  )
  const size = utf8Length(JSON.stringify({ d: data, t: [] }))
  if (size > maxAttachmentBytes) {
    console.error(`durable-ws: connection data is ${size} bytes; the limit is ${maxAttachmentBytes}`)
    return text(500, "Connection data too large")
  }
  const { 0: client, 1: server } = new WebSocketPair()
  accept(instance, config, server, data.clientId)
  Runtime.open(instance, server, data, resumption)
  return new Response(null, { status: 101, webSocket: client })
}

const accept = (instance: Instance, config: InstanceConfig, server: WebSocket, clientId: string): void => {
  if (config.state !== undefined) {
    config.state.acceptWebSocket(server, [clientId])
    return
  }
  server.accept()
  instance.registry.add?.(server)
  server.addEventListener("message", (event) => void Runtime.message(instance, server, event.data))
  server.addEventListener("close", (event) => void Runtime.close(instance, server, event.code, event.reason))
  server.addEventListener("error", (event) => void Runtime.error(instance, server, event.error))
}

/**
 * Creates the WebSocket runtime for one Durable Object instance. Call it in
 * the object's constructor (or a field initializer) and forward the
 * object's `fetch` and `webSocket*` methods to it. The options may be left
 * out (WS-Kit's `createDurableObjectHandler(router)`) unless the router
 * declares services, which then need a `layer`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createDurableObjectHandler = <TData, R>(
  router: Router<TData, R>,
  ...[options]: [R] extends [never] ? [options?: DurableObjectHandlerOptions<TData, R>]
    : [options: DurableObjectHandlerOptions<TData, R>]
): DurableObjectHandler<TData> => {
  const config = resolveOptions((options ?? {}) as Parameters<typeof resolveOptions>[0])
  const { state } = config
  const instance = new Instance(
    tablesOf(router),
    state === undefined ? memoryRegistry() : hibernatingRegistry(state),
    config
  )
  // Heartbeats are answered by the runtime itself, so they never wake a hibernated object.
  state?.setWebSocketAutoResponse(new WebSocketRequestResponsePair(heartbeat.request, heartbeat.response))

  return {
    fetch: (request) => {
      if (request.headers.get("Upgrade")?.toLowerCase() !== "websocket") {
        return config.onRequest !== undefined
          ? Promise.resolve(config.onRequest(request))
          : Promise.resolve(text(426, "Expected a WebSocket upgrade", { upgrade: "websocket" }))
      }
      return upgrade(instance, config, request)
    },
    webSocketMessage: (ws, message) => Runtime.message(instance, ws, message),
    webSocketClose: (ws, code, reason) => Runtime.close(instance, ws, code, reason),
    webSocketError: (ws, error) => Runtime.error(instance, ws, error),
    publish: (topic, message, ...[payload, publishOptions]) =>
      instance.publish(topic, message, payload, publishOptions, undefined),
    connections: () => Array.from(instance.connections(), (connection) => infoOf(connection) as ConnectionInfo<TData>)
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
): WebSocketDurableObjectClass<TData> => {
  // Checked once, when the class is defined, not first when an object is constructed.
  resolveOptions(options as Parameters<typeof resolveOptions>[0], true)
  return class WebSocketRouterObject extends DurableObject<Cloudflare.Env> {
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
}
