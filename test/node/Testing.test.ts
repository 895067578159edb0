/**
 * `durable-ws/Testing` in plain Node: no workerd, no `cloudflare:*`
 * modules. The same dispatch runs, with every option of the Durable Object
 * handler.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { describe, expect, it } from "vitest"
import { ConnectionLimitExceeded, PayloadTooLarge } from "../../src/Errors"
import { createRouter } from "../../src/Router"
import { message, rpc } from "../../src/Message"
import * as Testing from "../../src/Testing"

const Say = message("SAY", { topic: Schema.String, text: Schema.String })
const Said = message("SAID", { text: Schema.String })
const Join = message("JOIN", { topic: Schema.String })
const Result = message("RESULT", { ok: Schema.Boolean, error: Schema.optional(Schema.String) })
const Slow = rpc("SLOW", undefined, "SLOW_DONE", undefined)

type Data = { role: string }

const router = createRouter<Data>()
  .on(Join, (ctx) => ctx.topics.subscribe(ctx.payload.topic).then(
    () => ctx.send(Result, { ok: true }),
    () => ctx.send(Result, { ok: false, error: "denied" })
  ))
  .on(Say, async (ctx) => {
    const result = await router.publish(ctx.payload.topic, Said, { text: ctx.payload.text })
    ctx.send(Result, result.ok ? { ok: true } : { ok: false, error: result.error })
  })
  .rpc(Slow, () => Effect.never)

const make = () =>
  Testing.make(router, {
    maxConnections: 2,
    handlerTimeoutMs: 50,
    rateLimit: { capacity: 3, refillPerSecond: 0.1 },
    authorizeSubscribe: (ctx, topic) => !topic.startsWith("admin:") || ctx.data.role === "admin",
    authorizePublish: (ctx, topic) => topic !== "announcements" || ctx.data.role === "admin"
  })

describe("Testing.make in plain Node", () => {
  it("runs in a Node process, without workerd", () => {
    expect(typeof (globalThis as { WebSocketPair?: unknown }).WebSocketPair).toBe("undefined")
    expect(typeof process.versions.node).toBe("string")
  })

  it("applies authorizeSubscribe and authorizePublish, also to router.publish", async () => {
    const runtime = make()
    const admin = await runtime.connect({ role: "admin" })
    const member = await runtime.connect({ role: "member" })
    await member.send({ type: "JOIN", payload: { topic: "admin:room" } })
    expect(member.frames.pop()).toMatchObject({ type: "RESULT", payload: { ok: false, error: "denied" } })
    await admin.send({ type: "JOIN", payload: { topic: "announcements" } })
    await member.send({ type: "SAY", payload: { topic: "announcements", text: "spam" } })
    expect(member.frames.pop()).toMatchObject({ type: "RESULT", payload: { ok: false, error: "PERMISSION_DENIED" } })
    expect(admin.frames.map((f) => f.type)).toEqual(["RESULT"])
    await admin.send({ type: "SAY", payload: { topic: "announcements", text: "hello" } })
    expect(admin.frames.map((f) => f.type)).toEqual(["RESULT", "SAID", "RESULT"])
    await runtime.dispose()
  })

  it("enforces maxConnections, the rate limit and the handler deadline", async () => {
    const runtime = make()
    const client = await runtime.connect({ role: "member" })
    await runtime.connect({ role: "member" })
    await expect(runtime.connect({ role: "member" })).rejects.toBeInstanceOf(ConnectionLimitExceeded)
    await client.send({ type: "SLOW", meta: { correlationId: "s1" } })
    expect(client.frames.pop()).toMatchObject({ type: "RPC_ERROR", meta: { correlationId: "s1" }, payload: { code: "DEADLINE_EXCEEDED" } })
    for (let i = 0; i < 4; i++) await client.send({ type: "JOIN", payload: { topic: `t${i}` } })
    const codes = client.frames.map((f) => (f.payload as { code?: string } | undefined)?.code ?? f.type)
    expect(codes).toEqual(["RESULT", "RESULT", "RESOURCE_EXHAUSTED"])
    await runtime.dispose()
  })

  it("refuses connection data past 16 KiB as the Durable Object does (its 500), and opens nothing", async () => {
    const errors: Array<unknown> = []
    const original = console.error
    console.error = (...args: Array<unknown>) => void errors.push(args.join(" "))
    try {
      const runtime = make()
      const refused = runtime.connect({ role: "x".repeat(17 * 1024) })
      await expect(refused).rejects.toBeInstanceOf(PayloadTooLarge)
      await expect(refused).rejects.toMatchObject({ limit: 16 * 1024 })
      expect(errors).toEqual([expect.stringMatching(/^durable-ws: Connection data is \d+ bytes; the limit is 16384$/)])
      // The refused connection took no slot: maxConnections (2) still admits two.
      await runtime.connect({ role: "member" })
      await runtime.connect({ role: "member" })
      await runtime.dispose()
    } finally {
      console.error = original
    }
  })

  it("validates its options like the Durable Object handler does", () => {
    expect(() => Testing.make(router, { maxConnections: 0 })).toThrow(RangeError)
    expect(() => Testing.make(router, { handlerTimeoutMs: -1 })).toThrow(RangeError)
    expect(() => Testing.make(router, { rateLimit: { capacity: 0, refillPerSecond: 1 } })).toThrow(RangeError)
    expect(() => Testing.make(router, { authorizePublish: "yes" as never })).toThrow(TypeError)
  })
})
