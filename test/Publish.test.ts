import { env } from "cloudflare:test"
import { describe, expect, it } from "vitest"
import { openOn, stubOf, upgradeOn } from "./helpers/durable"
import type { TestSocket } from "./helpers/socket"
import { sleep, wrap } from "./helpers/socket"

/**
 * One way in for every publish: whichever way a handler publishes, it is a
 * publish from its connection — `authorizePublish` (which denies `secret:`
 * topics) is consulted and `excludeSelf` applies.
 */

let n = 0
const room = (what: string) => `publish-${what}-${n++}`

const join = async (client: TestSocket, topic: string) => {
  client.send({ type: "P_JOIN", payload: { topic } })
  expect(await client.next()).toEqual({ type: "P_JOINED", meta: expect.anything(), payload: { topic } })
}

/** A listener and a speaker, both on `open:news` and `secret:plans`. */
const pair = async (namespace: DurableObjectNamespace) => {
  const name = room("pair")
  const listener = await openOn(namespace, name)
  const speaker = await openOn(namespace, name)
  for (const client of [listener, speaker]) {
    await join(client, "open:news")
    await join(client, "secret:plans")
  }
  return { listener, speaker }
}

const publish = async (speaker: TestSocket, via: string, topic: string, excludeSelf: boolean) => {
  speaker.send({ type: "P_PUBLISH", payload: { via, topic, excludeSelf } })
  return (await speaker.next((f) => f.type === "P_RESULT")).payload
}

const ways = ["ctx", "router", "router-await", "router-effect", "router-effect-yield", "pubsub"] as const

describe.each([
  ["direct calls", "PUBLISHER"],
  ["middleware and a deadline", "TIMED_PUBLISHER"],
  ["a deadline alone", "DEADLINE_PUBLISHER"]
] as const)("every way to publish, with %s", (_, binding) => {
  it.each(ways)("%s: an allowed publish reaches every subscriber, the speaker included", async (via) => {
    const { listener, speaker } = await pair(env[binding])
    expect(await publish(speaker, via, "open:news", false)).toEqual({ ok: true, matched: 2 })
    expect(await listener.next()).toMatchObject({ type: "P_NEWS", payload: { via } })
    expect(await speaker.next((f) => f.type === "P_NEWS")).toMatchObject({ payload: { via } })
  })

  it.each(ways)("%s: excludeSelf leaves the speaker out", async (via) => {
    const { listener, speaker } = await pair(env[binding])
    expect(await publish(speaker, via, "open:news", true)).toEqual({ ok: true, matched: 1 })
    expect(await listener.next()).toMatchObject({ type: "P_NEWS", payload: { via } })
    expect(await speaker.drain(50)).toEqual([])
  })

  it.each(ways)("%s: a publish authorizePublish denies is refused and reaches no one", async (via) => {
    const { listener, speaker } = await pair(env[binding])
    expect(await publish(speaker, via, "secret:plans", false)).toEqual({ ok: false, error: "PERMISSION_DENIED" })
    expect(await listener.drain(50)).toEqual([])
    expect(await speaker.drain(0)).toEqual([])
  })
})

