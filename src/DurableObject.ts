/**
 * The Durable Object handler: upgrade requests become connections, socket
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
import type { ConnectionInfo } from "./Connections"
import { admit, full, isRefusal } from "./internal/server/admission"
import { resourceIdOf } from "./internal/server/data"
import { Instance } from "./internal/server/instance"
import type { SpanPresence } from "./internal/server/spanPresence"
import { resolveOptions } from "./internal/server/options"
import { hibernatingRegistry, memoryRegistry } from "./internal/server/registry"
import { tablesOf } from "./internal/server/routes"
import { infoOf } from "./internal/server/services"
import * as Sockets from "./internal/server/sockets"
import type { MessageLike, MessageSchema, PayloadArgs } from "./Message"
import { messageOf } from "./Message"
import type { DurableObjectHandlerOptions, HandlerOptions, LayerOption } from "./Options"
import { asksForBatches, heartbeat, resumeParameter } from "./Protocol"
import type { PublishOptions, PublishResult } from "./PubSub"
import type { Router } from "./Router"
import type { PresencePartCheck, SpannedPresence, SpannedPresenceAnswer } from "./Presence"
import type { SpannedAnswer, SpannedDelivery } from "./SpanningTopic"

export type {
  AuthResult,
  DurableObjectHandlerOptions,
  HandlerOptions,
  InstanceServices,
  LayerOption,
  RateLimit,
  RecoveryOptions
} from "./Options"
export { defaults } from "./Options"

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
  publish<M extends MessageLike>(topic: string, message: M, ...args: PayloadArgs<M, PublishOptions>): Promise<PublishResult>
  /** The open connections of this instance. */
  connections(): ReadonlyArray<ConnectionInfo<TData>>
  /**
   * What a spanning topic's home calls (SPEC §14). A class built with
   * `createDurableObjectHandler` forwards its own `deliverSpanned` method
   * here; never route a public request to it.
   */
  deliverSpanned(delivery: SpannedDelivery): Promise<SpannedAnswer>
  /** What a spanning topic's home calls for presence across objects (SPEC §15); forwarded like `deliverSpanned`. */
  deliverPresence(topic: string, update: SpannedPresence): Promise<SpannedPresenceAnswer>
  /** The home asks whether its copy of this object's presence part is current. */
  checkPresence(topic: string, epoch: string, counter: number): Promise<PresencePartCheck>
}

/** The edge side of presence across objects; a call to an object without it is refused. */
const spannedPresenceOf = (instance: Instance): Pick<SpanPresence, "deliver" | "check"> => {
  const span = instance.spanPresence
  if (span !== undefined) return span
  const refused = () => Promise.reject(new Error("durable-ws: this object has no presence across objects (`span` and `presence`)"))
  return { deliver: refused, check: refused }
}

const text = (status: number, body: string, headers?: Record<string, string>) =>
  new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8", ...headers } })

const runAuthenticate = async (instance: Instance, request: Request): Promise<unknown> => {
  const result = instance.config.authenticate!(request)
  if (Effect.isEffect(result)) return instance.run(result as Effect.Effect<unknown, unknown, unknown>)
  return await result
}

const tooMany = () => text(503, "Too many connections")

/** The upgrade checks of SPEC §7, in order; a refusal is an HTTP response and no socket. */
const upgrade = async (instance: Instance, request: Request): Promise<Response> => {
  const { config } = instance
  if (request.method !== "GET") return text(405, "WebSocket upgrades must use GET", { allow: "GET" })
  if (config.allowedOrigins !== undefined && !config.allowedOrigins.has(request.headers.get("Origin") ?? "")) {
    return text(403, "Origin not allowed")
  }
  const url = new URL(request.url)
  const resume = url.searchParams.get(resumeParameter)
  // Refused before `authenticate` runs, unless it is a resume, which does not count the socket it replaces.
  if (resume === null && full(instance) !== undefined) return tooMany()
  let authenticated: unknown = undefined
  if (config.authenticate !== undefined) {
    try {
      authenticated = await runAuthenticate(instance, request)
    } catch (error) {
      console.warn("durable-ws: authenticate failed", error)
      return text(401, "Unauthorized")
    }
    if (authenticated === undefined || authenticated === null) return text(401, "Unauthorized")
  }
  let client: WebSocket | undefined
  const admitted = await admit(
    instance,
    { authenticated, resourceId: resourceIdOf(url), resume, batches: asksForBatches(url) },
    (clientId) => {
      const { 0: peer, 1: server } = new WebSocketPair()
      client = peer
      accept(instance, server, clientId)
      return server
    }
  )
  if (isRefusal(admitted)) {
    switch (admitted._tag) {
      case "ConnectionLimitExceeded":
        return tooMany()
      case "RateLimited":
        // The session resumed too often; its token still holds.
        return text(429, "Too many resumes", { "retry-after": String(Math.ceil(admitted.retryAfterMs / 1000)) })
      case "Unauthorized":
        return text(401, "Unauthorized")
      case "PayloadTooLarge":
        return text(500, "Connection data too large")
    }
  }
  return new Response(null, { status: 101, webSocket: client! })
}

