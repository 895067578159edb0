/**
 * The Effect floor of the quick start: what any worker pays that decodes a
 * frame with an Effect Schema struct and answers it from an Effect handler
 * that reads a service, with nothing of durable-ws. `npm run bench` bundles
 * it beside the quick start; the Effect modules the quick start has beyond
 * these are the ones durable-ws brings in.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as SchemaParser from "effect/SchemaParser"

const Ping = Schema.Struct({ type: Schema.Literal("PING"), payload: Schema.Struct({ text: Schema.String }) })
const decode = SchemaParser.decodeUnknownExit(Ping)

class Socket extends Context.Service<Socket, { readonly send: (text: string) => void }>()("floor/Socket") {}

const pong = (text: string) =>
  Effect.gen(function*() {
    const socket = yield* Socket
    socket.send(JSON.stringify({ type: "PONG", payload: { reply: `Got: ${text}` } }))
  })

export default {
  fetch(): Response {
    const { 0: client, 1: server } = new WebSocketPair()
    server.accept()
    server.addEventListener("message", (event) => {
      const exit = decode(JSON.parse(String(event.data)))
      if (exit._tag === "Failure") return server.close(1007, "invalid frame")
      Effect.runFork(pong(exit.value.payload.text).pipe(Effect.provideService(Socket, { send: (text) => server.send(text) })))
    })
    return new Response(null, { status: 101, webSocket: client })
  }
}
