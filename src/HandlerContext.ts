/**
 * The `ctx` handed to promise and Effect handlers alike: the message, the
 * connection, and what a handler can do (send, reply, publish, subscribe,
 * close, store).
 *
 * @since 0.1.0
 */
import type { ConnectionData, SendOptions } from "./Connection"
import type { ErrorCode } from "./Errors"
import type { Instance } from "./internal/instance"
import type { LiveConnection } from "./internal/connection"
import type { MessageSchema, Payload, PayloadArgs, RpcSchema } from "./Message"
import { encodeErrorFrame } from "./Message"
import type { PublishOptions, PublishResult } from "./PubSub"

/**
 * The connection's topic subscriptions.
 *
 * @since 0.1.0
 * @category models
 */
export interface Topics {
  /** Rejects with a `TopicError` (bad name, over 100 topics, or denied). */
  subscribe(topic: string): Promise<void>
  unsubscribe(topic: string): Promise<void>
  list(): ReadonlyArray<string>
  has(topic: string): boolean
}

/**
 * What every hook and handler can reach.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConnectionContext<TData = {}> {
  readonly clientId: string
  readonly data: ConnectionData<TData>
  /** Merges into the connection data (persisted across hibernation; 16 KiB at most). */
  assignData(partial: Partial<TData>): void
  send<M extends MessageSchema>(message: M, ...args: PayloadArgs<M, SendOptions>): void
  /** Publishes to subscribers of `topic` in this instance. Never rejects. */
  publish<M extends MessageSchema>(topic: string, message: M, ...args: PayloadArgs<M, PublishOptions>): Promise<PublishResult>
  readonly topics: Topics
  close(code?: number, reason?: string): void
  /** The Durable Object's storage (throws when the router runs without one). */
  readonly storage: DurableObjectStorage
  readonly env: Cloudflare.Env
}

/**
 * `onClose`'s context: the client's close code and reason.
 *
 * @since 0.1.0
 * @category models
 */
export interface CloseContext<TData = {}> extends ConnectionContext<TData> {
  readonly code: number
  readonly reason: string
}

/**
 * A message handler's context.
 *
 * @since 0.1.0
 * @category models
 */
export interface MessageContext<M extends MessageSchema = MessageSchema, TData = {}> extends ConnectionContext<TData> {
  readonly type: M["type"]
  readonly payload: Payload<M>
  readonly meta: Readonly<Record<string, unknown>>
  /** Sends an error frame (`RPC_ERROR` for an RPC request). */
  error(code: ErrorCode, message: string, details?: unknown): void
}

/**
 * An RPC handler's context: `reply` answers once, with the request's
 * correlationId.
 *
 * @since 0.1.0
 * @category models
 */
export interface RpcContext<M extends RpcSchema = RpcSchema, TData = {}> extends MessageContext<M, TData> {
  reply(...args: PayloadArgs<M["response"], SendOptions>): void
}

class TopicsView implements Topics {
  constructor(private readonly instance: Instance, private readonly connection: LiveConnection) {}
  subscribe(topic: string): Promise<void> {
    return this.instance.subscribe(this.connection, topic)
  }
  unsubscribe(topic: string): Promise<void> {
    this.instance.pubsub.unsubscribe(this.connection, topic)
    return Promise.resolve()
  }
  list(): ReadonlyArray<string> {
    return Array.from(this.connection.topics)
  }
  has(topic: string): boolean {
    return this.connection.topics.has(topic)
  }
}

/**
 * The one implementation behind every context type. Methods live on the
 * prototype so building a context per message allocates one small object.
 *
 * @internal
 */
export class HandlerContext {
  replied = false

  constructor(
    readonly instance: Instance,
    readonly connection: LiveConnection,
    readonly type: string | undefined,
    readonly payload: unknown,
    readonly meta: Readonly<Record<string, unknown>>,
    readonly correlationId: string | undefined,
    readonly response: MessageSchema | undefined,
    readonly code?: number,
    readonly reason?: string
  ) {}

  get clientId(): string {
    return this.connection.clientId
  }
  get data(): ConnectionData<Record<string, unknown>> {
    return this.connection.data
  }
  get env(): Cloudflare.Env {
    return this.instance.env
  }
  get storage(): DurableObjectStorage {
    return this.instance.storage
  }
  get topics(): Topics {
    return this.connection.topicsView ??= new TopicsView(this.instance, this.connection)
  }

  assignData(partial: Readonly<Record<string, unknown>>): void {
    const tooLarge = this.connection.assignData(partial)
    if (tooLarge !== undefined) throw tooLarge
  }

  send(message: MessageSchema, payload?: unknown, options?: SendOptions): void {
    this.connection.send(message, payload, options)
  }

  reply(payload?: unknown, options?: SendOptions): void {
    if (this.response === undefined) throw new Error("durable-ws: reply() is only available in rpc handlers")
    if (this.replied) return
    this.replied = true
    this.connection.send(this.response, payload, options, this.correlationId)
  }

  error(code: ErrorCode, message: string, details?: unknown): void {
    // An RPC request gets exactly one answer: a reply, an error, or a timeout.
    if (this.response !== undefined && this.replied) return
    this.replied = true
    this.connection.sendFrame(
      encodeErrorFrame(details === undefined ? { code, message } : { code, message, details }, this.correlationId)
    )
  }

  publish(topic: string, message: MessageSchema, payload?: unknown, options?: PublishOptions): Promise<PublishResult> {
    return this.instance.publish(topic, message, payload, options, this.connection)
  }

  close(code?: number, reason?: string): void {
    this.connection.close(code, reason)
  }
}
