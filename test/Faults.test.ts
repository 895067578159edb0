import { env, evictDurableObject } from "cloudflare:test"
import { describe, expect, it } from "vitest"
import { captureConsole } from "./helpers/console"
import { eventually, openOn, stubOf } from "./helpers/durable"
import { createDurableObjectHandler } from "../src/index"
import { hardRouter } from "./fixtures/hardening"
import type { Frame, TestSocket } from "./helpers/socket"

let n = 0
const room = (what: string) => `fault-${what}-${n++}`

const ping = async (client: TestSocket, text: string) => {
  client.send({ type: "H_PING", payload: { text } })
  expect(await client.next()).toMatchObject({ type: "H_PONG", payload: { reply: `Got: ${text}` } })
}

const clientIdOf = async (client: TestSocket): Promise<string> => {
  client.send({ type: "H_WHO_AM_I" })
  return (await client.next((f) => f.type === "H_DATA")).payload.data.clientId
}

const count = async (client: TestSocket, id: string): Promise<number> => {
  client.send({ type: "H_COUNT", meta: { correlationId: id } })
  return (await client.next((f) => f.meta?.["correlationId"] === id)).payload.connections
}

describe("storage faults", () => {
  it.each(["sql", "put"] as const)("a failing %s reaches onError as StorageError and the client as UNAVAILABLE", async (op) => {
    const client = await openOn(env.HARDENED, room("storage"))
    client.send({ type: "H_STORE_FAIL", payload: { op } })
    expect(await client.next()).toEqual({
      type: "ERROR",
      meta: {},
      payload: { code: "UNAVAILABLE", message: `Storage ${op} failed`, retryable: true }
    })
    expect(await client.next()).toMatchObject({ type: "H_ON_ERROR", payload: { tag: "StorageError", code: "UNAVAILABLE" } })
    await ping(client, "after storage fault")
  })

  it("a raw storage failure outside the Storage service is INTERNAL, and SQLite's message stays on the server", async () => {
    const client = await openOn(env.HARDENED, room("raw-storage"))
    client.send({ type: "H_STORE_FAIL", payload: { op: "ctx-sql" } })
    expect(await client.next()).toEqual({ type: "ERROR", meta: {}, payload: { code: "INTERNAL", message: "Internal server error" } })
    // onError still gets the original error.
    expect((await client.next()).payload.tag).toContain("SQLITE_ERROR")
    await ping(client, "after raw fault")
  })
})

describe("handler timeouts (handlerTimeoutMs: 100)", () => {
  it.each(["promise", "effect", "middleware"] as const)("a %s that never finishes gets DEADLINE_EXCEEDED and the connection goes on", async (via) => {
    const client = await openOn(env.HARDENED, room("hang"))
    client.send({ type: "H_HANG", payload: { via } })
    client.send({ type: "H_PING", payload: { text: "queued behind the hang" } })
    expect(await client.next()).toMatchObject({ type: "ERROR", payload: { code: "DEADLINE_EXCEEDED" } })
    expect(await client.next()).toMatchObject({ type: "H_ON_ERROR", payload: { tag: "HandlerTimeout", code: "DEADLINE_EXCEEDED" } })
    expect(await client.next()).toMatchObject({ type: "H_PONG", payload: { reply: "Got: queued behind the hang" } })
  })

  it.each([0, -1, 1.5, Number.NaN])("refuses handlerTimeoutMs = %s when the handler is created", (handlerTimeoutMs) => {
    expect(() => createDurableObjectHandler(hardRouter, { handlerTimeoutMs })).toThrow(RangeError)
  })

  it("answers a slow rpc with RPC_ERROR DEADLINE_EXCEEDED, and its late reply is never sent", async () => {
    const client = await openOn(env.HARDENED, room("late"))
    client.send({ type: "H_LATE_REPLY", meta: { correlationId: "slow" }, payload: { afterMs: 250 } })
    expect(await client.next()).toMatchObject({ type: "RPC_ERROR", meta: { correlationId: "slow" }, payload: { code: "DEADLINE_EXCEEDED" } })
    await client.next((f) => f.type === "H_ON_ERROR")
    // Wait past the moment the handler replies: one answer per request, ever.
    await new Promise((r) => setTimeout(r, 400))
    expect(client.frames.filter((f: Frame) => f.meta?.["correlationId"] === "slow")).toEqual([])
    client.send({ type: "H_LATE_REPLY", meta: { correlationId: "quick" }, payload: { afterMs: 1 } })
    expect(await client.next()).toMatchObject({ type: "H_LATE", meta: { correlationId: "quick" }, payload: { text: "late" } })
  })

  it("times out each of several pipelined hangs in turn", async () => {
    const client = await openOn(env.HARDENED, room("hangs"))
    for (let i = 0; i < 3; i++) client.send({ type: "H_HANG", payload: { via: i % 2 === 0 ? "promise" : "effect" } })
    client.send({ type: "H_PING", payload: { text: "last" } })
    for (let i = 0; i < 3; i++) {
      expect(await client.next((f) => f.type !== "H_ON_ERROR")).toMatchObject({ type: "ERROR", payload: { code: "DEADLINE_EXCEEDED" } })
    }
    expect(await client.next((f) => f.type !== "H_ON_ERROR")).toMatchObject({ type: "H_PONG" })
  })
})

