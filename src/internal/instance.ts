import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import type { ConnectionData, SendOptions, Socket } from "../Connection"
import { Connection } from "../Connection"
import { RateLimited, toWireError } from "../Errors"
import type { BroadcastOptions, ConnectionInfo } from "../Connections"
import { Connections } from "../Connections"
import type { ConnectionContext } from "../HandlerContext"
import { HandlerContext } from "../HandlerContext"
import type { MessageSchema } from "../Message"
import { encodeErrorFrame, encodeFrame, encodePayload } from "../Message"
import type { PublishOptions, PublishResult } from "../PubSub"
import { DurablePubSub, PubSub } from "../PubSub"
import type { RouterTables } from "../Router"
import { dispatch, exitToPromise, runLifecycle } from "../Router"
import * as Storage from "../Storage"
import { instanceScope } from "./als"
import type { AttachmentStore } from "./connection"
import { isAttachment, LiveConnection } from "./connection"
import type { RateLimit } from "./rateLimit"
import { isSavedBucket } from "./rateLimit"

/** Where an instance's sockets live: the runtime (hibernation) or memory. */
export interface SocketRegistry extends AttachmentStore {
  readonly sockets: () => Iterable<Socket>
  readonly openCount: () => number
  readonly forget: (socket: Socket) => void
}

export type TopicHook = (ctx: ConnectionContext, topic: string) => boolean | PromiseLike<boolean>

export interface InstanceConfig {
  readonly env: Cloudflare.Env
  readonly storage: DurableObjectStorage | undefined
  readonly maxPayloadBytes: number
  readonly handlerTimeoutMs: number | undefined
  readonly rateLimit: RateLimit | undefined
  readonly authorizeSubscribe: TopicHook | undefined
  readonly authorizePublish: TopicHook | undefined
  readonly layer: Layer.Layer<unknown, unknown, unknown> | undefined
}

// Close codes that must not be sent back: they describe the absence of a close frame.
const unreciprocated: ReadonlySet<number> = new Set([1005, 1006, 1015])

const settled: Promise<void> = Promise.resolve()


/**
 * Everything one Durable Object instance knows at run time: its sockets,
 * their live connections, the topic index, and the Effect services its
 * handlers run with. Nothing here is shared between instances.
 */
export class Instance {
  readonly pubsub: DurablePubSub
  private readonly live = new WeakMap<Socket, LiveConnection>()
  private readonly inScope = instanceScope(this)
  private services: Context.Context<never> | undefined
  private building: Promise<Context.Context<never>> | undefined

  constructor(
    readonly router: RouterTables,
    readonly registry: SocketRegistry,
    private readonly config: InstanceConfig
  ) {
    const hook = (authorize: TopicHook | undefined) =>
      authorize === undefined
        ? undefined
        : (connection: LiveConnection, topic: string) => authorize(this.lifecycleContext(connection) as unknown as ConnectionContext, topic)
    this.pubsub = new DurablePubSub(
      () => this.connections(),
      hook(config.authorizeSubscribe),
      hook(config.authorizePublish)
    )
  }

  get env(): Cloudflare.Env {
    return this.config.env
  }
  get storage(): DurableObjectStorage {
    if (this.config.storage === undefined) {
      throw new Error("durable-ws: no storage here (the handler was created without `state`)")
    }
    return this.config.storage
  }
  get maxPayloadBytes(): number {
    return this.config.maxPayloadBytes
  }
  get handlerTimeoutMs(): number | undefined {
    return this.config.handlerTimeoutMs
  }

  /** The live connection of a socket, rebuilt from its attachment after a wake. */
  connectionOf(socket: Socket): LiveConnection {
    let connection = this.live.get(socket)
    if (connection !== undefined) return connection
    const attachment = this.registry.read(socket)
    connection = isAttachment(attachment)
      ? new LiveConnection(
        socket,
        attachment.d,
        new Set(attachment.t),
        this.registry,
        isSavedBucket(attachment.r) ? attachment.r : undefined
      )
      : new LiveConnection(socket, { clientId: "", connectedAt: 0 }, new Set(), this.registry)
    this.live.set(socket, connection)
    return connection
  }

  *connections(): Iterable<LiveConnection> {
    for (const socket of this.registry.sockets()) {
      const connection = this.connectionOf(socket)
      if (!connection.closed) yield connection
    }
  }

  // -- Effect services -------------------------------------------------------

  private build(): Promise<Context.Context<never>> {
    if (this.building !== undefined) return this.building
    const builtins = Context.make(Connections, this.connectionsService).pipe(
      Context.add(PubSub, this.pubsub.service)
    )
    const withStorage = this.config.storage === undefined
      ? builtins
      : Context.add(builtins, Storage.Storage, Storage.make(this.config.storage))
    const layer = this.config.layer
    this.building = layer === undefined
      ? Promise.resolve(withStorage as Context.Context<never>)
      // The user's layer may itself use the instance's built-in services (Storage, PubSub, Connections).
      : Effect.runPromise(
        Layer.buildWithScope(
          Layer.provide(layer, Layer.succeedContext(withStorage)) as Layer.Layer<unknown, unknown>,
          Scope.makeUnsafe()
        )
      ).then(
        (provided) => Context.merge(provided, withStorage) as Context.Context<never>,
        (error) => {
          this.building = undefined
          throw error
        }
      )
    return this.building.then((services) => this.services = services)
  }

  /** The instance's services plus this connection's `Connection`, built once per connection. */
  private contextOf(connection: LiveConnection, services: Context.Context<never>): Context.Context<never> {
    return connection.context ??= Context.add(services, Connection, connection.service) as Context.Context<never>
  }

