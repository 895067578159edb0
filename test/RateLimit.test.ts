import { env, evictDurableObject, runInDurableObject } from "cloudflare:test"
import { afterEach, describe, expect, it, vi } from "vitest"
import { openOn, stubOf } from "./helpers/durable"
import { sleep } from "./helpers/socket"
import { createDurableObjectHandler } from "../src/index"
import { hardRouter } from "./fixtures/hardening"
import type { Frame, TestSocket } from "./helpers/socket"

/**
 * `Limited`: 20 frames at once, then one every 20 s (nothing refills during a test).
 * `Refilling`: 3 frames at once, then one every 50 ms.
 */

let n = 0
const name = (what: string) => `rate-${what}-${n++}`

const sendOrders = (client: TestSocket, from: number, count: number) => {
  for (let i = from; i < from + count; i++) client.send({ type: "H_ORDER", payload: { n: i } })
}

/** Waits until `count` ordered echoes arrived and the socket went quiet, and splits what came. */
const answers = async (client: TestSocket, count: number) => {
  const deadline = Date.now() + 5000
  while (client.frames.filter((f) => f.type === "H_ORDERED").length < count) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${count} answers: ${JSON.stringify(client.frames)}`)
    await sleep(5)
  }
  const frames = [...client.frames.splice(0), ...await client.drain(100)]
  return {
    frames,
    ordered: frames.filter((f) => f.type === "H_ORDERED").map((f) => f.payload.n as number),
    refused: frames.filter((f) => f.type === "ERROR")
  }
}

const expectRefusal = (frame: Frame | undefined, maxRetryAfterMs: number) => {
  expect(frame).toMatchObject({ type: "ERROR", payload: { code: "RESOURCE_EXHAUSTED", retryable: true } })
  expect(frame!.payload.retryAfterMs).toBeGreaterThan(0)
  expect(frame!.payload.retryAfterMs).toBeLessThanOrEqual(maxRetryAfterMs)
}

const storedKeys = (namespace: DurableObjectNamespace, object: string) =>
  runInDurableObject(stubOf(namespace, object), async (_, state) => (await state.storage.list()).size)

afterEach(() => {
  vi.restoreAllMocks()
})

describe("per-connection rate limit", () => {
  it("lets a burst of `capacity` through, then drops frames with RESOURCE_EXHAUSTED and retryAfterMs", async () => {
    const room = name("burst")
    const client = await openOn(env.LIMITED, room)
    sendOrders(client, 0, 25)
    const { ordered, refused } = await answers(client, 20)
    expect(ordered).toEqual(Array.from({ length: 20 }, (_, i) => i))
    // Five frames were refused; a flood is not answered frame for frame: one notice per token interval.
    expect(refused).toHaveLength(1)
    expectRefusal(refused[0], 20_000)
    // The refused frames were dropped, not delayed: nothing else arrives.
    expect(await client.drain(100)).toEqual([])
    // The connection stays open, and the limit is per connection: a neighbour is served.
    expect(client.ws.readyState).toBe(WebSocket.OPEN)
    const neighbour = await openOn(env.LIMITED, room)
    sendOrders(neighbour, 0, 20)
    expect((await answers(neighbour, 20)).ordered).toHaveLength(20)
  })

  it("refills at refillPerSecond: after retryAfterMs the connection is served again", async () => {
    const client = await openOn(env.REFILLING, name("refill"))
    sendOrders(client, 0, 4)
    const first = await answers(client, 3)
    expect(first.ordered).toEqual([0, 1, 2])
    expectRefusal(first.refused[0], 50)
    await sleep(first.refused[0]!.payload.retryAfterMs + 10)
    sendOrders(client, 4, 1)
    expect(await client.next()).toMatchObject({ type: "H_ORDERED", payload: { n: 4 } })
  })

  it("keeps a limited connection limited across eviction, without writing to storage", async () => {
    const room = name("evict")
    const client = await openOn(env.LIMITED, room)
    sendOrders(client, 0, 21)
    const before = await answers(client, 20)
    expect(before.ordered).toHaveLength(20)
    expectRefusal(before.refused[0], 20_000)

    await evictDurableObject(stubOf(env.LIMITED, room))

    // A fresh bucket would let these through; the one in the attachment does not.
    sendOrders(client, 21, 3)
    const after = await answers(client, 0)
    expect(after.ordered).toEqual([])
    // The notice interval is kept in memory: the woken object sends one notice for the three.
    expect(after.refused).toHaveLength(1)
    expectRefusal(after.refused[0], 20_000)
    // A connection that never spent its burst still has all of it after the wake.
    const fresh = await openOn(env.LIMITED, room)
    sendOrders(fresh, 0, 20)
    expect((await answers(fresh, 20)).ordered).toHaveLength(20)
    expect(await storedKeys(env.LIMITED, room)).toBe(0)
  })

  it("keeps a half-spent burst across eviction, within a quarter of the capacity", async () => {
    const room = name("half")
    const client = await openOn(env.LIMITED, room)
    sendOrders(client, 0, 12)
    expect((await answers(client, 12)).ordered).toHaveLength(12)
    await evictDurableObject(stubOf(env.LIMITED, room))
    // 8 tokens are left; the attachment may hand back at most capacity / 4 = 5 more.
    sendOrders(client, 12, 20)
    const { ordered, refused } = await answers(client, 8)
    expect(ordered.length).toBeGreaterThanOrEqual(8)
    expect(ordered.length).toBeLessThanOrEqual(8 + 5)
    expect(ordered).toEqual(Array.from({ length: ordered.length }, (_, i) => 12 + i))
    expect(refused).toHaveLength(1)
  })

  it("writes the bucket to the attachment only when it matters, not per frame", async () => {
    const writes = vi.spyOn(WebSocket.prototype, "serializeAttachment")
    const room = name("writes")
    const client = await openOn(env.LIMITED, room)
    const afterOpen = writes.mock.calls.length
    sendOrders(client, 0, 60)
    const { ordered, refused } = await answers(client, 20)
    expect(ordered).toHaveLength(20)
    expect(refused).toHaveLength(1)
    const bucketWrites = writes.mock.calls.length - afterOpen
    // Draining 20 tokens writes about once per quarter of the burst; 40 refusals write nothing more.
    expect(bucketWrites).toBeGreaterThanOrEqual(1)
    expect(bucketWrites).toBeLessThanOrEqual(5)

    // A connection sending one frame per refill interval never writes.
    const steady = await openOn(env.REFILLING, name("steady"))
    const steadyStart = writes.mock.calls.length
    for (let i = 0; i < 10; i++) {
      sendOrders(steady, i, 1)
      expect(await steady.next()).toMatchObject({ type: "H_ORDERED", payload: { n: i } })
      await sleep(80)
    }
    expect(writes.mock.calls.length - steadyStart).toBe(0)
  })

  it("does not count heartbeats, which the runtime answers without waking the object", async () => {
    const client = await openOn(env.LIMITED, name("heartbeat"))
    sendOrders(client, 0, 21)
    expect((await answers(client, 20)).refused).toHaveLength(1)
    for (let i = 0; i < 3; i++) {
      client.sendRaw("{\"type\":\"__heartbeat\"}")
      expect(await client.next()).toEqual({ type: "__heartbeat_ack" })
    }
  })

  it("counts malformed frames too: a flood of garbage is limited like any other", async () => {
    const client = await openOn(env.LIMITED, name("garbage"))
    for (let i = 0; i < 25; i++) client.sendRaw(i % 2 === 0 ? "{not json" : "{\"type\":\"NOPE\"}")
    const frames = await client.drain(150)
    const codes = frames.map((f) => f.payload.code)
    expect(codes.filter((c) => c === "INVALID_ARGUMENT" || c === "UNIMPLEMENTED")).toHaveLength(20)
    expect(codes.filter((c) => c === "RESOURCE_EXHAUSTED")).toHaveLength(1)
  })

  it.each([
    ["a capacity of 0", { capacity: 0, refillPerSecond: 1 }],
    ["a NaN capacity", { capacity: Number.NaN, refillPerSecond: 1 }],
    ["an infinite capacity", { capacity: Number.POSITIVE_INFINITY, refillPerSecond: 1 }],
    ["no refill", { capacity: 5, refillPerSecond: 0 }],
    ["a negative refill", { capacity: 5, refillPerSecond: -1 }],
    ["a closeAfterMs of 0", { capacity: 5, refillPerSecond: 1, closeAfterMs: 0 }],
    ["a NaN closeAfterMs", { capacity: 5, refillPerSecond: 1, closeAfterMs: Number.NaN }]
  ])("refuses %s when the handler is created", (_, rateLimit) => {
    expect(() => createDurableObjectHandler(hardRouter, { rateLimit })).toThrow(RangeError)
  })

  it("answers each refused rpc with its own RPC_ERROR, correlationId and retryAfterMs", async () => {
    const client = await openOn(env.LIMITED, name("rpc"))
    sendOrders(client, 0, 20)
    for (let i = 0; i < 3; i++) client.send({ type: "H_COUNT", meta: { correlationId: `c${i}` } })
    sendOrders(client, 20, 2)
    const { frames: all } = await answers(client, 20)
    const rpcErrors = all.filter((f) => f.type === "RPC_ERROR")
    expect(rpcErrors.map((f) => f.meta?.["correlationId"])).toEqual(["c0", "c1", "c2"])
    for (const frame of rpcErrors) {
      expect(frame.payload).toMatchObject({ code: "RESOURCE_EXHAUSTED", retryable: true })
      expect(frame.payload.retryAfterMs).toBeGreaterThan(0)
    }
    // The plain frames after them share one notice.
    expect(all.filter((f) => f.type === "ERROR")).toHaveLength(1)
  })

  it("closes a connection that keeps flooding for closeAfterMs with 1008", async () => {
    const client = await openOn(env.FLOODED, name("flood"))
    const started = Date.now()
    let sent = 0
    while (client.ws.readyState === WebSocket.OPEN && Date.now() - started < 3000) {
      for (let i = 0; i < 20; i++) client.send({ type: "H_ORDER", payload: { n: sent++ } })
      await sleep(20)
    }
    const closed = await client.closed()
    expect(closed).toEqual({ code: 1008, reason: "Rate limit exceeded" })
    // Cut off soon after closeAfterMs (300 ms), not at once and not never.
    expect(Date.now() - started).toBeGreaterThanOrEqual(300)
    expect(Date.now() - started).toBeLessThan(2500)
    // Hundreds of frames were refused with a handful of notices: one per token interval (1 s).
    const notices = client.frames.filter((f) => f.type === "ERROR")
    expect(sent).toBeGreaterThan(100)
    expect(notices.length).toBeGreaterThanOrEqual(1)
    expect(notices.length).toBeLessThanOrEqual(3)
  })

  it("does not close a connection that backs off until its bucket is full again", async () => {
    const client = await openOn(env.REFILLING, name("backoff"))
    // Refilling has the default closeAfterMs (10 s); a full bucket (150 ms) ends each flood.
    // (A loaded machine may spread the ten frames out, so a token may come back in between.)
    for (let round = 0; round < 3; round++) {
      sendOrders(client, round * 10, 10)
      const { ordered, refused } = await answers(client, 3)
      expect(ordered.length).toBeGreaterThanOrEqual(3)
      expect(ordered.length).toBeLessThan(10)
      expect(refused.length).toBeGreaterThanOrEqual(1)
      await sleep(400)
    }
    expect(client.ws.readyState).toBe(WebSocket.OPEN)
  })

  it("is off by default", async () => {
    const client = await openOn(env.HARDENED, name("unlimited"))
    sendOrders(client, 0, 300)
    const { ordered, refused } = await answers(client, 300)
    expect(ordered).toHaveLength(300)
    expect(refused).toEqual([])
  })
})
