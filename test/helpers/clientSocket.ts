import { env } from "cloudflare:test"
import type { Client, ClientOptions, CloseInfo, SocketEvent, WebSocketFactory, WebSocketLike } from "../../src/Client"
import { createClient } from "../../src/Client"

type Kind = "open" | "message" | "close" | "error"

/** A tiny event emitter shared by the sockets below. */
class Listeners {
  private readonly byKind = new Map<Kind, Set<(event: SocketEvent) => void>>()
  add(kind: Kind, listener: (event: SocketEvent) => void) {
    let set = this.byKind.get(kind)
    if (set === undefined) this.byKind.set(kind, set = new Set())
    set.add(listener)
  }
  emit(kind: Kind, event: SocketEvent) {
    for (const listener of this.byKind.get(kind) ?? []) listener(event)
  }
}

export interface WorkerdSockets {
  readonly factory: WebSocketFactory
  /** How many sockets the client asked for. */
  readonly opened: () => number
  /** The URL of every socket the client asked for. */
  readonly urls: Array<string>
  /** Every frame the client sent and received, over all its sockets. */
  readonly sent: Array<string>
  readonly received: Array<string>
  /** While true, new sockets fail their upgrade (the server looks down). */
  down: boolean
}

/**
 * A `WebSocketFactory` that opens real sockets to a Durable Object inside
 * workerd (the fixture `ClientRoom` unless told otherwise): the last path
 * segment of the client's URL names the object, the upgrade goes through
 * the namespace with the URL's query.
 */
export const workerdSockets = (namespace: DurableObjectNamespace = env.CLIENT_ROOM): WorkerdSockets => {
  let count = 0
  const sockets: WorkerdSockets = {
    down: false,
    opened: () => count,
    urls: [],
    sent: [],
    received: [],
    factory: (url) => {
      count++
      sockets.urls.push(url)
      const listeners = new Listeners()
      let ws: WebSocket | undefined
      let readyState = 0
      const socket: WebSocketLike = {
        get readyState() {
          return readyState
        },
        send: (data) => {
          if (ws === undefined) throw new Error("socket is not open")
          ws.send(data)
          sockets.sent.push(data)
        },
        close: (code, reason) => {
          readyState = 3
          ws?.close(code, reason)
        },
        addEventListener: (kind, listener) => listeners.add(kind, listener)
      }
      // Like Node's `ws` (and unlike a browser), this socket sees the status of a refused upgrade.
      const fail = (reason: string, status?: number) => {
        readyState = 3
        listeners.emit("error", {})
        listeners.emit("close", status === undefined ? { code: 1006, reason } : { code: 1006, reason, status })
      }
      if (sockets.down) {
        queueMicrotask(() => fail("server down"))
        return socket
      }
      const target = new URL(url)
      const name = target.pathname.split("/").pop() ?? ""
      const stub = namespace.get(namespace.idFromName(name))
      stub.fetch(`http://workerd.test/${name}${target.search}`, { headers: { Upgrade: "websocket" } }).then((res) => {
        if (res.status !== 101 || res.webSocket === null) return fail(`HTTP ${res.status}`, res.status)
        if (readyState === 3) return res.webSocket.close(1000, "closed before open")
        ws = res.webSocket
        ws.accept()
        readyState = 1
        ws.addEventListener("message", (event) => {
          if (typeof event.data === "string") sockets.received.push(event.data)
          listeners.emit("message", { data: event.data })
        })
        ws.addEventListener("close", (event) => {
          readyState = 3
          listeners.emit("close", { code: event.code, reason: event.reason })
        })
        listeners.emit("open", {})
      }, (error: unknown) => fail(String(error)))
      return socket
    }
  }
  return sockets
}

/** A socket whose server side the test plays by hand. */
export class ScriptedSocket implements WebSocketLike {
  readyState = 0
  readonly sent: Array<string> = []
  /** Answer heartbeats the way the runtime does. */
  answerHeartbeats = false
  private readonly listeners = new Listeners()
  addEventListener(kind: Kind, listener: (event: SocketEvent) => void) {
    this.listeners.add(kind, listener)
  }
  send(data: string) {
    if (this.readyState !== 1) throw new Error("socket is not open")
    this.sent.push(data)
    if (this.answerHeartbeats && data === "{\"type\":\"__heartbeat\"}") {
      queueMicrotask(() => this.deliver("{\"type\":\"__heartbeat_ack\"}"))
    }
  }
  close(code = 1000, reason = "") {
    if (this.readyState === 3) return
    this.readyState = 3
    this.listeners.emit("close", { code, reason })
  }
  /** Server side: accept the connection. */
  accept() {
    this.readyState = 1
    this.listeners.emit("open", {})
  }
  /** Server side: send a frame. */
  deliver(data: string | ArrayBuffer) {
    this.listeners.emit("message", { data })
  }
}

/** Waits until `check` holds, polling; fails after `timeoutMs`. */
export const eventually = async (check: () => boolean, what: string, timeoutMs = 2000) => {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

let fixtureRooms = 0

/**
 * A client of a fresh fixture room on real Durable Objects, with fast
 * reconnects and no heartbeat unless asked; its closes and errors are
 * recorded. `closeClients` (in `afterEach`) closes every client made here.
 */
export const fixtureClient = (
  options: Partial<ClientOptions> = {},
  namespace: DurableObjectNamespace = env.CLIENT_ROOM,
  reconnect: ClientOptions["reconnect"] = { initialDelayMs: 10, maxDelayMs: 50 }
) => {
  const sockets = workerdSockets(namespace)
  const client = createClient({
    url: `ws://client.test/room-${fixtureRooms++}`,
    webSocket: sockets.factory,
    reconnect,
    heartbeat: false,
    ...options
  })
  openClients.push(client)
  const closes: Array<CloseInfo> = []
  const errors: Array<unknown> = []
  client.onClose((info) => void closes.push(info))
  client.onError((error) => void errors.push(error))
  return { client, sockets, closes, errors }
}

const openClients: Array<Client> = []

/** Has `closeClients` close a client made by hand. */
export const trackClient = (client: Client): Client => {
  openClients.push(client)
  return client
}

export const closeClients = (): void => {
  for (const client of openClients.splice(0)) client.close()
}
