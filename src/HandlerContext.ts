/**
 * The `ctx` handed to promise and Effect handlers alike: the message, the
 * connection, and what a handler can do (send, reply, publish, subscribe,
 * close, store). These are the types; the engine implements them.
 *
 * @since 0.1.0
 */
import type { ErrorCode } from "./Errors"
import type { ConnectionData, SendOptions } from "./Connection"
import type { MessageSchema, Payload, PayloadArgs, RpcSchema } from "./Message"
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
 * `onOpen`'s context.
 *
 * @since 0.1.0
 * @category models
 */
export interface OpenContext<TData = {}> extends ConnectionContext<TData> {
  /** With `recovery`: this socket resumed a session (its replay has been sent). */
  readonly recovered: boolean
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
  /**
   * With `recovery`: the session may still be resumed (any close but the
   * client's 1000), so a "left" announcement can wait.
   */
  readonly resumable: boolean
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
  /**
   * Sends progress to the requesting connection only, validated against
   * the rpc's `progress` schema, before the reply. Dropped once the request
   * was answered or ran past its deadline, or the connection closed. Only an
   * rpc declared with `{ progress }` has it (`never` otherwise).
   */
  readonly progress: M["progress"] extends MessageSchema ? (...args: PayloadArgs<M["progress"], never>) => void : never
}
