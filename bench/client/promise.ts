// A small page on the promise client: one message handler and one request.
import * as Schema from "effect/Schema"
import { createClient } from "../../src/Client"
import { message, rpc } from "../../src/Message"

const Said = message("SAID", { text: Schema.String })
const Echo = rpc("ECHO", { text: Schema.String }, "ECHOED", { text: Schema.String })

const client = createClient({ url: "wss://example.com/ws?room=lobby" })
client.on(Said, (payload) => console.log(payload.text))
void client.connect()
void client.request(Echo, { text: "hi" }).then((reply) => console.log(reply.text))
