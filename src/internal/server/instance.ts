import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type { SentError } from "../../Errors"
import type { MessageSchema } from "../../Message"
import type { PublishOptions, PublishResult } from "../../PubSub"
import { Connections } from "../../Connections"
import { PubSub } from "../../PubSub"
import * as Storage from "../../Storage"
import { ScopeEntry } from "./scope"
import type { AttachmentStore } from "./connection"
import { isAttachment, LiveConnection, presenceOf, spanMarksOf } from "./connection"
import { HandlerContext } from "./context"
import { encodeFrameWithJson } from "../../Protocol"
import type { ConnectionData } from "../../Connection"
import type { Socket } from "./data"
import type { InstanceConfig } from "./options"
import { isSavedBucket } from "./rateLimit"
import type { FreshRequest, Resumption } from "./recovery"
import { endsSession, PendingReplies, RecoveryStore } from "./recovery"
import { InstancePresence } from "./presence"
import { InstancePubSub } from "./pubsub"
import { SpanEdge } from "./span"
import { SpanPresence } from "./spanPresence"
import type { RouterTables } from "./routes"
import { connectionsService, presenceService, pubSubService } from "./services"
import { Presence } from "../../Presence"
import { TopicError } from "../../Errors"
import { InstanceRuntime } from "./effectRuntime"
import { isEffect } from "./generators"

/** Where an instance's sockets live: the runtime (hibernation) or memory. */
export interface SocketRegistry extends AttachmentStore {
  readonly sockets: () => Iterable<Socket>
  readonly forget: (socket: Socket) => void
  /** Memory registries only: the runtime keeps hibernatable sockets itself. */
  readonly add?: (socket: Socket) => void
}

const OPEN = 1

const presenceOff = (topic: string): TopicError =>
  new TopicError({
    topic,
    code: "INVALID_ARGUMENT",
    message: "Presence is off: create the handler with the `presence` option"
  })

/** Where a publish made without a context from a connection's handler goes: the instance, as that connection's. */
class ConnectionPublishScope extends ScopeEntry {
  constructor(private readonly instance: Instance, private readonly connection: LiveConnection) {
    super()
  }

  publish(topic: string, message: MessageSchema, payload: unknown, options: PublishOptions | undefined): Promise<PublishResult> {
    return this.instance.publish(topic, message, payload, options, this.connection)
  }
}

/**
 * Everything one Durable Object instance knows at run time: its sockets,
 * their live connections, the topic index, and the Effect runtime its Effects run
 * on. Nothing here is shared between instances.
 */
export class Instance {
  readonly pubsub: InstancePubSub
  /** Who is in each topic (SPEC §15), when `presence` is on. */
  readonly presence: InstancePresence | undefined
  readonly runtime: InstanceRuntime
  /** Sessions, log and reply cache (SPEC §11), when `recovery` is on. */
  readonly recovery: RecoveryStore | undefined
  readonly pendingReplies = new PendingReplies()
  /** The edge side of spanning topics (SPEC §14), when `span` is set. */
  readonly span: SpanEdge | undefined
  /** Presence of spanning topics, across objects, when both `span` and `presence` are set. */
  readonly spanPresence: SpanPresence | undefined
  /** Where connections persist: the registry, and with recovery their session too. */
  private readonly store: AttachmentStore
  // `null` marks a socket accepted outside durable-ws: it is no connection of ours.
  private readonly live = new WeakMap<Socket, LiveConnection | null>()
  /**
   * How many connections of ours are not closed yet: at least the open ones
   * (a socket whose close is not handled yet still counts). Each connection
   * is counted once, when it is made (one per socket and instance, see
   * {@link live}), and released once, when its close is handled. Complete
   * once {@link enumerated} is set, which after a wake takes one pass over
   * the runtime's sockets.
   */
  private unclosed = 0
  private enumerated = false

