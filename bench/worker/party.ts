import type { Connection, ConnectionContext, WSMessage } from "partyserver"
import { Server } from "partyserver"
import type { InboundFrame } from "./protocol"
import { echoReply, newsFrame, subscribedFrame } from "./protocol"

/**
 * The peer: partyserver with hibernation on. Messages are parsed by hand
 * (partyserver has no schemas), subscribers are tagged with their topic, and
 * a publish is `broadcast`, partyserver's own fan-out.
 */
export class Party extends Server<Cloudflare.Env> {
  static override options = { hibernate: true }

  override getConnectionTags(_connection: Connection, ctx: ConnectionContext): Array<string> {
    const topic = new URL(ctx.request.url).searchParams.get("topic")
    return topic === null ? [] : [topic]
  }

  override onMessage(connection: Connection, message: WSMessage): void {
    const frame = JSON.parse(message as string) as InboundFrame
    switch (frame.type) {
      case "ECHO":
        connection.send(echoReply(frame.payload))
        return
      case "SUBSCRIBE":
        connection.send(subscribedFrame)
        return
      case "PUBLISH":
        this.broadcast(newsFrame(frame.payload), [connection.id])
        return
    }
  }
}
