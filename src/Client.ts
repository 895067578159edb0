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
 * Only the schema and codec modules are imported, never the Durable Object
 * runtime, so the client bundles for any JavaScript environment with a
 * `WebSocket`.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { CloseCodes, isTerminalCloseCode } from "./CloseCodes"
import { ErrorCode, ValidationError } from "./Errors"
import type { MessageSchema, Payload, PayloadArgs, PayloadResult, RpcSchema } from "./Message"
import { decodePayload, encodeFrame, encodePayload, heartbeat, isPendingResult, progressType } from "./Message"
import { ClientSession } from "./internal/clientSession"
import type { SessionStore } from "./internal/clientSession"
import { Heartbeat } from "./internal/heartbeat"
import type { HeartbeatSettings } from "./internal/heartbeat"
import { PendingRequests } from "./internal/requests"
import type {
  ClientOptions,
  PerAttempt,
  CloseDetails,
  CloseInfo,
  ClientState,
  InboundFrame,
  ReconnectOptions,
  RequestOptions,
  ResumeInfo,
  SendOptions,
  WebSocketFactory,
  WebSocketLike
} from "./internal/clientModel"
import { ConnectionClosedError, ServerError, TimeoutError } from "./internal/clientModel"

export * from "./internal/clientModel"
export type { SessionStore } from "./internal/clientSession"
export { CloseCodes, isTerminalCloseCode } from "./CloseCodes"


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

const OPEN = 1

/** Consecutive 401/403 refusals, each with fresh credentials, after which the client stops. */
const maxRefusals = 3

const isRefusal = (status: number | undefined): boolean => status === 401 || status === 403

/** The least wait after a resume refused with 429 (the server's default rate: one resume per 2 s). */
const resumeRefusedDelayMs = 2000

interface Credentials {
  readonly url: string
  readonly protocols: ReadonlyArray<string> | undefined
  /** Equal keys: the same credentials. */
  readonly key: string
}

const resolve = <A>(value: PerAttempt<A>): A | PromiseLike<A> =>
  typeof value === "function" ? (value as () => A | PromiseLike<A>)() : value

const isPromiseLike = <A>(u: A | PromiseLike<A>): u is PromiseLike<A> =>
  typeof u === "object" && u !== null && typeof (u as PromiseLike<A>).then === "function"

const settled: Promise<void> = Promise.resolve()

interface Queued {
  readonly frame: string
  readonly correlationId: string | undefined
}

interface Subscription {
  readonly message: MessageSchema
  readonly handler: (payload: unknown, frame: InboundFrame) => void
}

const defaultFactory: WebSocketFactory = (url, protocols) => {
  if (typeof WebSocket !== "function") {
    throw new TypeError("durable-ws/client: no global WebSocket here; pass the `webSocket` option")
  }
  return new WebSocket(url, protocols === undefined ? undefined : [...protocols]) as unknown as WebSocketLike
}

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

/**
 * A connection to a durable-ws server. Create it with {@link createClient}.
 *
 * @since 0.1.0
 * @category models
 */
export class Client {
  private socket: WebSocketLike | undefined = undefined
  private current: ClientState = "idle"
  private attempt = 0
  private openedAt: number | undefined = undefined
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined = undefined
  private heartbeat: Heartbeat | undefined = undefined
  private queue: Array<Queued> = []
  private readonly pending = new PendingRequests()
  private readonly subscriptions = new Map<string, Set<Subscription>>()
  private readonly openListeners = new Set<() => void>()
  private readonly closeListeners = new Set<(info: CloseInfo) => void>()
  private readonly errorListeners = new Set<(error: unknown) => void>()
  private readonly stateListeners = new Set<(state: ClientState) => void>()
  private readonly resumeListeners = new Set<(info: ResumeInfo) => void>()
  private readonly session: ClientSession | undefined
  private openWaiters: Array<{ resolve: () => void; reject: (error: ConnectionClosedError) => void }> = []
  /** The credentials of the socket being opened or open. */
  private credentials: Credentials | undefined = undefined
  /** The last upgrade refused with 401/403, and how many in a row were. */
  private refused: { readonly key: string; readonly count: number } | undefined = undefined
  /** Bumped by every attempt and by `close()`: an attempt still resolving its credentials checks it. */
  private generation = 0
  // Set while an asynchronous validator is busy with an outbound (or inbound) payload: what
  // comes after it waits, so frames leave, and handlers run, in order.
  private outbound: Promise<void> | undefined = undefined
  private inbound: Promise<void> | undefined = undefined

