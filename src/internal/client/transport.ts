/**
 * The client's reconnecting transport: it opens sockets, computes the
 * credentials of every attempt, waits between attempts, decides after a
 * close whether to come back, notices dead connections with the heartbeat
 * and keeps frames sent while offline in a bounded queue.
 *
 * It knows nothing of messages, requests or sessions: frames are opaque
 * text, and the protocol layer (the `Client` in Client.ts) hears what
 * happens through {@link TransportEvents}.
 */
import { isTerminalCloseCode } from "../../CloseCodes"
import type { ClientOptions, ClientState, CloseDetails, CloseInfo, PerAttempt, WebSocketFactory, WebSocketLike } from "../../Client"
import { heartbeat } from "../../Protocol"
import { Heartbeat } from "./heartbeat"

/** Why the transport stopped for good. */
export interface Ended {
  readonly code: number
  readonly reason: string
  readonly message: string
}

/** What the layer above hears. */
export interface TransportEvents {
  /** The wait before reconnect attempt `attempt` (from 0), or `undefined` to give up. */
  readonly nextDelay: (attempt: number, close: CloseDetails) => number | undefined
  /** The URL to dial for this attempt (the session adds its resume to it). */
  readonly urlFor: (url: string) => string
  /** A socket opened, before the queue is flushed. */
  readonly opened: () => void
  readonly received: (data: unknown) => void
  /** The frame of this request went out. */
  readonly sent: (correlationId: string) => void
  /** The socket is gone (closed or declared dead), before the transport decides whether to come back. */
  readonly dropped: (code: number, reason: string) => void
  readonly closed: (info: CloseInfo) => void
  readonly stateChanged: (state: ClientState) => void
  readonly error: (error: unknown) => void
  /** No further attempt: what waits must fail. */
  readonly ended: (ended: Ended) => void
}

/** A frame waiting for the connection, with the request it carries, if any. */
interface Outbound {
  readonly frame: string
  readonly correlationId: string | undefined
}

interface Credentials {
  readonly url: string
  readonly protocols: ReadonlyArray<string> | undefined
  /** Equal keys: the same credentials. */
  readonly key: string
}

const OPEN = 1

/** Consecutive 401/403 refusals, each with fresh credentials, after which the client stops. */
const maxRefusals = 3

const isRefusal = (status: number | undefined): boolean => status === 401 || status === 403

const resolve = <A>(value: PerAttempt<A>): A | PromiseLike<A> =>
  typeof value === "function" ? (value as () => A | PromiseLike<A>)() : value

const isPromiseLike = <A>(u: A | PromiseLike<A>): u is PromiseLike<A> =>
  typeof u === "object" && u !== null && typeof (u as PromiseLike<A>).then === "function"

const defaultFactory: WebSocketFactory = (url, protocols) => {
  if (typeof WebSocket !== "function") {
    throw new TypeError("durable-ws/client: no global WebSocket here; pass the `webSocket` option")
  }
  return new WebSocket(url, protocols === undefined ? undefined : [...protocols]) as unknown as WebSocketLike
}

const closeInfo = (
  code: number,
  reason: string,
  status: number | undefined,
  willReconnect: boolean,
  retryInMs?: number
): CloseInfo => {
  const info: CloseInfo = status === undefined ? { code, reason, willReconnect } : { code, reason, status, willReconnect }
  return retryInMs === undefined ? info : { ...info, retryInMs }
}

export class Transport {
  private socket: WebSocketLike | undefined = undefined
  private current: ClientState = "idle"
  private attempt = 0
  private openedAt: number | undefined = undefined
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined = undefined
  private heartbeat: Heartbeat | undefined = undefined
  private queue: Array<Outbound> = []
  /** The credentials of the socket being opened or open. */
  private credentials: Credentials | undefined = undefined
  /** The last upgrade refused with 401/403, and how many in a row were. */
  private refused: { readonly key: string; readonly count: number } | undefined = undefined
  /** Bumped by every attempt and by `close()`: an attempt still resolving its credentials checks it. */
  private generation = 0

  constructor(private readonly options: ClientOptions, private readonly events: TransportEvents) {}

  get state(): ClientState {
    return this.current
  }

  get queued(): number {
    return this.queue.length
  }

  /** Starts the first attempt (only from `idle`). */
  start(): void {
    if (this.current === "idle") this.openSocket()
  }

