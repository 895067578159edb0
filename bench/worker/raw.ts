import { DurableObject } from "cloudflare:workers"
import type { InboundFrame } from "./protocol"
import { echoReply, newsFrame, rpcReply, subscribedFrame } from "./protocol"

/**
 * The floor: the Hibernation API by hand. Subscribers are tagged with their
 * topic when accepted, and a publish is a loop over `getWebSockets(topic)`.
 * No validation, no routing table, no per-connection state.
 */
export class Raw extends DurableObject<Cloudflare.Env> {
  override fetch(request: Request): Response {
    const topic = new URL(request.url).searchParams.get("topic")
    const { 0: client, 1: server } = new WebSocketPair()
    this.ctx.acceptWebSocket(server, topic === null ? [] : [topic])
    this.accepted(server, topic)
    return new Response(null, { status: 101, webSocket: client })
  }

  /** A socket was accepted; `RawAttached` stores its attachment. */
  protected accepted(_socket: WebSocket, _topic: string | null): void {}

  /** The subscribers of a topic: the sockets tagged with it. */
  protected subscribersOf(topic: string | undefined): Iterable<WebSocket> {
    return this.ctx.getWebSockets(topic)
  }

  /** The rpc echo's reply; `RawRecorded` stores it first. */
  protected answer(_frame: InboundFrame, reply: string): string {
    return reply
  }

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    const frame = JSON.parse(message as string) as InboundFrame
    switch (frame.type) {
      case "ECHO":
        ws.send(echoReply(frame.payload))
        return
      case "ECHO_RPC":
        ws.send(this.answer(frame, rpcReply(frame)))
        return
      case "SUBSCRIBE":
        ws.send(subscribedFrame)
        return
      case "PUBLISH": {
        const out = newsFrame(frame.payload)
        for (const socket of this.subscribersOf(frame.payload?.topic)) socket.send(out)
        return
      }
    }
  }

  override webSocketClose(ws: WebSocket, code: number, reason: string): void {
    ws.close(code, reason)
  }
}

/**
 * The platform's floor for a durable record per request: the raw object
 * writes one SQLite row (the request's id and its reply) before replying.
 * The Durable Object holds the reply until the write is stored, as it holds
 * durable-ws's with `recovery`.
 */
export class RawRecorded extends Raw {
  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env)
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS answered (id TEXT PRIMARY KEY, reply TEXT NOT NULL) WITHOUT ROWID")
  }

  protected override answer(frame: InboundFrame, reply: string): string {
    this.ctx.storage.sql.exec("INSERT OR REPLACE INTO answered (id, reply) VALUES (?, ?)", frame.meta?.correlationId ?? "", reply)
    return reply
  }
}

/**
 * The platform's floor for the first publish after a wake, when topics
 * change after the upgrade and so cannot be WebSocket tags: each socket
 * keeps its topics in its attachment (the shape durable-ws stores), and the
 * first publish after a wake reads every socket's attachment and indexes the
 * topics before it sends. Nothing else: no routing, no validation.
 */
export class RawAttached extends Raw {
  #index: Map<string, Array<WebSocket>> | undefined = undefined

  protected override accepted(socket: WebSocket, topic: string | null): void {
    const topics = topic === null ? [] : [topic]
    socket.serializeAttachment({ d: { clientId: crypto.randomUUID(), connectedAt: Date.now() }, t: topics })
    if (this.#index !== undefined) this.#indexSocket(socket, topics)
  }

  protected override subscribersOf(topic: string | undefined): Iterable<WebSocket> {
    if (this.#index === undefined) {
      this.#index = new Map()
      for (const socket of this.ctx.getWebSockets()) {
        const attachment = socket.deserializeAttachment() as { readonly t?: ReadonlyArray<string> } | null
        this.#indexSocket(socket, attachment?.t ?? [])
      }
    }
    return topic === undefined ? [] : this.#index.get(topic) ?? []
  }

  #indexSocket(socket: WebSocket, topics: ReadonlyArray<string>): void {
    for (const topic of topics) {
      const sockets = this.#index!.get(topic)
      if (sockets === undefined) this.#index!.set(topic, [socket])
      else sockets.push(socket)
    }
  }
}
