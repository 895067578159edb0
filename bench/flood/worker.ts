import * as Schema from "effect/Schema"
import { createRouter, message, rpc, WebSocketDurableObject } from "../../src/index"

const Spam = message("SPAM", { n: Schema.Number })
const Ping = rpc("PING", { at: Schema.Number }, "PONG", { at: Schema.Number })

const router = createRouter()
  .on(Spam, () => {})
  .rpc(Ping, (ctx) => ctx.reply({ at: ctx.payload.at }))

const Limited = WebSocketDurableObject(router, { rateLimit: { capacity: 20, refillPerSecond: 10 } })

/**
 * 20 frames at once, then 10 a second; a flood is cut off after the default
 * 10 s. `GET /stats` tells how many frames the object was handed and over
 * how long, by its own clock.
 */
export class Room extends Limited {
  #frames = 0
  #first = 0
  #last = 0
  #longestGapMs = 0
  #closedAfterMs: number | undefined

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const now = Date.now()
    if (this.#frames++ === 0) this.#first = now
    else this.#longestGapMs = Math.max(this.#longestGapMs, now - this.#last)
    this.#last = now
    const handled = this.ws.webSocketMessage(ws, message)
    if (this.#closedAfterMs === undefined && ws.readyState !== WebSocket.OPEN) this.#closedAfterMs = now - this.#first
    return handled
  }

  override fetch(request: Request): Promise<Response> {
    if (new URL(request.url).pathname === "/stats") {
      return Promise.resolve(Response.json({ frames: this.#frames, spanMs: this.#last - this.#first, longestGapMs: this.#longestGapMs,
        closedAfterMs: this.#closedAfterMs ?? null
      }))
    }
    return this.ws.fetch(request)
  }
}

export default {
  fetch(request: Request, env: { ROOM: DurableObjectNamespace }) {
    return env.ROOM.get(env.ROOM.idFromName("flood")).fetch(request)
  }
}