  /** Sends now when open, else queues. False when the frame was dropped: closed, or the queue is full. */
  write(frame: string, correlationId: string | undefined): boolean {
    if (this.current === "closed") return false
    const outbound = { frame, correlationId }
    if (this.current === "open" && this.transmit(outbound)) return true
    if (this.queue.length >= (this.options.maxQueueSize ?? 1000)) return false
    this.queue.push(outbound)
    return true
  }

  /** Sends on the open socket, bypassing the queue; false when there is none. */
  transmit(outbound: Outbound): boolean {
    const socket = this.socket
    if (socket === undefined || socket.readyState !== OPEN) return false
    try {
      socket.send(outbound.frame)
    } catch {
      return false
    }
    if (outbound.correlationId !== undefined) this.events.sent(outbound.correlationId)
    return true
  }

  /** Takes a request's frame out of the queue: its caller gave up. */
  unqueue(correlationId: string): void {
    this.queue = this.queue.filter((queued) => queued.correlationId !== correlationId)
  }

  /** Closes for good: no reconnect, the queue is dropped. */
  close(code: number, reason: string, message: string): void {
    if (this.current === "closed") return
    this.generation++
    const socket = this.socket
    this.socket = undefined
    this.shutdown({ code, reason, message })
    if (socket !== undefined) {
      try {
        socket.close(code, reason)
      } catch {
        // the socket is already closing
      }
      this.events.closed({ code, reason, willReconnect: false })
    }
  }

  // -- Attempts --------------------------------------------------------------

  private setState(state: ClientState): void {
    if (this.current === state) return
    this.current = state
    this.events.stateChanged(state)
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
    this.events.error(error)
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
      socket = (this.options.webSocket ?? defaultFactory)(this.events.urlFor(credentials.url), credentials.protocols)
    } catch (error) {
      this.events.error(error)
      this.dropped(1006, "Could not open the socket", undefined)
      return
    }
    this.socket = socket
    if ("binaryType" in socket) socket.binaryType = "arraybuffer"
    socket.addEventListener("open", () => {
      if (this.socket === socket) this.opened(socket)
    })
    socket.addEventListener("message", (event) => {
      if (this.socket !== socket) return
      this.heartbeat?.seen()
      this.events.received(event.data)
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
    this.events.opened()
    if (this.current !== "open") return
    const queued = this.queue
    this.queue = []
    for (let i = 0; i < queued.length; i++) {
      if (!this.transmit(queued[i]!)) {
        this.queue = queued.slice(i).concat(this.queue)
        break
      }
    }
    const settings = this.options.heartbeat
    if (settings !== false) {
      const timing = { intervalMs: settings?.intervalMs ?? 25_000, timeoutMs: settings?.timeoutMs ?? 10_000 }
      this.heartbeat = new Heartbeat(timing, () => this.probe(socket), () => this.declareDead(socket))
      this.heartbeat.start()
    }
  }

  /** The socket closed (or was declared dead): maybe reconnect. */
  private dropped(code: number, reason: string, status: number | undefined): void {
    const reconnect = this.options.reconnect
    const stableAfterMs = (reconnect === false ? undefined : reconnect?.stableAfterMs) ?? 5000
    if (this.openedAt !== undefined && Date.now() - this.openedAt >= stableAfterMs) this.attempt = 0
    this.openedAt = undefined
    this.socket = undefined
    this.stopHeartbeat()
    this.events.dropped(code, reason)
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

  private scheduleReconnect(close: CloseDetails): void {
    const { code, reason, status } = close
    const reconnect = this.options.reconnect
    const maxAttempts = reconnect === false ? 0 : reconnect?.maxAttempts ?? Number.POSITIVE_INFINITY
    if (reconnect === false || this.attempt >= maxAttempts) return this.giveUp(code, reason, status)
    const delay = this.events.nextDelay(this.attempt, close)
    if (delay === undefined) return this.giveUp(code, reason, status)
    this.attempt++
    this.setState("reconnecting")
    this.reconnectTimer = setTimeout(() => this.openSocket(), delay)
    this.events.closed(closeInfo(code, reason, status, true, delay))
  }

  /** No further attempt: tell the close listeners, then fail what waits. */
  private giveUp(code: number, reason: string, status: number | undefined): void {
    this.events.closed(closeInfo(code, reason, status, false))
    if (this.current !== "closed") {
      this.shutdown({ code, reason, message: "The connection closed and will not reconnect" })
    }
  }

  private shutdown(ended: Ended): void {
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer)
    this.reconnectTimer = undefined
    this.stopHeartbeat()
    this.queue = []
    this.setState("closed")
    this.events.ended(ended)
  }

  // -- Heartbeat -------------------------------------------------------------

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
}