  constructor(
    readonly router: RouterTables,
    readonly registry: SocketRegistry,
    readonly config: InstanceConfig
  ) {
    const hook = (authorize: InstanceConfig["authorizeSubscribe"]) =>
      authorize === undefined
        ? undefined
        : (connection: LiveConnection, topic: string) => authorize(this.lifecycleContext(connection), topic)
    const recovery = this.recovery = config.recovery === undefined
      ? undefined
      : new RecoveryStore(this.storage.sql, config.recovery, () => Array.from(this.connections(), (c) => c.clientId))
    this.store = recovery === undefined ? registry : {
      read: registry.read,
      write: (socket, attachment) => {
        registry.write(socket, attachment)
        recovery.saveSession(attachment.d.clientId, attachment.d, attachment.t, attachment.r)
      },
      closing: (clientId, code) => {
        if (endsSession(code)) recovery.endSession(clientId)
      }
    }
    const presence = config.presence
    this.pubsub = new InstancePubSub(
      () => this.connections(),
      hook(config.authorizeSubscribe),
      hook(config.authorizePublish),
      recovery,
      presence === undefined ? undefined : (connection, topic) => this.sendPresence(connection, topic)
    )
    this.presence = presence === undefined ? undefined : new InstancePresence({
      connections: () => this.connections(),
      fanOut: (topic, frame) => this.pubsub.fanOut(topic, frame, undefined),
      authorize: hook(config.authorizeSubscribe),
      sql: recovery === undefined ? undefined : this.storage.sql
    }, presence)
    this.span = config.span === undefined || config.state === undefined ? undefined : new SpanEdge(
      config.span,
      config.state,
      config.env,
      {
        subscriberCount: (topic) => this.pubsub.subscriberCount(topic),
        subscribers: (topic) => this.pubsub.subscribers(topic),
        connections: () => this.connections(),
        logged: recovery === undefined ? undefined : (topic) => recovery.spanMark(topic),
        frameOf: (topic, entry) =>
          recovery === undefined
            ? encodeFrameWithJson(entry.type, entry.payloadJson, entry.meta)
            : recovery.appendSpanned(topic, entry),
        fanOut: (topic, frames, origins) => this.pubsub.fanOutFrom(topic, frames, origins)
      }
    )
    this.pubsub.span = this.span
    this.spanPresence = config.span === undefined || config.state === undefined || this.presence === undefined
      ? undefined
      : new SpanPresence(config.span, config.state, config.env, {
        presence: this.presence,
        subscriberCount: (topic) => this.pubsub.subscriberCount(topic),
        fanOut: (topic, frame, exclude) => void this.pubsub.fanOut(topic, frame, exclude)
      })
    if (this.presence !== undefined) this.presence.span = this.spanPresence
    const builtins = Context.make(
      Connections,
      connectionsService({
        connections: () => this.connections(),
        count: () => this.openCount(),
        endSession: (clientId, code) => this.endSession(clientId, code)
      })
    ).pipe(Context.add(PubSub, pubSubService(this.pubsub)), Context.add(Presence, presenceService(this)))
    this.runtime = new InstanceRuntime(
      (config.storage === undefined
        ? builtins
        : Context.add(builtins, Storage.Storage, Storage.make(config.storage))) as Context.Context<never>,
      config.layer
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

  /** The live connection of a socket, rebuilt from its attachment after a wake; none for a foreign socket. */
  connectionOf(socket: Socket): LiveConnection | undefined {
    // One lookup on the way of every message; a socket is read once per wake.
    const known = this.live.get(socket)
    if (known !== undefined) return known ?? undefined
    const attachment = this.registry.read(socket)
    if (!isAttachment(attachment)) {
      this.live.set(socket, null)
      return undefined
    }
    const connection = new LiveConnection(
      socket,
      attachment.d,
      attachment.t,
      this.store,
      isSavedBucket(attachment.r) ? attachment.r : undefined,
      presenceOf(attachment)
    )
    connection.spanMarks = spanMarksOf(attachment)
    connection.batches = attachment.b === 1
    this.live.set(socket, connection)
    this.unclosed++
    return connection
  }

  *connections(): Iterable<LiveConnection> {
    for (const socket of this.registry.sockets()) {
      const connection = this.connectionOf(socket)
      if (connection !== undefined && !connection.closed) yield connection
    }
  }

  /**
   * Open connections of ours, counted from the runtime's sockets (correct
   * after hibernation); those of the client `except` are left out.
   */
  openCount(except?: string): number {
    let open = 0
    for (const connection of this.connections()) {
      if (connection.socket.readyState === OPEN && connection.clientId !== except) open++
    }
    this.enumerated = true
    return open
  }

  /**
   * Whether fewer than `limit` connections are open (those of the client
   * `except` left out, as {@link openCount} does). Counting them walks
   * every socket, which a reconnect storm of thousands would do once per
   * upgrade; the unclosed connections bound that count from above, so the
   * walk is needed only near the limit.
   */
  hasRoom(limit: number, except?: string): boolean {
    // The first count (after a wake) builds every connection, which completes the unclosed count.
    if (!this.enumerated) return this.openCount(except) < limit
    return this.unclosed < limit || this.openCount(except) < limit
  }

  /** A connection's close was handled (once: its `closed` flag guards it): it no longer counts. */
  release(_connection: LiveConnection): void {
    this.unclosed--
  }

  /**
   * A socket was accepted: its data is persisted before anything can run on
   * it. A resumed connection starts with its session's topics but stays out
   * of the fan-out until its replay is done.
   */
  adopt(
    socket: Socket,
    data: ConnectionData<Record<string, unknown>>,
    resumption: Resumption | undefined,
    batches: boolean
  ): LiveConnection {
    const session = resumption?.session
    const connection = new LiveConnection(
      socket,
      data,
      session === undefined ? [] : Array.from(session.topics.keys()),
      this.store,
      session?.bucket
    )
    connection.batches = batches
    if (resumption !== undefined && session === undefined) {
      this.recovery?.createSession(data.clientId, resumption.tokenHash, resumption.identity, data)
    }
    connection.resuming = session !== undefined
    connection.fromResume = session !== undefined
    connection.persist()
    this.live.set(socket, connection)
    this.unclosed++
    this.pubsub.track(connection)
    if (session !== undefined) this.presence?.resumed(connection)
    return connection
  }

  /** The scope the connection's messages and hooks run in: publishes from it are its own. */
  scopeOf(connection: LiveConnection): ScopeEntry {
    return connection.scope ??= new ConnectionPublishScope(this, connection)
  }

  lifecycleContext(connection: LiveConnection, code?: number, reason?: string): HandlerContext {
    return new HandlerContext(this, connection, "", undefined, {}, undefined, undefined, code, reason)
  }

  /** A new rpc request answered before its handler's synchronous part was over: recorded with its answer, at once. */
  recordAnswer(request: FreshRequest, frame: string): number {
    return this.recovery!.recordFresh(request, frame)
  }

  /** A recorded rpc was answered: the answer is kept, and sockets of its session waiting for it get it. */
  answered(record: number, frame: string): void {
    if (this.recovery === undefined) return
    this.recovery.storeReply(record, frame)
    this.pendingReplies.finish(record, frame)
  }

  /**
   * Ends the session of a client with no open socket here, when `code`
   * ends sessions (SPEC §11.2); true when there was one to end.
   */
  endSession(clientId: string, code: number): boolean {
    if (this.recovery === undefined || !endsSession(code)) return false
    const ended = this.recovery.endSession(clientId)
    // Its place in presence, held while it might resume, goes with it.
    this.presence?.ended(clientId)
    return ended
  }

  errorSent(error: SentError, ctx: HandlerContext): void {
    this.router.notifyError(error, ctx, { clientId: ctx.clientId, type: ctx.type })
  }

  // -- Topics and publishing: the one way in ----------------------------------

  subscribe(connection: LiveConnection, topic: string): Promise<void> {
    return this.runtime.runEngine(this.pubsub.subscribe(connection, topic))
  }

  unsubscribe(connection: LiveConnection, topic: string): void {
    this.pubsub.unsubscribe(connection, topic)
  }

  /**
   * Every publish comes through here. `from` is the connection whose
   * message or hook is running (authorized, and `excludeSelf` applies); it
   * is undefined only for the handler's own `publish` outside any message.
   */
  publish(
    topic: string,
    message: MessageSchema,
    payload: unknown,
    options: PublishOptions | undefined,
    from: LiveConnection | undefined
  ): Promise<PublishResult> {
    // A publish that finishes at once needs no fiber; none needs the user's layer.
    const started = this.pubsub.start(topic, message, payload, options, from)
    const published = isEffect(started) ? this.runtime.runEngine(started) : Promise.resolve(started)
    if (this.router.observers.length === 0) return published
    return published.then((result) => {
      if (result.ok) this.router.observe("onPublish", { topic, type: message.type, payload, meta: options?.meta })
      return result
    })
  }

  // -- Presence ------------------------------------------------------------------

  /** The presence engine, or a failure saying it is off. */
  presenceOr(topic: string): Effect.Effect<InstancePresence, TopicError> {
    return this.presence === undefined
      ? Effect.fail(presenceOff(topic))
      : Effect.succeed(this.presence)
  }

  /** Sends a topic's whole presence to one of its subscribers (on subscribe, resume, request). */
  sendPresence(connection: LiveConnection, topic: string): void {
    if (this.spanPresence?.spans(topic) === true) this.spanPresence.sendState(connection, topic)
    else if (this.presence !== undefined) connection.sendFrame(this.presence.stateFrame(topic))
  }

  /** Runs an Effect on this instance's Effect runtime, outside any connection (e.g. `authenticate`). */
  run<A>(effect: Effect.Effect<A, unknown, unknown>): Promise<A> {
    return this.runtime.runPromise(effect)
  }
}
