import { DurableObject } from "cloudflare:workers"
import type { InboundFrame } from "./protocol"
import { echoReply, newsFrame, subscribedFrame } from "./protocol"

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
    return new Response(null, { status: 101, webSocket: client })
  }

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    const frame = JSON.parse(message as string) as InboundFrame
    switch (frame.type) {
      case "ECHO":
        ws.send(echoReply(frame.payload))
        return
      case "SUBSCRIBE":
        ws.send(subscribedFrame)
        return
      case "PUBLISH": {
        const out = newsFrame(frame.payload)
        for (const socket of this.ctx.getWebSockets(frame.payload?.topic)) socket.send(out)
        return
      }
    }
  }

  override webSocketClose(ws: WebSocket, code: number, reason: string): void {
    ws.close(code, reason)
  }
}
