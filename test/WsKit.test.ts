/**
 * WS-Kit's own examples, pasted with only their import lines changed
 * ("@ws-kit/zod" becomes "durable-ws/zod"; test/fixtures/wskit/), driven through real sockets.
 */
import { env } from "cloudflare:workers"
import { describe, expect, it } from "vitest"
import { openOn } from "./helpers/durable"
import { connect } from "./helpers/socket"

describe("WS-Kit's Quick start", () => {
  it("answers PING with PONG through a module-level createDurableObjectHandler(router)", async () => {
    const socket = await connect("/quickstart")
    socket.send({ type: "PING", payload: { text: "hello" } })
    expect(await socket.next()).toMatchObject({ type: "PONG", payload: { reply: "Got: hello" } })
    socket.send({ type: "PING", payload: { text: 42 } })
    expect(await socket.next()).toMatchObject({
      type: "ERROR",
      payload: { code: "INVALID_ARGUMENT", details: { issues: [{ path: ["text"], message: expect.any(String) }] } }
    })
    socket.close(1000, "done")
  })
})

describe("WS-Kit's chat example", () => {
  it("joins rooms, lists members and relays messages with router.publish", async () => {
    const room = `wskit-${Date.now()}`
    const alice = await openOn(env.WSKIT_CHAT, room)
    alice.send({ type: "JOIN_ROOM", payload: { room: "general" } })
    const first = await alice.next((frame) => frame.type === "ROOM:LIST")
    const [aliceId] = first.payload.users as Array<string>
    expect(first.payload.users).toHaveLength(1)

    const bob = await openOn(env.WSKIT_CHAT, room)
    bob.send({ type: "JOIN_ROOM", payload: { room: "general" } })
    const listed = [await alice.next((frame) => frame.type === "ROOM:LIST"), await bob.next((frame) => frame.type === "ROOM:LIST")]
    const bobId = (listed[1]!.payload.users as Array<string>).find((user) => user !== aliceId)
    for (const frame of listed) expect(frame.payload.users).toEqual([aliceId, bobId])

    bob.send({ type: "SEND_MESSAGE", payload: { text: "hi all" } })
    for (const socket of [alice, bob]) {
      expect((await socket.next((frame) => frame.type === "ROOM:MESSAGE")).payload).toEqual({ user: bobId, text: "hi all" })
    }

    // zod guards the example's schemas as it did under WS-Kit.
    alice.send({ type: "SEND_MESSAGE", payload: { text: ["not", "text"] } })
    expect((await alice.next((frame) => frame.type === "ERROR")).payload).toMatchObject({
      code: "INVALID_ARGUMENT",
      details: { issues: [{ path: ["text"] }] }
    })
    expect((await bob.drain(50)).filter((frame) => frame.type === "ROOM:MESSAGE")).toEqual([])
  })
})
