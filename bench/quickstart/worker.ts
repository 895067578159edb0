/**
 * The smallest useful durable-ws worker, as in the quick start: one room
 * class answering PING with PONG. `npm run bench` bundles it with wrangler
 * to report what the library costs a worker in size.
 */
import { DurableObject } from "cloudflare:workers"
import * as Schema from "effect/Schema"
import { createDurableObjectHandler, createRouter, message } from "../../src/index"

const Ping = message("PING", { text: Schema.String })
const Pong = message("PONG", { reply: Schema.String })

const router = createRouter()
router.on(Ping, (ctx) => ctx.send(Pong, { reply: `Got: ${ctx.payload.text}` }))

export class Room extends DurableObject {
  ws = createDurableObjectHandler(router, { state: this.ctx, env: this.env })
  override fetch(request: Request) {
    return this.ws.fetch(request)
  }
  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer) {
    return this.ws.webSocketMessage(ws, message)
  }
  override webSocketClose(ws: WebSocket, code: number, reason: string, wasClean: boolean) {
    return this.ws.webSocketClose(ws, code, reason, wasClean)
  }
  override webSocketError(ws: WebSocket, error: unknown) {
    return this.ws.webSocketError(ws, error)
  }
}

export default {
  fetch(request: Request, env: { readonly QUICKSTART_ROOM: DurableObjectNamespace }) {
    const room = new URL(request.url).searchParams.get("room") ?? "lobby"
    return env.QUICKSTART_ROOM.get(env.QUICKSTART_ROOM.idFromName(room)).fetch(request)
  }
}
