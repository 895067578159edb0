// The same page on the Effect face: a scoped client, a Stream of messages and one request.
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as ClientEffect from "../../src/ClientEffect"
import { message, rpc } from "../../src/Message"

const Said = message("SAID", { text: Schema.String })
const Echo = rpc("ECHO", { text: Schema.String }, "ECHOED", { text: Schema.String })

const program = Effect.gen(function*() {
  const client = yield* ClientEffect.make({ url: "wss://example.com/ws?room=lobby" })
  yield* client.messages(Said).pipe(Stream.runForEach((payload) => Effect.log(payload.text)), Effect.forkScoped)
  const reply = yield* client.request(Echo, { text: "hi" })
  yield* Effect.log(reply.text)
}).pipe(Effect.scoped)

Effect.runFork(program)