describe.each([
  ["under middleware", "TIMED_PUBLISHER"],
  ["without middleware", "DEADLINE_PUBLISHER"]
] as const)("a handler past its deadline (handlerTimeoutMs: 100), %s", (_, binding) => {
  it("a promise handler's later sends, errors, publishes and subscriptions are never delivered", async () => {
    const { listener, speaker } = await pair(env[binding])
    speaker.send({ type: "P_LATE", payload: { topic: "open:news", ms: 250 } })
    speaker.send({ type: "P_PUBLISH", payload: { via: "ctx", topic: "open:news", excludeSelf: true } })
    expect(await speaker.next()).toMatchObject({ type: "ERROR", payload: { code: "DEADLINE_EXCEEDED" } })
    // The next frame is handled at once, and what the late handler does afterwards never follows it.
    expect(await speaker.next()).toMatchObject({ type: "P_RESULT", payload: { ok: true, matched: 1 } })
    expect(await listener.next()).toMatchObject({ type: "P_NEWS", payload: { via: "ctx" } })
    await sleep(350)
    expect(await speaker.drain(50)).toEqual([])
    expect(await listener.drain(0)).toEqual([])
    // Its subscription never happened either: a publish there matches no one.
    expect(await publish(speaker, "ctx", "late-topic", false)).toEqual({ ok: true, matched: 0 })
  })

  it("a promise handler done in time is answered as usual, and no deadline error follows it", async () => {
    const { listener, speaker } = await pair(env[binding])
    speaker.send({ type: "P_LATE", payload: { topic: "open:news", ms: 10 } })
    expect(await speaker.next()).toMatchObject({ type: "P_NOTE", payload: { text: "late send" } })
    expect(await speaker.next()).toMatchObject({ type: "ERROR", payload: { code: "INTERNAL", message: "late error" } })
    expect((await listener.next()).payload).toEqual({ via: "late ctx.publish" })
    expect((await listener.next()).payload).toEqual({ via: "late router.publish" })
    // Past the deadline of the finished handler: nothing more comes.
    await sleep(200)
    expect((await speaker.drain(50)).map((f) => f.payload)).toEqual([{ via: "late ctx.publish" }, { via: "late router.publish" }])
    expect(await publish(speaker, "ctx", "late-topic", false)).toEqual({ ok: true, matched: 1 })
  })

  it("an Effect handler is interrupted, and nothing it would have sent arrives", async () => {
    const { listener, speaker } = await pair(env[binding])
    const interruptions = async () => {
      speaker.send({ type: "P_INTERRUPTED", meta: { correlationId: `i${n++}` } })
      return (await speaker.next((f) => f.type === "P_INTERRUPTIONS")).payload.count as number
    }
    const before = await interruptions()
    speaker.send({ type: "P_LATE_EFFECT", payload: { topic: "open:news", ms: 250 } })
    expect(await speaker.next()).toMatchObject({ type: "ERROR", payload: { code: "DEADLINE_EXCEEDED" } })
    expect(await interruptions()).toBe(before + 1)
    await sleep(300)
    expect(await speaker.drain(50)).toEqual([])
    expect(await listener.drain(0)).toEqual([])
  })

  it("an rpc answers DEADLINE_EXCEEDED once and its late reply is dropped", async () => {
    const { speaker } = await pair(env[binding])
    speaker.send({ type: "P_LATE_RPC", meta: { correlationId: "slow" }, payload: { ms: 200 } })
    expect(await speaker.next()).toMatchObject({ type: "RPC_ERROR", meta: { correlationId: "slow" }, payload: { code: "DEADLINE_EXCEEDED" } })
    await sleep(300)
    expect(await speaker.drain(50)).toEqual([])
  })
})

describe("sockets accepted outside durable-ws", () => {
  it("are no connections: not counted, not limited, not published to, never answered", async () => {
    const name = room("mixed")
    const stub = stubOf(env.MIXED, name)
    const res = await stub.fetch("http://test.local/foreign", { headers: { Upgrade: "websocket" } })
    expect(res.status).toBe(101)
    const foreign = wrap(res.webSocket!)
    foreign.send({ type: "P_JOIN", payload: { topic: "open:news" } })
    expect(await foreign.drain(100)).toEqual([])
    expect(await (await stub.fetch("http://test.local/count")).json()).toBe(0)
    // maxConnections is 2: both slots are still free for real connections.
    const first = await openOn(env.MIXED, name)
    const second = await openOn(env.MIXED, name)
    expect(await (await stub.fetch("http://test.local/count")).json()).toBe(2)
    expect((await upgradeOn(env.MIXED, name)).status).toBe(503)
    await join(first, "open:news")
    expect(await (await stub.fetch("http://test.local/publish")).json()).toEqual({ ok: true, matched: 1 })
    expect(await first.next()).toMatchObject({ type: "P_NEWS", payload: { via: "server" } })
    expect(await foreign.drain(50)).toEqual([])
    expect(await second.drain(0)).toEqual([])
    // Closing the foreign socket runs no hook and disturbs nothing.
    foreign.close(1000, "bye")
    await sleep(50)
    expect(await (await stub.fetch("http://test.local/count")).json()).toBe(2)
  })
})
