/**
 * A typed WebSocket client for durable-ws servers, for browsers and Node.
 *
 * It shares the message schemas with the server: `send` validates and
 * encodes outbound payloads, `on` hands handlers decoded payloads, and
 * `request` pairs an RPC with its reply through `meta.correlationId`. The
 * connection heals itself: closes are followed by reconnects with
 * exponential backoff and jitter, frames sent while offline wait in a
 * bounded queue, and a heartbeat notices connections that died silently.
 *
 * This module is the client's vocabulary (its options, events and errors)
 * and its protocol layer, the {@link Client}: messages, requests, progress
 * and resumes. Underneath, a reconnecting transport (internal) moves opaque
 * frames over whatever socket the {@link WebSocketLike} contract admits.
 *
 * Only the schema, codec and protocol modules are imported, never the
 * Durable Object runtime, so the client bundles for any JavaScript
 * environment with a `WebSocket`.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { CloseCodes, isTerminalCloseCode } from "./CloseCodes"
import { ErrorCode, ValidationError } from "./Errors"
import type { MessageLike, MessageSchema, Payload, PayloadArgs, PayloadResult, ProgressOf, RpcLike, RpcOf, RpcSchema } from "./Message"
import { decodePayload, encodePayload, isPendingResult, messageOf, rpcOf } from "./Message"
import type { ServerFrame } from "./Protocol"
import {
  batchedFrames,
  decodePresenceFrame,
  decodeServerFrame,
  encodeFrame,
  encodePresenceRequest,
  interruptedReason,
  isErrorType,
  isProgressType,
  ReservedTypes,
  withBatches
} from "./Protocol"
import type { PresenceMembers } from "./Protocol"
import { TopicPresence } from "./internal/client/presence"
import { Handlers } from "./internal/client/handlers"
import { PendingRequests } from "./internal/client/requests"
import { ClientSession } from "./internal/client/session"
import { Transport } from "./internal/client/transport"
import type { Ended } from "./internal/client/transport"

export { CloseCodes, isTerminalCloseCode } from "./CloseCodes"

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
  (error instanceof ServerError && error.code === "ABORTED" && isRecord(error.details) &&
    error.details["reason"] === interruptedReason)

/**
 * Everything a request can reject with ({@link RequestInterrupted} only in
 * the Effect face).
 *
 * @since 0.1.0
 * @category errors
 */
export type RequestError = ServerError | TimeoutError | ConnectionClosedError | ValidationError | RequestInterrupted

// ---------------------------------------------------------------------------
// The socket
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
 * The part of `WebSocket` the client uses. The browser's, Node's and
 * workerd's global `WebSocket` fit it; tests may pass anything that does.
 * `readyState` 1 means open; the client listens once to `open`, `message`
 * (`data`: text or `ArrayBuffer`), `close` (`code`, `reason`, `status`) and
 * `error` (ignored: a `close` must follow), and a socket must emit `close`
 * once it has stopped.
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

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

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
 * Where a client keeps its session between page loads: `sessionStorage`
 * fits, as does any object with these three methods.
 *
 * @since 0.1.0
 * @category models
 */
