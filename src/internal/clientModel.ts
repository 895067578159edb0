/**
 * The client's errors and the shapes of its options and events, kept apart
 * from the connection logic in Client.ts, which re-exports them.
 */
import * as Schema from "effect/Schema"
import { ErrorCode } from "../Errors"
import type { ValidationError } from "../Errors"
import type { ProgressOf, RpcSchema } from "../Message"
import type { SessionStore } from "./clientSession"

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/**
 * The server answered with an `ERROR` or `RPC_ERROR` frame. Requests reject
 * with it; error frames that answer no request reach `onError` listeners.
 *
 * @since 0.1.0
 * @category errors
 */
export class ServerError extends Schema.TaggedError<ServerError>()("ServerError", {
  code: ErrorCode,
  message: Schema.String,
  details: Schema.optional(Schema.Unknown),
  retryable: Schema.optional(Schema.Boolean),
  retryAfterMs: Schema.optional(Schema.Number),
  correlationId: Schema.optional(Schema.String)
}) {}

/**
 * A request got no reply within its timeout.
 *
 * @since 0.1.0
 * @category errors
 */
export class TimeoutError extends Schema.TaggedError<TimeoutError>()("TimeoutError", {
  type: Schema.String,
  timeoutMs: Schema.Number,
  message: Schema.String
}) {}

/**
 * The connection closed before a request was answered, the client was
 * closed, or it gave up reconnecting.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConnectionClosedError extends Schema.TaggedError<ConnectionClosedError>()("ConnectionClosedError", {
  code: Schema.optional(Schema.Number),
  reason: Schema.optional(Schema.String),
  message: Schema.String
}) {}

/**
 * A request whose handler a server restart cut off before it answered: its
 * outcome is unknown (it may or may not have taken effect). The server
 * answers its resend with `RPC_ERROR ABORTED` (`details.reason:
 * "INTERRUPTED"`) instead of running it twice. The Effect face fails with
 * this error; the promise face rejects with that `ServerError`, which
 * {@link isInterrupted} recognises.
 *
 * @since 0.1.0
 * @category errors
 */
export class RequestInterrupted extends Schema.TaggedError<RequestInterrupted>()("RequestInterrupted", {
  correlationId: Schema.optional(Schema.String),
  message: Schema.String
}) {}

/**
 * Whether a request failed because a server restart cut its handler off
 * (`RPC_ERROR ABORTED` with `details.reason: "INTERRUPTED"`): its outcome
 * is unknown, so check before trying again.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isInterrupted = (error: unknown): error is ServerError | RequestInterrupted =>
  error instanceof RequestInterrupted ||
  (error instanceof ServerError && error.code === "ABORTED" && typeof error.details === "object" &&
    error.details !== null && (error.details as { readonly reason?: unknown }).reason === "INTERRUPTED")

/**
 * Everything a request can reject with ({@link RequestInterrupted} only in
 * the Effect face).
 *
 * @since 0.1.0
 * @category errors
 */
export type RequestError = ServerError | TimeoutError | ConnectionClosedError | ValidationError | RequestInterrupted

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

/**
 * An event as the client reads it from a socket: `data` for messages,
 * `code`/`reason` for closes.
 *
 * @since 0.1.0
 * @category models
 */
export interface SocketEvent {
  readonly data?: unknown
  readonly code?: number
  readonly reason?: string
  /**
   * On a close: the HTTP status of a refused upgrade, when the socket can
   * see it. Browsers' and Node's built-in `WebSocket` cannot (a refused
   * upgrade is a plain 1006 there); a custom `webSocket` factory may report it.
   */
  readonly status?: number
}

/**
 * The part of `WebSocket` the client uses. The browser's and Node's global
 * `WebSocket` fit it; tests may pass anything that does.
 *
 * @since 0.1.0
 * @category models
 */
export interface WebSocketLike {
  readonly readyState: number
  binaryType?: string
  send(data: string): void
  close(code?: number, reason?: string): void
  addEventListener(type: "open" | "message" | "close" | "error", listener: (event: SocketEvent) => void): void
}

/**
 * Opens a socket. The default uses the global `WebSocket`.
 *
 * @since 0.1.0
 * @category models
 */
export type WebSocketFactory = (url: string, protocols: ReadonlyArray<string> | undefined) => WebSocketLike

/**
 * Reconnect backoff: attempt `n` (from 0) waits
 * `min(maxDelayMs, initialDelayMs · multiplierⁿ)`, of which the fraction
 * `jitter` is random, so clients dropped together do not return together.
 * The count starts over once a connection has stayed open for
 * `stableAfterMs`, so a server that accepts and at once closes is not
 * hammered.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReconnectOptions {
  /** Default 250. */
  readonly initialDelayMs?: number
  /** Default 10 000. */
  readonly maxDelayMs?: number
  /** Default 2. */
  readonly multiplier?: number
  /** 0 (none) to 1 (full jitter); default 0.5. */
  readonly jitter?: number
  /** Consecutive failed attempts before giving up; default unlimited. */
  readonly maxAttempts?: number
  /** How long a connection must last to reset the backoff; default 5 000. */
  readonly stableAfterMs?: number
  /**
   * Replaces the backoff above: the wait before attempt `attempt` (from 0)
   * after `close`, or `undefined` to give up. The Effect face maps a
   * `Schedule` onto it.
   */
  readonly nextDelay?: (attempt: number, close: CloseDetails) => number | undefined
}

