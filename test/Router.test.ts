import { describe, expect, it } from "vitest"
import { connect } from "./helpers/socket"

let n = 0
const room = () => `/room/router-${n++}`

const welcomed = async (path = room()) => {
  const client = await connect(path)
  await client.next((f) => f.type === "WELCOME")
  return client
}

describe("router: frames and handlers", () => {
  it("answers PING with PONG (the quick start)", async () => {
    const client = await welcomed()
    client.send({ type: "PING", payload: { text: "hi" } })
    const pong = await client.next()
    expect(pong.type).toBe("PONG")
    expect(pong.payload).toEqual({ reply: "Got: hi" })
    expect(typeof pong.meta?.["timestamp"]).toBe("number")
  })

  it("handles a message without payload", async () => {
    const client = await welcomed()
    client.send({ type: "BARE" })
    expect((await client.next()).payload).toEqual({ reply: "bare" })
  })

  it.each([
    ["not JSON", "{nope"],
    ["a JSON array", "[1,2]"],
    ["a JSON string", "\"PING\""],
    ["null", "null"],
    ["no type", "{\"payload\":{}}"],
    ["a numeric type", "{\"type\":42}"],
    ["an empty type", "{\"type\":\"\"}"],
    ["meta that is not an object", "{\"type\":\"PING\",\"meta\":[1]}"]
  ])("rejects %s with ERROR INVALID_ARGUMENT and keeps the connection", async (_, raw) => {
    const client = await welcomed()
    client.sendRaw(raw)
    const error = await client.next()
    expect(error.type).toBe("ERROR")
    expect(error.payload.code).toBe("INVALID_ARGUMENT")
    client.send({ type: "PING", payload: { text: "still here" } })
    expect((await client.next()).type).toBe("PONG")
  })

  it("rejects unknown and reserved types with UNIMPLEMENTED (RPC_ERROR with a correlationId)", async () => {
    const client = await welcomed()
    client.send({ type: "NOPE" })
    expect((await client.next()).payload.code).toBe("UNIMPLEMENTED")
    client.send({ type: "$system" })
    expect((await client.next()).payload.code).toBe("UNIMPLEMENTED")
    client.send({ type: "__internal", meta: { correlationId: "c1" } })
    const rpcError = await client.next()
    expect(rpcError).toMatchObject({ type: "RPC_ERROR", meta: { correlationId: "c1" }, payload: { code: "UNIMPLEMENTED" } })
  })

  it("rejects an invalid payload with details.issues", async () => {
    const client = await welcomed()
    client.send({ type: "NESTED", payload: { user: { name: 1, age: 3 }, tags: ["a", 2] } })
    const error = await client.next()
    expect(error.type).toBe("ERROR")
    expect(error.payload.code).toBe("INVALID_ARGUMENT")
    const paths = error.payload.details.issues.map((i: { path: Array<unknown> }) => i.path.join("."))
    expect(paths).toContain("user.name")
    client.send({ type: "PING", payload: {} })
    const missing = await client.next()
    expect(missing.payload.details.issues[0].path).toEqual(["text"])
    client.send({ type: "GET_USER", meta: { correlationId: "r1" }, payload: { id: 5 } })
    expect(await client.next()).toMatchObject({ type: "RPC_ERROR", meta: { correlationId: "r1" }, payload: { code: "INVALID_ARGUMENT" } })
  })

  it("measures frame size in bytes, not UTF-16 units", async () => {
    // maxPayloadBytes is 1 MiB: 400k three-byte characters are 1.2 MB but only 400k UTF-16 units.
    const client = await welcomed()
    client.send({ type: "PING", payload: { text: "€".repeat(400_000) } })
    const error = await client.next()
    expect(error.payload.code).toBe("RESOURCE_EXHAUSTED")
    client.send({ type: "PING", payload: { text: "€".repeat(300_000) } })
    expect((await client.next()).type).toBe("PONG")
  })

  it("sends INTERNAL with a generic message when a handler throws, rejects, fails or dies", async () => {
    const client = await welcomed()
    for (const type of ["THROW", "REJECT", "EFFECT_FAIL", "EFFECT_DIE"]) {
      client.send({ type })
      const error = await client.next((f) => f.type === "ERROR")
      expect(error.payload).toEqual({ code: "INTERNAL", message: "Internal server error" })
      expect(JSON.stringify(error)).not.toContain("secret")
      expect((await client.next((f) => f.type === "ON_ERROR")).type).toBe("ON_ERROR")
    }
    client.send({ type: "PING", payload: { text: "alive" } })
    expect((await client.next((f) => f.type === "PONG")).payload.reply).toBe("Got: alive")
  })

  it("sends the code of a WsError, thrown or failed", async () => {
    const client = await welcomed()
    client.send({ type: "WS_ERR", payload: { code: "NOT_FOUND" } })
    expect((await client.next((f) => f.type === "ERROR")).payload).toEqual({
      code: "NOT_FOUND",
      message: "custom failure",
      details: { hint: 1 }
    })
    client.send({ type: "EFFECT_WS_ERR" })
    expect((await client.next((f) => f.type === "ERROR")).payload).toEqual({ code: "ALREADY_EXISTS", message: "exists" })
  })

  it("echoes the correlationId on rpc replies", async () => {
    const client = await welcomed()
    client.send({ type: "GET_USER", meta: { correlationId: "abc" }, payload: { id: "7" } })
    const reply = await client.next()
    expect(reply).toMatchObject({ type: "USER", meta: { correlationId: "abc" }, payload: { name: "user-7" } })
  })

  it("leaves an rpc whose handler returned without replying open for a deferred reply (no error at once)", async () => {
    const client = await welcomed()
    client.send({ type: "NO_REPLY", meta: { correlationId: "q" }, payload: { id: "1" } })
    client.send({ type: "GET_USER", meta: { correlationId: "after" }, payload: { id: "2" } })
    // The next answer is the later request's: the first one waits for its deadline (test/compat/DeferredReply.test.ts).
    expect(await client.next()).toMatchObject({ type: "USER", meta: { correlationId: "after" } })
    expect(await client.drain(50)).toEqual([])
  })

  it("handles one connection's messages in arrival order, one after another", async () => {
    const client = await welcomed()
    client.send({ type: "SLOW", payload: { n: 1, ms: 60 } })
    client.send({ type: "SLOW", payload: { n: 2, ms: 1 } })
    client.send({ type: "ORDER", payload: { n: 3 } })
    const first = await client.next()
    const second = await client.next()
    const third = await client.next()
    expect([first.payload.n, second.payload.n, third.payload.n]).toEqual([1, 2, 3])
  })

  it("keeps 200 pipelined messages in order", async () => {
    const client = await welcomed()
    for (let i = 0; i < 200; i++) client.send({ type: "ORDER", payload: { n: i } })
    const seen: Array<number> = []
    for (let i = 0; i < 200; i++) seen.push((await client.next()).payload.n)
    expect(seen).toEqual(Array.from({ length: 200 }, (_, i) => i))
  })
})

describe("router: binary frames", () => {
  it("handles UTF-8 JSON sent as a binary frame", async () => {
    const client = await welcomed()
    client.sendRaw(new TextEncoder().encode(JSON.stringify({ type: "PING", payload: { text: "bin€" } })).buffer as ArrayBuffer)
    expect((await client.next()).payload).toEqual({ reply: "Got: bin€" })
  })

  it("refuses a binary frame that is not UTF-8", async () => {
    const client = await welcomed()
    client.sendRaw(new Uint8Array([0x7b, 0xc3, 0x28, 0x7d]).buffer as ArrayBuffer)
    expect((await client.next()).payload.code).toBe("INVALID_ARGUMENT")
  })
})