export interface SessionStore {
  getItem(key: string): string | null
  setItem(key: string, value: string): void
  removeItem(key: string): void
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
   * before its reply: decoded by the rpc's `progress` schema, or as it came
   * (`unknown`) for an rpc that declares none.
   */
  readonly onProgress?: (progress: ProgressOf<M>) => void
  /** Aborting gives up on the request: it rejects with the signal's reason and a queued frame is not sent. */
  readonly signal?: AbortSignal
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

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
 * What an `on` handler receives besides the payload.
 *
 * @since 0.1.0
 * @category models
 */
export interface InboundFrame {
  readonly type: string
  readonly meta: Readonly<Record<string, unknown>>
}

/**
 * The delay before reconnect attempt `attempt` (counted from 0).
 *
 * @since 0.1.0
 * @category utils
 */
export const backoffDelay = (attempt: number, options: ReconnectOptions = {}, random: () => number = Math.random): number => {
  const initial = options.initialDelayMs ?? 250
  const max = options.maxDelayMs ?? 10_000
  const multiplier = options.multiplier ?? 2
  const jitter = Math.min(1, Math.max(0, options.jitter ?? 0.5))
  const ceiling = Math.min(max, initial * multiplier ** attempt)
  return Math.round(ceiling * (1 - jitter) + ceiling * jitter * random())
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

const settled: Promise<void> = Promise.resolve()

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const decodeServerError = Schema.decodeUnknownOption(Schema.Struct({
  code: ErrorCode,
  message: Schema.String,
  details: Schema.optional(Schema.Unknown),
  retryable: Schema.optional(Schema.Boolean),
  retryAfterMs: Schema.optional(Schema.Number)
}))

const toServerError = (payload: unknown, correlationId: string | undefined): ServerError => {
  const decoded = decodeServerError(payload)
  const fields = decoded._tag === "Some"
    ? decoded.value
    : { code: "INTERNAL" as const, message: "Malformed error frame from server", details: payload }
  return new ServerError(correlationId === undefined ? fields : { ...fields, correlationId })
}

/** The least wait after a resume refused with 429 (the server's default rate: one resume per 2 s). */
const resumeRefusedDelayMs = 2000

/** The resume outcome as the client reports it; a malformed payload reads as not recovered. */
const resumeInfoOf = (payload: unknown): ResumeInfo => {
  const fields: Partial<Record<"recovered" | "replayed" | "gaps" | "truncated", unknown>> = isRecord(payload) ? payload : {}
  return {
    recovered: fields.recovered === true,
    replayed: typeof fields.replayed === "number" ? fields.replayed : 0,
    gaps: Array.isArray(fields.gaps) ? fields.gaps.filter((t): t is string => typeof t === "string") : [],
    truncated: fields.truncated === true
  }
}

/**
 * A connection to a durable-ws server. Create it with {@link createClient}.
 *
 * @since 0.1.0
 * @category models
 */
/**
 * A change in a topic's presence: the metas that joined and left (an
 * updated meta leaves and joins under one ref), the keys that became or
 * stopped being members, and the state after it. In counts-only mode
 * (a large topic) only `count` is known.
 *
 * @since 0.1.0
 * @category models
 */
export interface PresenceChange {
  readonly topic: string
  readonly joins: PresenceMembers
  readonly leaves: PresenceMembers
  /** Keys that were not members before this change. */
  readonly joined: ReadonlyArray<string>
  /** Keys that are no members any more. */
  readonly left: ReadonlyArray<string>
  readonly members: PresenceMembers
  readonly count: number
  readonly countsOnly: boolean
}

/**
 * One topic's presence as the client knows it: the server sends it to
 * subscribers of the topic (the whole state on subscribing and after a
 * resume, then diffs).
 *
 * @since 0.1.0
 * @category models
 */
export interface PresenceView {
  readonly topic: string
  /** The members now, by key, each with the metas of its connections. */
  readonly members: PresenceMembers
  /** How many members (the only figure in counts-only mode). */
  readonly count: number
  readonly countsOnly: boolean
  /** Whether the server has sent this topic's state yet. */
  readonly known: boolean
  /** Runs on every change. Returns an unsubscribe function. */
  onChange(listener: (change: PresenceChange) => void): () => void
  /** Asks the server for the whole state again (answered only to a subscriber of the topic, once a second at most). */
  refresh(): void
}

export class Client {
  private readonly transport: Transport
  private readonly pending = new PendingRequests()
  private readonly handlers = new Handlers()
  private readonly session: ClientSession | undefined
  private readonly openListeners = new Set<() => void>()
  private readonly closeListeners = new Set<(info: CloseInfo) => void>()
  private readonly errorListeners = new Set<(error: unknown) => void>()
  private readonly stateListeners = new Set<(state: ClientState) => void>()
  private readonly resumeListeners = new Set<(info: ResumeInfo) => void>()
  private readonly presences = new Map<string, { readonly state: TopicPresence; readonly listeners: Set<(change: PresenceChange) => void> }>()
  private openWaiters: Array<{ resolve: () => void; reject: (error: ConnectionClosedError) => void }> = []
  // Set while an asynchronous validator is busy with an outbound (or inbound) payload: what
  // comes after it waits, so frames leave, and handlers run, in order.
  private outbound: Promise<void> | undefined = undefined
  private inbound: Promise<void> | undefined = undefined

  constructor(private readonly options: ClientOptions) {
    const url = options.url
    const session = this.session = options.recovery === true
      ? new ClientSession(options.store, options.storeKey ?? (typeof url === "function" ? "durable-ws:session" : `durable-ws:${String(url)}`))
      : undefined
    this.transport = new Transport(options, {
      nextDelay: (attempt, close) => {
        const reconnect = options.reconnect === false ? undefined : options.reconnect
        const delay = reconnect?.nextDelay === undefined
          ? backoffDelay(attempt, reconnect, options.random)
          : reconnect.nextDelay(attempt, close)
        // 429: the session resumed too often; its token still holds, so wait out the server's rate.
        return delay !== undefined && close.status === 429 ? Math.max(delay, resumeRefusedDelayMs) : delay
      },
      // Every socket says it reads `$batch` frames (a server that does not know the parameter ignores it).
      urlFor: (url) => withBatches(session === undefined ? url : session.urlFor(url)),
      opened: () => this.opened(),
      received: (data) => this.receive(data),
      sent: (correlationId) => {
        const request = this.pending.get(correlationId)
        if (request !== undefined) request.sent = true
      },
      dropped: (code, reason) => {
        // With a session to resume, the requests that went out wait for the resume, which sends them again.
        this.pending.markLost()
        if (session?.resumable !== true) this.failLost(code, reason)
        // Another socket took the session over (a copy of this page): it is theirs now. Any other
        // terminal close ended the session on the server: it is forgotten here too.
        if (isTerminalCloseCode(code)) session?.clear()
      },
      closed: (info) => this.emit(this.closeListeners, info),
      stateChanged: (state) => this.emit(this.stateListeners, state),
      error: (error) => this.emitError(error),
      ended: (ended) => this.ended(ended)
    })
  }

  /** The connection state. */
  get state(): ClientState {
    return this.transport.state
  }

  /** Frames waiting for the connection. */
  get queued(): number {
    return this.transport.queued
  }

  /**
   * Starts connecting (once) and resolves when the connection is open.
   * Rejects with {@link ConnectionClosedError} if the client is closed or
   * gives up first.
   */
  connect(): Promise<void> {
    if (this.state === "open") return Promise.resolve()
    if (this.state === "closed") {
      return Promise.reject(new ConnectionClosedError({ message: "The client is closed" }))
    }
    const opened = new Promise<void>((resolve, reject) => this.openWaiters.push({ resolve, reject }))
    this.transport.start()
    return opened
  }

  /**
   * Sends a message. Offline, the frame waits in the queue (sent in order on
   * the next open). Returns false when it was dropped: the queue is full or
   * the client is closed. Throws a `ValidationError` for an invalid payload.
   * A payload an asynchronous validator checks is sent once it is valid, still
   * in order; if it is not, or it then finds the queue full, the error goes to
   * `onError`.
   */
  send<M extends MessageLike>(message: M, ...[payload, options]: PayloadArgs<M, SendOptions>): boolean {
    return this.submit(this.encode(messageOf(message), payload, options?.meta), undefined, (error) => this.emitError(error))
  }

  /**
   * Sends an RPC request and resolves with the decoded reply payload.
   * Rejects with {@link ServerError} (`RPC_ERROR`), {@link TimeoutError},
   * {@link ConnectionClosedError} (the connection dropped after the request
   * went out, or it could not be queued) or `ValidationError` (an invalid
   * request or reply payload).
   */
  request<M extends RpcLike>(
    definition: M,
    ...[payload, options]: PayloadArgs<M, RequestOptions<RpcOf<M>>>
  ): Promise<Payload<RpcOf<M>["response"]>> {
    const rpc = rpcOf(definition)
    if (this.state === "closed") {
      return Promise.reject(new ConnectionClosedError({ message: "The client is closed" }))
    }
    const signal = options?.signal
    if (signal?.aborted === true) return Promise.reject(signal.reason)
    const correlationId = this.pending.nextId()
    let frame: string | Promise<string>
    try {
      frame = this.encode(rpc, payload, { ...options?.meta, correlationId })
    } catch (error) {
      return Promise.reject(error)
    }
    const timeoutMs = options?.timeoutMs ?? this.options.requestTimeoutMs ?? 10_000
    return new Promise<Payload<RpcOf<M>["response"]>>((resolve, reject) => {
      const giveUp = (error: unknown) => {
        if (this.pending.take(correlationId) === undefined) return
        // A request that never left must not go out after its caller gave up.
        this.transport.unqueue(correlationId)
        reject(error)
      }
      const timer = setTimeout(() => {
        giveUp(new TimeoutError({ type: rpc.type, timeoutMs, message: `No reply to "${rpc.type}" within ${timeoutMs} ms` }))
      }, timeoutMs)
      const aborted = () => giveUp(signal!.reason)
      signal?.addEventListener("abort", aborted, { once: true })
      const settle = <A>(f: (value: A) => void) => (value: A) => {
        signal?.removeEventListener("abort", aborted)
        f(value)
      }
      this.pending.add(correlationId, {
        type: rpc.type,
        response: rpc.response,
        progress: rpc.progress,
        onProgress: options?.onProgress as ((progress: unknown) => void) | undefined,
        resolve: settle(resolve as (value: unknown) => void),
        reject: settle(reject),
        timer,
        sent: false,
        lost: false,
        // Kept only when it may be sent again after a resume (once validated, if its validator is asynchronous).
        frame: this.session === undefined || typeof frame !== "string" ? undefined : frame
      })
      const failed = (error: unknown) => {
        if (this.pending.take(correlationId) !== undefined) settle(reject)(error)
      }
      if (!this.submit(frame, correlationId, failed)) failed(this.notQueued())
    })
  }

  /** Calls `handler` with the decoded payload of every `message` frame. Returns an unsubscribe function. */
  on<M extends MessageLike>(message: M, handler: (payload: Payload<M>, frame: InboundFrame) => void): () => void {
    return this.handlers.add(messageOf(message), handler as (payload: unknown, frame: InboundFrame) => void)
  }

  /**
   * The presence of `topic`: its members now and their changes, kept up to
   * date from the frames the server sends to the topic's subscribers.
   */
  presence(topic: string): PresenceView {
    const entry = this.presenceOf(topic)
    const client = this
    return {
      topic,
      get members() {
        return entry.state.snapshot
      },
      get count() {
        return entry.state.count
      },
      get countsOnly() {
        return entry.state.countsOnly
      },
      get known() {
        return entry.state.known
      },
      onChange: (listener) => {
        entry.listeners.add(listener)
        return () => void entry.listeners.delete(listener)
      },
      refresh: () => void client.transport.write(encodePresenceRequest(topic), undefined)
    }
  }

  private presenceOf(topic: string) {
    let entry = this.presences.get(topic)
    if (entry === undefined) this.presences.set(topic, entry = { state: new TopicPresence(topic), listeners: new Set() })
    return entry
  }

  /** A `$presence` or `$presence_diff` frame: applied to the topic's copy, then reported. */
  private presenceFrame(type: string, payload: unknown): void {
    const frame = decodePresenceFrame(type, payload)
    if (frame === undefined) return this.emitError(new ValidationError({ message: `Malformed ${type} frame` }))
    const entry = this.presenceOf(frame.payload.topic)
    const change = frame.kind === "state" ? entry.state.applyState(frame.payload) : entry.state.applyDiff(frame.payload)
    this.emit(entry.listeners, change)
  }

  /**
   * Runs on every open, before queued frames are flushed: the place to
   * re-join rooms or re-subscribe after a reconnect.
   */
  onOpen(listener: () => void): () => void {
    this.openListeners.add(listener)
    return () => void this.openListeners.delete(listener)
  }

  /** Runs on every close of the underlying socket. */
  onClose(listener: (info: CloseInfo) => void): () => void {
    this.closeListeners.add(listener)
    return () => void this.closeListeners.delete(listener)
  }

  /**
   * Sees `ServerError`s that answer no request, server frames that fail to
   * decode (`ValidationError`), and errors thrown by handlers.
   */
  onError(listener: (error: unknown) => void): () => void {
    this.errorListeners.add(listener)
    return () => void this.errorListeners.delete(listener)
  }

  /**
   * With `recovery`: runs after every reconnect once the server has
   * answered the resume (after the replayed messages were handled).
   */
  onResumed(listener: (info: ResumeInfo) => void): () => void {
    this.resumeListeners.add(listener)
    return () => void this.resumeListeners.delete(listener)
  }

  /** Runs on every state change. */
  onStateChange(listener: (state: ClientState) => void): () => void {
    this.stateListeners.add(listener)
    return () => void this.stateListeners.delete(listener)
  }

  /** Closes for good: no reconnect; queued frames are dropped and open requests rejected. */
  close(code: number = CloseCodes.Normal, reason = ""): void {
    if (this.state === "closed") return
    // A close with 1000 tells the server the session is over; the stored one goes with it.
    if (code === CloseCodes.Normal) this.session?.clear()
    this.transport.close(code, reason, "The client was closed")
  }

  // -- Connection ------------------------------------------------------------

  private opened(): void {
    this.emit(this.openListeners, undefined)
    // An open listener may have closed the client: then the waiters hear that instead.
    if (this.state !== "open") return
    const waiters = this.openWaiters
    this.openWaiters = []
    for (const waiter of waiters) waiter.resolve()
  }

  /** The transport stopped for good: fail what waits. */
  private ended({ code, reason, message }: Ended): void {
    const error = new ConnectionClosedError({ code, reason, message })
    this.pending.failAll(error)
    const waiters = this.openWaiters
    this.openWaiters = []
    for (const waiter of waiters) waiter.reject(error)
  }

  private failLost(code: number | undefined, reason: string | undefined): void {
    this.pending.failLost((request) =>
      new ConnectionClosedError({ code, reason, message: `The connection closed before "${request.type}" was answered` })
    )
  }

  /** The server answered a resume: hand over the outcome, then resend or fail the requests in flight. */
  private resumed(payload: unknown): void {
    const info = resumeInfoOf(payload)
    if (info.recovered) {
      for (const request of this.pending.lostFrames()) this.transport.transmit(request)
    } else {
      this.failLost(undefined, "The session could not be resumed")
    }
    this.emit(this.resumeListeners, info)
  }

  // -- Outbound --------------------------------------------------------------

  /** The frame, or a Promise of it when an asynchronous validator is checking the payload. */
  private encode(
    message: MessageSchema,
    payload: unknown,
    meta: Readonly<Record<string, unknown>> | undefined
  ): string | Promise<string> {
    const frameOf = (encoded: PayloadResult): string => {
      if (!encoded.ok) throw encoded.error
      return encodeFrame(message.type, encoded.value, meta)
    }
    const encoded = encodePayload(message, payload)
    return isPendingResult(encoded) ? encoded.then(frameOf) : frameOf(encoded)
  }

  private notQueued(): ConnectionClosedError {
    return new ConnectionClosedError({
      message: this.state === "closed" ? "The client is closed" : "Not connected and the send queue is full"
    })
  }

  /**
   * Writes a frame in order: while an earlier frame waits for its validator,
   * this one waits behind it. False when it was dropped at once; a frame
   * that waited and was then invalid or dropped is handed to `failed`.
   */
  private submit(frame: string | Promise<string>, correlationId: string | undefined, failed: (error: unknown) => void): boolean {
    if (typeof frame === "string" && this.outbound === undefined) return this.transport.write(frame, correlationId)
    if (this.state === "closed") return false
    // Marked handled at once: a rejection reaches `failed`, never the unhandled-rejection hook.
    if (typeof frame !== "string") frame.catch(() => {})
    const written = (this.outbound ?? settled).then(() => frame).then((text) => {
      // Closing drops what is queued, this too; a request that timed out meanwhile is not sent after all.
      if (this.state === "closed") return
      if (correlationId !== undefined) {
        const request = this.pending.get(correlationId)
        if (request === undefined) return
        if (this.session !== undefined) request.frame = text
      }
      if (!this.transport.write(text, correlationId)) failed(this.notQueued())
    }, failed)
    this.outbound = written
    void written.then(() => {
      if (this.outbound === written) this.outbound = undefined
    })
    return true
  }

  // -- Inbound ---------------------------------------------------------------

  private receive(data: unknown): void {
    const frame = decodeServerFrame(data)
    if (frame === undefined) return
    if (frame instanceof ValidationError) return this.emitError(frame)
    if (frame.type !== ReservedTypes.batch) return this.receiveFrame(frame)
    // Several published frames in one: each is handled as if it had come alone, in order.
    for (const inner of batchedFrames(frame.payload)) {
      if (inner instanceof ValidationError) this.emitError(inner)
      else this.receiveFrame(inner)
    }
  }

  private receiveFrame(frame: ServerFrame): void {
    if (this.inbound !== undefined) return this.holdInbound(this.inbound.then(() => this.deliver(frame)))
    const delivering = this.deliver(frame)
    if (delivering !== undefined) this.holdInbound(delivering)
  }

  /** Frames that arrive while an asynchronous validator decodes an earlier one are delivered after it. */
  private holdInbound(delivering: Promise<void>): void {
    const held = delivering.then(undefined, (error: unknown) => this.emitError(error))
    this.inbound = held
    void held.then(() => {
      if (this.inbound === held) this.inbound = undefined
    })
  }

  /** Hands a frame to its request or its handlers; a Promise while a validator is still deciding. */
  private deliver({ type, meta, payload }: ServerFrame): Promise<void> | undefined {
    if (this.session !== undefined) {
      if (type === ReservedTypes.session) return void this.session.started(payload)
      if (type === ReservedTypes.resumed) return void this.resumed(payload)
      // A published frame already handed over (its seq is at or below the watermark) is dropped.
      if (typeof meta["seq"] === "number" && typeof meta["topic"] === "string" && !this.session.accept(meta["seq"])) {
        return undefined
      }
    }
    if (type === ReservedTypes.presence || type === ReservedTypes.presenceDiff) return void this.presenceFrame(type, payload)
    const correlationId = typeof meta["correlationId"] === "string" ? meta["correlationId"] : undefined
    const report = (error: unknown) => this.emitError(error)
    if (isProgressType(type)) return this.pending.progress(correlationId, payload, report)
    const isError = isErrorType(type)
    const entry = correlationId === undefined ? undefined : this.pending.get(correlationId)
    if (entry !== undefined && correlationId !== undefined && (isError || type === entry.response.type)) {
      this.pending.take(correlationId)
      if (isError) {
        entry.reject(toServerError(payload, correlationId))
        return undefined
      }
      const answer = (decoded: PayloadResult): void => decoded.ok ? entry.resolve(decoded.value) : entry.reject(decoded.error)
      const decoded = decodePayload(entry.response, payload)
      if (isPendingResult(decoded)) return decoded.then(answer, entry.reject)
      answer(decoded)
      return undefined
    }
    if (isError) {
      this.emitError(toServerError(payload, correlationId))
      return undefined
    }
    return this.handlers.dispatch(payload, { type, meta }, report)
  }

  private emitError(error: unknown): void {
    if (this.errorListeners.size === 0) {
      console.error("durable-ws/client:", error)
      return
    }
    this.emit(this.errorListeners, error)
  }

  private emit<A>(listeners: ReadonlySet<(value: A) => void>, value: A): void {
    for (const listener of listeners) {
      try {
        listener(value)
      } catch (error) {
        if (listeners !== this.errorListeners) this.emitError(error)
        else console.error("durable-ws/client: onError listener threw", error)
      }
    }
  }
}

/**
 * Creates a client. It connects on `connect()`; until then (and whenever
 * it is offline) sends are queued.
 *
 * @example
 * const client = createClient({ url: "wss://example.com/ws?room=lobby" })
 * client.on(Said, (payload) => console.log(payload.text))
 * await client.connect()
 * const user = await client.request(GetUser, { id: "7" }, { timeoutMs: 2000 })
 *
 * @since 0.1.0
 * @category constructors
 */
export const createClient = (options: ClientOptions): Client => new Client(options)