/**
 * A close as the reconnect policy sees it. `terminal` is the default
 * verdict: the code is one of the "do not reconnect" codes (1000, 1008,
 * 4400–4499, see `CloseCodes`), or the upgrade was refused with 401/403
 * while the credentials cannot change (`url` and `protocols` are not
 * functions).
 *
 * @since 0.1.0
 * @category models
 */
export interface CloseDetails {
  readonly code: number
  readonly reason: string
  /** The HTTP status of a refused upgrade, when the socket reported one. */
  readonly status?: number
  readonly terminal: boolean
}

/**
 * A value, or a function computing it before every connect attempt
 * (possibly asynchronously: a token refresh).
 *
 * @since 0.1.0
 * @category models
 */
export type PerAttempt<A> = A | (() => A | PromiseLike<A>)

/**
 * After `intervalMs` without any inbound frame the client sends a
 * heartbeat; when nothing arrives within `timeoutMs` after it, the
 * connection is treated as dead and replaced.
 *
 * @since 0.1.0
 * @category models
 */
export interface HeartbeatOptions {
  /** Default 25 000. */
  readonly intervalMs?: number
  /** Default 10 000. */
  readonly timeoutMs?: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ClientOptions {
  /**
   * The server's URL. A function (sync or async) is called before every
   * connect attempt, so a token in the URL can be fresh each time.
   */
  readonly url: PerAttempt<string | URL>
  /** Subprotocols; a function is called before every attempt, like `url`. */
  readonly protocols?: PerAttempt<ReadonlyArray<string> | undefined>
  /** Opens sockets; defaults to the global `WebSocket`. */
  readonly webSocket?: WebSocketFactory
  /** Backoff settings, or `false` to never reconnect. */
  readonly reconnect?: ReconnectOptions | false
  /**
   * Overrides the close policy: return true to reconnect after this close.
   * The default is `!close.terminal`. The client's own `close()` never
   * reconnects.
   */
  readonly shouldReconnect?: (close: CloseDetails) => boolean
  /** Heartbeat settings, or `false` to send none. */
  readonly heartbeat?: HeartbeatOptions | false
  /** Frames kept while offline (default 1000); beyond it `send` returns false. */
  readonly maxQueueSize?: number
  /** Default timeout of `request` (default 10 000 ms). */
  readonly requestTimeoutMs?: number
  /** The source of jitter; defaults to `Math.random`. */
  readonly random?: () => number
  /**
   * Resumable delivery (the server must run with `recovery`): every
   * reconnect resumes the session, published messages missed meanwhile are
   * replayed and handed to `on` handlers once and in order, and requests in
   * flight are sent again and answered once.
   */
  readonly recovery?: boolean
  /** With `recovery`: keeps the session across page loads (e.g. `sessionStorage`). */
  readonly store?: SessionStore
  /**
   * The key the session is stored under (default: `durable-ws:` and the
   * URL; `durable-ws:session` when `url` is a function, so a changing token
   * does not change the key — give one key per client on a page with several).
   */
  readonly storeKey?: string
}


/**
 * What a reconnect with `recovery` ended in. `recovered: false` means a
 * new session (the old one was ended, expired or unknown): what was
 * published meanwhile is lost, and so is every topic in `gaps` (the
 * server's log no longer held all of it) — refetch that state.
 *
 * @since 0.1.0
 * @category models
 */
export interface ResumeInfo {
  readonly recovered: boolean
  /** Published messages replayed (0 when not recovered). */
  readonly replayed: number
  /** Topics that lost messages to the server's log limits, or were cut short by `truncated`. */
  readonly gaps: ReadonlyArray<string>
  /**
   * The replay stopped at the server's `maxReplayBytes`: the topics in
   * `gaps` missed messages after the replayed ones — refetch their state.
   */
  readonly truncated: boolean
}

/**
 * @since 0.1.0
 * @category models
 */
export interface SendOptions {
  /** Extra fields for the frame's `meta`. */
  readonly meta?: Readonly<Record<string, unknown>>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RequestOptions<M extends RpcSchema = RpcSchema> extends SendOptions {
  /** Overrides the client's `requestTimeoutMs`. */
  readonly timeoutMs?: number
  /**
   * Called with every progress payload the handler sends (`ctx.progress`)
   * before its reply; only for an rpc declared with a `progress` schema.
   */
  readonly onProgress?: [ProgressOf<M>] extends [never] ? never : (progress: ProgressOf<M>) => void
  /** Aborting gives up on the request: it rejects with the signal's reason and a queued frame is not sent. */
  readonly signal?: AbortSignal
}

/**
 * `idle` until `connect()`, `connecting` before the first open, `open`,
 * `reconnecting` between a close and the next open, `closed` after
 * `close()` or giving up.
 *
 * @since 0.1.0
 * @category models
 */
export type ClientState = "idle" | "connecting" | "open" | "reconnecting" | "closed"

/**
 * The close a `close` listener sees.
 *
 * @since 0.1.0
 * @category models
 */
export interface CloseInfo {
  readonly code: number
  readonly reason: string
  /** The HTTP status of a refused upgrade, when the socket reported one. */
  readonly status?: number
  /** Whether the client will try again. */
  readonly willReconnect: boolean
  /** The wait before the next attempt, when there is one. */
  readonly retryInMs?: number
}

/**
 * What an `on` handler receives besides the payload.
 *
 * @since 0.1.0
 * @category models
 */
export interface InboundFrame {
  readonly type: string
  readonly meta: Readonly<Record<string, unknown>>
}