  /** Runs an Effect with this instance's services and the connection's. */
  runPromise<A>(effect: Effect.Effect<A, unknown, unknown>, connection: LiveConnection | undefined): Promise<A> {
    const services = this.services
    if (services === undefined) return this.build().then(() => this.runPromise(effect, connection))
    const context = connection === undefined ? services : this.contextOf(connection, services)
    return this.inScope(
      () => Effect.runPromiseExitWith(context)(effect as Effect.Effect<A, unknown, never>).then(exitToPromise)
    )
  }

  /**
   * Runs an Effect that never fails. It starts at once and, when it finishes
   * without waiting on anything, costs no promise. Only building the
   * services can fail, and the client then learns the service is unavailable.
   */
  runGuarded(effect: Effect.Effect<void>, connection: LiveConnection): Promise<void> | undefined {
    const services = this.services
    if (services === undefined) {
      return this.build().then(
        () => this.runGuarded(effect, connection),
        (error: unknown) => {
          console.error("durable-ws: services failed to build", error)
          connection.sendFrame(encodeErrorFrame({ code: "UNAVAILABLE", message: "Service unavailable" }, undefined))
        }
      )
    }
    const context = this.contextOf(connection, services)
    return this.inScope(() => {
      const fiber = Effect.runForkWith(context)(effect)
      if (fiber.pollUnsafe() !== undefined) return undefined
      return new Promise<void>((resolve) => fiber.addObserver(() => resolve()))
    })
  }

  private runOnConnection(connection: LiveConnection, effect: Effect.Effect<void>): Promise<void> {
    return connection.enqueue(() => this.runGuarded(effect, connection))
  }

  lifecycleContext(connection: LiveConnection, code?: number, reason?: string): HandlerContext {
    return new HandlerContext(this, connection, undefined, undefined, {}, undefined, undefined, code, reason)
  }

  // -- Socket events ---------------------------------------------------------

  /** A socket was accepted: persist its data and run `onOpen` before any message. */
  open(socket: Socket, data: ConnectionData<Record<string, unknown>>): LiveConnection {
    const connection = new LiveConnection(socket, data, new Set(), this.registry)
    connection.persist()
    this.live.set(socket, connection)
    this.pubsub.track(connection)
    if (this.router.openHooks.length > 0) {
      void this.runOnConnection(
        connection,
        runLifecycle(this, this.router.openHooks, this.lifecycleContext(connection))
      )
    }
    return connection
  }

  message(socket: Socket, frame: string | ArrayBuffer): Promise<void> {
    const connection = this.connectionOf(socket)
    if (connection.closed) return settled
    const limit = this.config.rateLimit
    if (limit !== undefined) {
      const retryAfterMs = connection.takeToken(limit, Date.now())
      if (retryAfterMs > 0) {
        const refused = new RateLimited({ retryAfterMs, message: "Rate limit exceeded" })
        connection.sendFrame(encodeErrorFrame(toWireError(refused), undefined))
        return settled
      }
    }
    return connection.enqueue(() => this.inScope(() => dispatch(this, connection, frame)))
  }

  close(socket: Socket, code: number, reason: string): Promise<void> {
    const connection = this.connectionOf(socket)
    if (connection.closed) return settled
    connection.closed = true
    this.pubsub.remove(connection)
    if (!unreciprocated.has(code)) connection.close(code, reason)
    this.registry.forget(socket)
    if (this.router.closeHooks.length === 0) return settled
    return this.runOnConnection(
      connection,
      runLifecycle(this, this.router.closeHooks, this.lifecycleContext(connection, code, reason))
    )
  }

  error(socket: Socket, error: unknown): Promise<void> {
    const connection = this.connectionOf(socket)
    for (const hook of this.router.errorHooks) {
      try {
        hook(error, this.lifecycleContext(connection) as never)
      } catch (hookError) {
        console.error("durable-ws: onError hook threw", hookError)
      }
    }
    return this.close(socket, 1006, "WebSocket error")
  }

  // -- Topics and sending ----------------------------------------------------

  subscribe(connection: LiveConnection, topic: string): Promise<void> {
    return Effect.runPromiseExit(this.pubsub.subscribe(connection, topic)).then(exitToPromise)
  }

  publish(
    topic: string,
    message: MessageSchema,
    payload: unknown,
    options: PublishOptions | undefined,
    from: LiveConnection | undefined
  ): Promise<PublishResult> {
    return Effect.runPromise(this.pubsub.publish(topic, message, payload, options, from))
  }

  info(connection: LiveConnection): ConnectionInfo {
    return { clientId: connection.clientId, data: connection.data, topics: Array.from(connection.topics) }
  }

  private findConnection(clientId: string): LiveConnection | undefined {
    for (const connection of this.connections()) if (connection.clientId === clientId) return connection
    return undefined
  }

  private get connectionsService(): Connections["Service"] {
    return Connections.of({
      count: Effect.sync(() => this.registry.openCount()),
      list: Effect.sync(() => Array.from(this.connections(), (c) => this.info(c))),
      send: (clientId, message, ...[payload, options]) =>
        Effect.sync(() => {
          const connection = this.findConnection(clientId)
          if (connection === undefined) return false
          connection.send(message, payload, options as SendOptions | undefined)
          return true
        }),
      broadcast: (message, ...[payload, options]) =>
        Effect.sync(() => {
          const encoded = encodePayload(message, payload)
          if (!encoded.ok) throw new Error(`durable-ws: outbound ${encoded.error.message}`)
          const opts = options as BroadcastOptions | undefined
          const frame = encodeFrame(message.type, encoded.value, { timestamp: Date.now(), ...opts?.meta })
          const excluded = new Set(opts?.exclude ?? [])
          let reached = 0
          for (const connection of this.connections()) {
            if (!excluded.has(connection.clientId) && connection.sendFrame(frame)) reached++
          }
          return reached
        })
    })
  }
}
