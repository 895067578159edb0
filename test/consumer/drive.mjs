// Copied into the consumer project and run there, on Node's global WebSocket,
// against the Quick start under `wrangler dev`: first the frames the README
// describes, then an rpc through the packed `durable-ws/client`.
import * as Schema from "effect/Schema"
import { rpc } from "durable-ws/Message"
import { createClient } from "durable-ws/client"

const url = process.argv[2]

const within = (ms, what, promise) =>
  Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms).unref())
  ])

const socket = new WebSocket(url)
const frames = []
const waiting = []
socket.addEventListener("message", (event) => {
  const frame = JSON.parse(event.data)
  const resolve = waiting.shift()
  if (resolve === undefined) frames.push(frame)
  else resolve(frame)
})
const next = (what) =>
  within(10_000, what, frames.length > 0 ? Promise.resolve(frames.shift()) : new Promise((resolve) => void waiting.push(resolve)))

await within(10_000, "open", new Promise((resolve, reject) => {
  socket.addEventListener("open", resolve)
  socket.addEventListener("error", () => reject(new Error(`cannot connect to ${url}`)))
}))

socket.send(JSON.stringify({ type: "PING", payload: { text: "hi" } }))
const pong = await next("PONG")
if (pong.type !== "PONG" || pong.payload?.reply !== "Got: hi" || typeof pong.meta?.timestamp !== "number") {
  throw new Error(`unexpected answer to PING: ${JSON.stringify(pong)}`)
}

socket.send(JSON.stringify({ type: "GET_USER", meta: { correlationId: "1" }, payload: { id: "u1" } }))
const user = await next("USER")
if (user.type !== "USER" || user.meta?.correlationId !== "1" || user.payload?.name !== "Ada") {
  throw new Error(`unexpected answer to GET_USER: ${JSON.stringify(user)}`)
}
socket.close(1000)

const GetUser = rpc("GET_USER", { id: Schema.String }, "USER", { name: Schema.String })
const client = createClient({ url, reconnect: false, heartbeat: false })
try {
  await within(10_000, "client connection", client.connect())
  const reply = await client.request(GetUser, { id: "u1" }, { timeoutMs: 10_000 })
  if (reply.name !== "Ada") throw new Error(`unexpected rpc reply: ${JSON.stringify(reply)}`)
} finally {
  client.close()
}
console.log(`${JSON.stringify(pong)} ${JSON.stringify(user)}`)