describe("sockets that close mid-publish", () => {
  it("skips a subscriber closed in the same turn as the publish and delivers to the rest", async () => {
    const name = room("close-mid")
    const subscribers: Array<TestSocket> = []
    for (let i = 0; i < 5; i++) {
      const client = await openOn(env.HARDENED, name)
      client.send({ type: "H_JOIN", payload: { topic: "news" } })
      await client.next((f) => f.type === "H_JOINED")
      subscribers.push(client)
    }
    const victim = subscribers[2]!
    const victimId = await clientIdOf(victim)
    const res = await stubOf(env.HARDENED, name).fetch(
      `http://test.local/close-then-publish?topic=news&victim=${victimId}`
    )
    expect(await res.json()).toEqual({ ok: true, matched: 4 })
    for (const [i, client] of subscribers.entries()) {
      if (i === 2) continue
      expect(await client.next()).toMatchObject({ type: "H_SAID", payload: { text: "after close" } })
    }
    expect(await victim.closed()).toMatchObject({ code: 4000 })
    expect(victim.frames).toEqual([])
    // The closed subscriber leaves the count and the topic.
    await eventually(() => count(subscribers[0]!, `c${Date.now()}`), (c) => c === 4)
    subscribers[0]!.send({ type: "H_SAY", payload: { topic: "news", text: "again" } })
    expect(await subscribers[0]!.next((f) => f.type === "H_PUBLISHED")).toMatchObject({ payload: { ok: true, matched: 4 } })
  })

  it("keeps delivering a burst in order to the subscribers that stay while others hang up", async () => {
    const name = room("hangups")
    const subscribers: Array<TestSocket> = []
    for (let i = 0; i < 10; i++) {
      const client = await openOn(env.HARDENED, name)
      client.send({ type: "H_JOIN", payload: { topic: "feed" } })
      await client.next((f) => f.type === "H_JOINED")
      subscribers.push(client)
    }
    const publisher = await openOn(env.HARDENED, name)
    for (let i = 0; i < 50; i++) publisher.send({ type: "H_SAY", payload: { topic: "feed", text: `${i}` } })
    // Three subscribers hang up as soon as the burst reaches them.
    const leaving = subscribers.slice(0, 3)
    await Promise.all(leaving.map(async (client) => {
      await client.next((f) => f.type === "H_SAID")
      client.close(1000, "bye")
    }))
    const results: Array<Frame> = []
    for (let i = 0; i < 50; i++) results.push(await publisher.next())
    expect(results.every((f) => f.type === "H_PUBLISHED" && f.payload.ok === true)).toBe(true)
    for (const client of subscribers.slice(3)) {
      const texts: Array<string> = []
      for (let i = 0; i < 50; i++) texts.push((await client.next()).payload.text)
      expect(texts).toEqual(Array.from({ length: 50 }, (_, i) => `${i}`))
    }
    // Once the closes are processed, the last publish reaches exactly the 7 that stayed.
    expect(results.at(-1)!.payload.matched).toBeGreaterThanOrEqual(7)
    await eventually(() => count(publisher, `c${Date.now()}`), (c) => c === 8)
    publisher.send({ type: "H_SAY", payload: { topic: "feed", text: "end" } })
    expect(await publisher.next()).toMatchObject({ payload: { ok: true, matched: 7 } })
  })
})

describe("eviction in the middle of a burst", () => {
  it("answers every frame exactly once, in order, with subscriptions intact", async () => {
    const name = room("evict-burst")
    const client = await openOn(env.HARDENED, name)
    client.send({ type: "H_JOIN", payload: { topic: "kept" } })
    await client.next((f) => f.type === "H_JOINED")
    const id = await clientIdOf(client)
    const total = 600
    for (let i = 0; i < total / 2; i++) client.send({ type: "H_ORDER", payload: { n: i } })
    const seen: Array<number> = []
    for (let i = 0; i < 50; i++) seen.push((await client.next()).payload.n)
    // Evict while the first half is still being answered, and keep sending meanwhile.
    const eviction = evictDurableObject(stubOf(env.HARDENED, name))
    for (let i = total / 2; i < total; i++) client.send({ type: "H_ORDER", payload: { n: i } })
    await eviction
    while (seen.length < total) {
      const frame = await client.next()
      expect(frame.type).toBe("H_ORDERED")
      seen.push(frame.payload.n)
    }
    expect(seen).toEqual(Array.from({ length: total }, (_, i) => i))
    expect(await client.drain(100)).toEqual([])
    expect(await clientIdOf(client)).toBe(id)
    client.send({ type: "H_SAY", payload: { topic: "kept", text: "after eviction" } })
    expect(await client.next()).toMatchObject({ type: "H_SAID", payload: { text: "after eviction" } })
  })
})

describe("services that fail to build", () => {
  it("answers UNAVAILABLE on every frame, logs why, and keeps the connection", async () => {
    const errors = captureConsole("error")
    const client = await openOn(env.BROKEN, room("layer"))
    for (let i = 0; i < 2; i++) {
      client.send({ type: "B_USE" })
      expect(await client.next()).toEqual({ type: "ERROR", meta: {}, payload: { code: "UNAVAILABLE", message: "Service unavailable" } })
    }
    expect(client.ws.readyState).toBe(WebSocket.OPEN)
    expect(errors.lines()).toEqual(Array(2).fill("durable-ws: services failed to build Error: backend unreachable"))
  })
})