const accept = (instance: Instance, server: WebSocket, clientId: string): void => {
  const { state } = instance.config
  if (state !== undefined) {
    state.acceptWebSocket(server, [clientId])
    return
  }
  server.accept()
  instance.registry.add?.(server)
  server.addEventListener("message", (event) => void Sockets.message(instance, server, event.data))
  server.addEventListener("close", (event) => void Sockets.close(instance, server, event.code, event.reason))
  server.addEventListener("error", (event) => void Sockets.error(instance, server, event.error))
}

/**
 * Creates the WebSocket handler of one Durable Object instance. Call it in
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
  const config = resolveOptions((options ?? {}) as Parameters<typeof resolveOptions>[0], false, tablesOf(router).limits)
  const { state } = config
  const instance = new Instance(
    tablesOf(router),
    state === undefined ? memoryRegistry() : hibernatingRegistry(state),
    config
  )
  // Heartbeats are answered by workerd itself, so they never wake a hibernated object.
  state?.setWebSocketAutoResponse(new WebSocketRequestResponsePair(heartbeat.request, heartbeat.response))

  return {
    fetch: (request) => {
      if (request.headers.get("Upgrade")?.toLowerCase() !== "websocket") {
        return config.onRequest !== undefined
          ? Promise.resolve(config.onRequest(request))
          : Promise.resolve(text(426, "Expected a WebSocket upgrade", { upgrade: "websocket" }))
      }
      return upgrade(instance, request)
    },
    webSocketMessage: (ws, message) => Sockets.message(instance, ws, message),
    webSocketClose: (ws, code, reason) => Sockets.close(instance, ws, code, reason),
    webSocketError: (ws, error) => Sockets.error(instance, ws, error),
    publish: (topic, message, ...[payload, publishOptions]) =>
      instance.publish(topic, messageOf(message), payload, publishOptions, undefined),
    connections: () => Array.from(instance.connections(), (connection) => infoOf(connection) as ConnectionInfo<TData>),
    deliverSpanned: (delivery) =>
      instance.span === undefined
        ? Promise.reject(new Error("durable-ws: this object has no spanning topics (no `span` option)"))
        : instance.span.deliver(delivery),
    deliverPresence: (topic, update) => spannedPresenceOf(instance).deliver(topic, update),
    checkPresence: (topic, epoch, counter) => spannedPresenceOf(instance).check(topic, epoch, counter)
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
    deliverSpanned(delivery: SpannedDelivery): Promise<SpannedAnswer>
    deliverPresence(topic: string, update: SpannedPresence): Promise<SpannedPresenceAnswer>
    checkPresence(topic: string, epoch: string, counter: number): Promise<PresencePartCheck>
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
  resolveOptions(options as Parameters<typeof resolveOptions>[0], true, tablesOf(router).limits)
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
    /** Called by a spanning topic's home through a stub (Durable Object RPC); no request reaches it. */
    deliverSpanned(delivery: SpannedDelivery): Promise<SpannedAnswer> {
      return this.ws.deliverSpanned(delivery)
    }
    /** Called by a spanning topic's home for presence across objects (Durable Object RPC). */
    deliverPresence(topic: string, update: SpannedPresence): Promise<SpannedPresenceAnswer> {
      return this.ws.deliverPresence(topic, update)
    }
    /** Called by a spanning topic's home to check this object's presence part (Durable Object RPC). */
    checkPresence(topic: string, epoch: string, counter: number): Promise<PresencePartCheck> {
      return this.ws.checkPresence(topic, epoch, counter)
    }
  }
}
