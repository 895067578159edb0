/**
 * The `ctx` handed to promise and Effect handlers alike: the message, the
 * connection, and what a handler can do (send, reply, publish, subscribe,
 * close, store). These are the types; the engine implements them.
 *
 * @since 0.1.0
 */
import type { ErrorCode } from "./Errors"
import type { ConnectionData, SendOptions } from "./Connection"
import type {
  MessageLike,
  MessageOf,
  MessageSchema,
  MetaOf,
  Payload,
  PayloadArgs,
  PayloadArgsWithOptions,
  RpcLike,
  RpcOf
} from "./Message"
import type { PresenceMembers } from "./Protocol"
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
 * The connection's presence (the handler's `presence` option turns it on):
 * it enters, updates and leaves a topic's presence as itself only.
 *
 * @since 0.1.0
 * @category models
 */
export interface PresenceActions {
  /**
   * Enters the topic's presence under `key` with `meta` (JSON, 1 KiB by
   * default), or replaces its key or meta there. Authorized like a
   * subscription; rejects with a `TopicError`.
   */
  track(topic: string, key: string, meta?: unknown): Promise<void>
  /** Replaces the connection's meta in the topic; rejects when it is not tracked there. */
  update(topic: string, meta: unknown): Promise<void>
  untrack(topic: string): Promise<void>
  /** The topic's members, by key, each with the metas of its connections. */
  list(topic: string): PresenceMembers
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
  /** Sends to this connection. */
  send<M extends MessageLike>(message: M, ...args: PayloadArgs<M, SendOptions & { readonly waitFor?: undefined }>): void
  /** Sends to this connection; resolves with whether the frame was handed to the socket. */
  send<M extends MessageLike>(
    message: M,
    ...args: PayloadArgsWithOptions<M, SendOptions & { readonly waitFor: "drain" | "ack" }>
  ): Promise<boolean>
  /** Publishes to subscribers of `topic` in this instance. Never rejects. */
  publish<M extends MessageLike>(topic: string, message: M, ...args: PayloadArgs<M, PublishOptions>): Promise<PublishResult>
  readonly topics: Topics
  readonly presence: PresenceActions
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
export interface MessageContext<M extends MessageLike = MessageLike, TData = {}> extends ConnectionContext<TData> {
  readonly type: MessageOf<M>["type"]
  readonly payload: Payload<M>
  readonly meta: MetaOf<M>
  /** When the frame arrived, in ms since the epoch. */
  readonly receivedAt: number
  /**
   * Sends an error frame (`RPC_ERROR` for an RPC request, which it answers):
   * a standard code or the application's own, a message (the code's
   * description when left out), details, and options. `onError` hears of it.
   */
  error(code: ErrorCode | (string & {}), message?: string, details?: unknown, options?: ErrorOptions): void
}

/**
 * `ctx.error`'s options.
 *
 * @since 0.1.0
 * @category models
 */
export interface ErrorOptions {
  /** Whether the client may retry (included in the payload when given). */
  readonly retryable?: boolean
  /** When the client may retry, in ms (`null`: not at all). */
  readonly retryAfterMs?: number | null
  /** Extra fields for the frame's `meta` (`correlationId` stays the request's). */
  readonly meta?: Readonly<Record<string, unknown>>
  /** The error behind it, for `onError` (never sent). */
  readonly cause?: unknown
}

/**
 * `ctx.progress`'s options.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProgressOptions {
  /** Extra fields for the frame's `meta` (`correlationId` stays the request's). */
  readonly meta?: Readonly<Record<string, unknown>>
  /** Progress whose signal is already aborted is skipped. */
  readonly signal?: AbortSignal | undefined
  /** Progress sent less than this many ms after the last one that went out is skipped. */
  readonly throttleMs?: number | undefined
}

/**
 * `ctx.reply`'s options.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReplyOptions {
  /** Extra fields for the frame's `meta` (`correlationId` stays the request's). */
  readonly meta?: Readonly<Record<string, unknown>>
  /** A reply whose signal is already aborted is skipped (the request stays unanswered). */
  readonly signal?: AbortSignal | undefined
  /** Makes `reply` return a Promise that settles once the reply was handed to the socket. */
  readonly waitFor?: "drain" | "ack" | undefined
}

/**
 * An RPC handler's context: `reply` answers once, with the request's
 * correlationId.
 *
 * @since 0.1.0
 * @category models
 */
export interface RpcContext<M extends RpcLike = RpcLike, TData = {}> extends MessageContext<M, TData> {
  reply(...args: PayloadArgs<RpcOf<M>["response"], ReplyOptions & { readonly waitFor?: undefined }>): void
  reply(
    ...args: PayloadArgsWithOptions<RpcOf<M>["response"], ReplyOptions & { readonly waitFor: "drain" | "ack" }>
  ): Promise<void>
  /**
   * Sends progress (`$ws:rpc-progress`) to the requesting connection only,
   * before the reply. An rpc declared with `{ progress }` types it and
   * validates it on the way out; any other rpc sends it as given (it must
   * be JSON). Dropped once the request was answered or ran past its
   * deadline, or the connection closed.
   */
  readonly progress: RpcOf<M>["progress"] extends MessageSchema
    ? (...args: PayloadArgs<RpcOf<M>["progress"], ProgressOptions>) => void
    : (payload?: unknown, options?: ProgressOptions) => void
}