  constructor(private readonly options: ClientOptions) {
    const url = options.url
    this.session = options.recovery === true
      ? new ClientSession(options.store, options.storeKey ?? (typeof url === "function" ? "durable-ws:session" : `durable-ws:${String(url)}`))
      : undefined
  }

  /** The connection state. */
  get state(): ClientState {
    return this.current
  }

  /** Frames waiting for the connection. */
  get queued(): number {
    return this.queue.length
  }

  /**
   * Starts connecting (once) and resolves when the connection is open.
   * Rejects with {@link ConnectionClosedError} if the client is closed or
   * gives up first.
   */
  connect(): Promise<void> {
    if (this.current === "open") return Promise.resolve()
    if (this.current === "closed") {
      return Promise.reject(new ConnectionClosedError({ message: "The client is closed" }))
    }
    const opened = new Promise<void>((resolve, reject) => this.openWaiters.push({ resolve, reject }))
    if (this.current === "idle") this.openSocket()
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
  send<M extends MessageSchema>(message: M, ...[payload, options]: PayloadArgs<M, SendOptions>): boolean {
    return this.submit(this.encode(message, payload, options?.meta), undefined, (error) => this.emitError(error))
  }

  /**
   * Sends an RPC request and resolves with the decoded reply payload.
   * Rejects with {@link ServerError} (`RPC_ERROR`), {@link TimeoutError},
   * {@link ConnectionClosedError} (the connection dropped after the request
   * went out, or it could not be queued) or `ValidationError` (an invalid
   * request or reply payload).
   */
  request<M extends RpcSchema>(
    rpc: M,
    ...[payload, options]: PayloadArgs<M, RequestOptions<M>>
  ): Promise<Payload<M["response"]>> {
    if (this.current === "closed") {
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
    return new Promise<Payload<M["response"]>>((resolve, reject) => {
      const giveUp = (error: unknown) => {
        if (this.pending.take(correlationId) === undefined) return
        // A request that never left must not go out after its caller gave up.
        this.queue = this.queue.filter((queued) => queued.correlationId !== correlationId)
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
  on<M extends MessageSchema>(message: M, handler: (payload: Payload<M>, frame: InboundFrame) => void): () => void {
    let subscriptions = this.subscriptions.get(message.type)
    if (subscriptions === undefined) this.subscriptions.set(message.type, subscriptions = new Set())
    const subscription: Subscription = { message, handler: handler as Subscription["handler"] }
    subscriptions.add(subscription)
    return () => void subscriptions.delete(subscription)
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
    if (this.current === "closed") return
    this.generation++
    const socket = this.socket
    this.socket = undefined
    // A close with 1000 tells the server the session is over; the stored one goes with it.
    if (code === CloseCodes.Normal) this.session?.clear()
    this.shutdown(new ConnectionClosedError({ code, reason, message: "The client was closed" }))
    if (socket !== undefined) {
      try {
        socket.close(code, reason)
      } catch {
        // the socket is already closing
      }
      this.emit(this.closeListeners, { code, reason, willReconnect: false })
    }
  }

  // -- Connection ------------------------------------------------------------

  private setState(state: ClientState): void {
    if (this.current === state) return
    this.current = state
    this.emit(this.stateListeners, state)
  }

  /** Whether a new attempt can bring new credentials (a refusal is then worth retrying). */
  private get refreshable(): boolean {
    return typeof this.options.url === "function" || typeof this.options.protocols === "function"
  }

  /** The URL and protocols of the next attempt, computed now. */
  private resolveCredentials(): Credentials | PromiseLike<Credentials> {
    const make = (url: string | URL, protocols: ReadonlyArray<string> | undefined): Credentials => {
      const text = String(url)
      return { url: text, protocols, key: JSON.stringify([text, protocols ?? null]) }
    }
    const url = resolve(this.options.url)
    const protocols = resolve(this.options.protocols)
    if (!isPromiseLike(url) && !isPromiseLike(protocols)) return make(url, protocols)
    return Promise.all([url, protocols]).then(([u, p]) => make(u, p))
  }

  private openSocket(): void {
    this.reconnectTimer = undefined
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting")
    const generation = ++this.generation
    let credentials: Credentials | PromiseLike<Credentials>
    try {
      credentials = this.resolveCredentials()
    } catch (error) {
      return this.credentialsFailed(error)
    }
    if (!isPromiseLike(credentials)) return this.openWith(credentials)
    credentials.then(
      (resolved) => {
        if (this.generation === generation) this.openWith(resolved)
      },
      (error: unknown) => {
        if (this.generation === generation) this.credentialsFailed(error)
      }
    )
  }

  private credentialsFailed(error: unknown): void {
    this.emitError(error)
    this.dropped(1006, "Could not compute the URL or protocols", undefined)
  }

  private openWith(credentials: Credentials): void {
    // A refusal is retried only with credentials that differ from the refused ones.
    if (this.refused !== undefined && this.refused.key === credentials.key) {
      return this.giveUp(1006, "The upgrade was refused and the credentials did not change", undefined)
    }
    this.credentials = credentials
    let socket: WebSocketLike
    try {
      const url = this.session === undefined ? credentials.url : this.session.urlFor(credentials.url)
      socket = (this.options.webSocket ?? defaultFactory)(url, credentials.protocols)
    } catch (error) {
      this.emitError(error)
      this.dropped(1006, "Could not open the socket", undefined)
      return
    }
    this.socket = socket
    if ("binaryType" in socket) socket.binaryType = "arraybuffer"
    socket.addEventListener("open", () => {
      if (this.socket === socket) this.opened(socket)
    })
    socket.addEventListener("message", (event) => {
      if (this.socket === socket) this.receive(event.data)
    })
    socket.addEventListener("close", (event) => {
      if (this.socket === socket) this.dropped(event.code ?? 1006, event.reason ?? "", event.status)
    })
    // An error is always followed by a close, which is where recovery happens.
    socket.addEventListener("error", () => {})
  }

  private opened(socket: WebSocketLike): void {
    this.openedAt = Date.now()
    this.refused = undefined
    this.setState("open")
    this.emit(this.openListeners, undefined)
    if (this.current !== "open") return
    const queued = this.queue
    this.queue = []
    for (let i = 0; i < queued.length; i++) {
      if (!this.transmit(queued[i]!)) {
        this.queue = queued.slice(i).concat(this.queue)
        break
      }
    }
    const settings = this.heartbeatSettings()
    if (settings !== undefined) {
      this.heartbeat = new Heartbeat(settings, () => this.probe(socket), () => this.declareDead(socket))
      this.heartbeat.start()
    }
    const waiters = this.openWaiters
    this.openWaiters = []
    for (const waiter of waiters) waiter.resolve()
  }

  /** The socket closed (or was declared dead): fail what was in flight, then maybe reconnect. */
  private dropped(code: number, reason: string, status: number | undefined): void {
    const reconnect = this.options.reconnect
    const stableAfterMs = (reconnect === false ? undefined : reconnect?.stableAfterMs) ?? 5000
    if (this.openedAt !== undefined && Date.now() - this.openedAt >= stableAfterMs) this.attempt = 0
    this.openedAt = undefined
    this.socket = undefined
    this.stopHeartbeat()
    // With a session to resume, the requests that went out wait for the resume, which sends them again.
    if (this.session?.resumable !== true) this.failSent(code, reason)
    // Another socket took the session over (a copy of this page): it is theirs now. Any other
    // terminal close ended the session on the server: it is forgotten here too.
    if (status === undefined && isTerminalCloseCode(code)) this.session?.clear()
    const refusal = isRefusal(status)
    if (refusal) {
      const count = (this.refused?.count ?? 0) + 1
      this.refused = { key: this.credentials?.key ?? "", count }
      if (count >= maxRefusals) return this.giveUp(code, reason, status)
    }
    const terminal = refusal ? !this.refreshable : isTerminalCloseCode(code)
    const details: CloseDetails = status === undefined ? { code, reason, terminal } : { code, reason, status, terminal }
    if (!(this.options.shouldReconnect?.(details) ?? !terminal)) return this.giveUp(code, reason, status)
    this.scheduleReconnect(details)
  }

  private failSent(code: number | undefined, reason: string | undefined): void {
    this.pending.failSent((request) =>
      new ConnectionClosedError({ code, reason, message: `The connection closed before "${request.type}" was answered` })
    )
  }

  /** The server answered a resume: hand over the outcome, then resend or fail the requests in flight. */
  private resumed(payload: unknown): void {
    const fields = isRecord(payload) ? payload : {}
    const recovered = fields["recovered"] === true
    const info: ResumeInfo = {
      recovered,
      replayed: typeof fields["replayed"] === "number" ? fields["replayed"] : 0,
      gaps: Array.isArray(fields["gaps"]) ? fields["gaps"].filter((t): t is string => typeof t === "string") : [],
      truncated: fields["truncated"] === true
    }
    if (recovered) {
      for (const request of this.pending.sentFrames()) this.transmit({ frame: request.frame, correlationId: request.correlationId })
    } else {
      this.failSent(undefined, "The session could not be resumed")
    }
    this.emit(this.resumeListeners, info)
  }

  private scheduleReconnect(close: CloseDetails): void {
    const { code, reason, status } = close
    const reconnect = this.options.reconnect
    const maxAttempts = reconnect === false ? 0 : reconnect?.maxAttempts ?? Number.POSITIVE_INFINITY
    if (reconnect === false || this.attempt >= maxAttempts) return this.giveUp(code, reason, status)
    const planned = reconnect?.nextDelay === undefined
      ? backoffDelay(this.attempt, reconnect, this.options.random)
      : reconnect.nextDelay(this.attempt, close)
    if (planned === undefined) return this.giveUp(code, reason, status)
    // 429: the session resumed too often; its token still holds, so wait out the server's rate.
    const delay = status === 429 ? Math.max(planned, resumeRefusedDelayMs) : planned
    this.attempt++
    this.setState("reconnecting")
    this.reconnectTimer = setTimeout(() => this.openSocket(), delay)
    this.emit(this.closeListeners, this.closeInfo(code, reason, status, true, delay))
  }

  private closeInfo(code: number, reason: string, status: number | undefined, willReconnect: boolean, retryInMs?: number): CloseInfo {
    const info: CloseInfo = status === undefined ? { code, reason, willReconnect } : { code, reason, status, willReconnect }
    return retryInMs === undefined ? info : { ...info, retryInMs }
  }

  /** No further attempt: tell the close listeners, then fail what waits. */
  private giveUp(code: number, reason: string, status: number | undefined): void {
    this.emit(this.closeListeners, this.closeInfo(code, reason, status, false))
    if (this.current !== "closed") {
      this.shutdown(new ConnectionClosedError({ code, reason, message: "The connection closed and will not reconnect" }))
    }
  }

  private shutdown(error: ConnectionClosedError): void {
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer)
    this.reconnectTimer = undefined
    this.stopHeartbeat()
    this.queue = []
    this.setState("closed")
    this.pending.failAll(error)
    const waiters = this.openWaiters
    this.openWaiters = []
    for (const waiter of waiters) waiter.reject(error)
  }

  // -- Heartbeat -------------------------------------------------------------

  private heartbeatSettings(): HeartbeatSettings | undefined {
    const settings = this.options.heartbeat
    if (settings === false) return undefined
    return { intervalMs: settings?.intervalMs ?? 25_000, timeoutMs: settings?.timeoutMs ?? 10_000 }
  }

  private stopHeartbeat(): void {
    this.heartbeat?.stop()
    this.heartbeat = undefined
  }

  private probe(socket: WebSocketLike): void {
    try {
      socket.send(heartbeat.request)
    } catch {
      // a failing send means the close event is on its way
    }
  }

  /** A half-open connection may never deliver a close event: drop it ourselves. */
  private declareDead(socket: WebSocketLike): void {
    if (this.socket !== socket) return
    this.socket = undefined
    try {
      socket.close(4000, "Heartbeat timeout")
    } catch {
      // already closing
    }
    this.dropped(1006, "Heartbeat timeout", undefined)
  }

  // -- Frames ----------------------------------------------------------------

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
      message: this.current === "closed" ? "The client is closed" : "Not connected and the send queue is full"
    })
  }

  /**
   * Writes a frame in order: while an earlier frame waits for its validator,
   * this one waits behind it. False when it was dropped at once; a frame
   * that waited and was then invalid or dropped is handed to `failed`.
   */
  private submit(frame: string | Promise<string>, correlationId: string | undefined, failed: (error: unknown) => void): boolean {
    if (typeof frame === "string" && this.outbound === undefined) return this.write({ frame, correlationId })
    if (this.current === "closed") return false
    // Marked handled at once: a rejection reaches `failed`, never the unhandled-rejection hook.
    if (typeof frame !== "string") frame.catch(() => {})
    const written = (this.outbound ?? settled).then(() => frame).then((text) => {
      // Closing drops what is queued, this too; a request that timed out meanwhile is not sent after all.
      if (this.current === "closed") return
      if (correlationId !== undefined) {
        const request = this.pending.get(correlationId)
        if (request === undefined) return
        if (this.session !== undefined) request.frame = text
      }
      if (!this.write({ frame: text, correlationId })) failed(this.notQueued())
    }, failed)
    this.outbound = written
    void written.then(() => {
      if (this.outbound === written) this.outbound = undefined
    })
    return true
  }

  private write(queued: Queued): boolean {
    if (this.current === "closed") return false
    if (this.current === "open" && this.transmit(queued)) return true
    const limit = this.options.maxQueueSize ?? 1000
    if (this.queue.length >= limit) return false
    this.queue.push(queued)
    return true
  }

  private transmit(queued: Queued): boolean {
    const socket = this.socket
    if (socket === undefined || socket.readyState !== OPEN) return false
    try {
      socket.send(queued.frame)
    } catch {
      return false
    }
    if (queued.correlationId !== undefined) {
      const entry = this.pending.get(queued.correlationId)
      if (entry !== undefined) entry.sent = true
    }
    return true
  }

  private receive(data: unknown): void {
    this.heartbeat?.seen()
    let text: string
    if (typeof data === "string") text = data
    else if (data instanceof ArrayBuffer) text = new TextDecoder().decode(data)
    else return this.emitError(new ValidationError({ message: "Server frame is neither text nor an ArrayBuffer" }))
    if (text === heartbeat.response) return
    let frame: unknown
    try {
      frame = JSON.parse(text)
    } catch {
      return this.emitError(new ValidationError({ message: "Server frame is not valid JSON" }))
    }
    if (!isRecord(frame) || typeof frame["type"] !== "string") {
      return this.emitError(new ValidationError({ message: "Server frame has no string type" }))
    }
    const parsed = frame
    if (this.inbound !== undefined) return this.holdInbound(this.inbound.then(() => this.deliver(parsed)))
    const delivering = this.deliver(parsed)
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

  /** Hands a parsed frame to its request or its handlers; a Promise while a validator is still deciding. */
  private deliver(frame: Record<string, unknown>): Promise<void> | undefined {
    const type = frame["type"] as string
    const meta = isRecord(frame["meta"]) ? frame["meta"] : {}
    if (this.session !== undefined) {
      if (type === "$session") return void this.session.started(frame["payload"])
      if (type === "$resumed") return void this.resumed(frame["payload"])
      // A published frame already handed over (its seq is at or below the watermark) is dropped.
      if (typeof meta["seq"] === "number" && typeof meta["topic"] === "string" && !this.session.accept(meta["seq"])) {
        return undefined
      }
    }
    const correlationId = typeof meta["correlationId"] === "string" ? meta["correlationId"] : undefined
    const payload = frame["payload"]
    if (type === progressType) return this.progressed(correlationId, payload)
    const isError = type === "ERROR" || type === "RPC_ERROR"
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
    const subscriptions = this.subscriptions.get(type)
    if (subscriptions === undefined) return undefined
    return this.handle(Array.from(subscriptions), 0, payload, { type, meta })
  }

  /** Runs the handlers from `index` on, one after another, each with the payload its schema decoded. */
  private handle(
    subscriptions: ReadonlyArray<Subscription>,
    index: number,
    payload: unknown,
    inbound: InboundFrame
  ): Promise<void> | undefined {
    for (let i = index; i < subscriptions.length; i++) {
      const subscription = subscriptions[i]!
      const decoded = decodePayload(subscription.message, payload)
      if (isPendingResult(decoded)) {
        return decoded.then(
          (settled) => {
            this.call(subscription, settled, inbound)
            return this.handle(subscriptions, i + 1, payload, inbound)
          },
          (error: unknown) => {
            this.emitError(error)
            return this.handle(subscriptions, i + 1, payload, inbound)
          }
        )
      }
      this.call(subscription, decoded, inbound)
    }
    return undefined
  }

  private call(subscription: Subscription, decoded: PayloadResult, inbound: InboundFrame): void {
    if (!decoded.ok) return this.emitError(decoded.error)
    try {
      subscription.handler(decoded.value, inbound)
    } catch (error) {
      this.emitError(error)
    }
  }

  /** Progress for a request still waiting; progress for any other correlationId is not ours and is dropped. */
  private progressed(correlationId: string | undefined, payload: unknown): Promise<void> | undefined {
    const entry = correlationId === undefined ? undefined : this.pending.get(correlationId)
    const onProgress = entry?.onProgress
    if (entry?.progress === undefined || onProgress === undefined) return undefined
    const hand = (decoded: PayloadResult): void => {
      if (!decoded.ok) return this.emitError(decoded.error)
      // A request answered or given up while an asynchronous validator decided hears nothing more.
      if (this.pending.get(correlationId!) !== entry) return
      try {
        onProgress(decoded.value)
      } catch (error) {
        this.emitError(error)
      }
    }
    const decoded = decodePayload(entry.progress, payload)
    if (isPendingResult(decoded)) return decoded.then(hand)
    hand(decoded)
    return undefined
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
