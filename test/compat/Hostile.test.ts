/**
 * The new ways in, attacked: spoofed server meta keys and `__proto__` in
 * meta, extended meta of the wrong shape, DurablePubSub past
 * `authorizePublish` or with a reserved type, a flood past `maxPending`,
 * a reserved mount prefix, and `onError` returning false on an rpc.
 */
import { describe, expect, it } from "vitest"
import { DurablePubSub } from "../../src/index"
import * as Testing from "../../src/Testing"
import { createRouter, message, rpc, z } from "../../src/Zod"
import { frameOf, pause } from "../helpers/testing"

const Echo = message("ECHO", { text: z.string() })
const Meta = message("META", { keys: z.array(z.string()), polluted: z.boolean() })

describe("hostile frames on the compatibility paths", () => {
  it("never lets meta's __proto__ reach a prototype, and drops a client's clientId/receivedAt", async () => {
    const router = createRouter()
    router.on(Echo, (ctx) => ctx.send(Meta, { keys: Object.keys(ctx.meta), polluted: ({} as Record<string, unknown>)["hacked"] === true }))
    const client = await Testing.make(router, {}).connect()
    await client.send("{\"type\":\"ECHO\",\"meta\":{\"__proto__\":{\"hacked\":true},\"clientId\":\"x\",\"receivedAt\":1,\"n\":1},\"payload\":{\"text\":\"t\"}}")
    expect(client.frames[0]).toMatchObject({ type: "META", payload: { keys: ["__proto__", "n"], polluted: false } })
  })

  it.each([
    ["meta is an array", "{\"type\":\"SAY\",\"meta\":[1],\"payload\":{\"text\":\"t\"}}"],
    ["a declared field has the wrong type", "{\"type\":\"SAY\",\"meta\":{\"roomId\":7},\"payload\":{\"text\":\"t\"}}"],
    ["meta has a key the schema does not declare", "{\"type\":\"SAY\",\"meta\":{\"roomId\":\"r\",\"admin\":true},\"payload\":{\"text\":\"t\"}}"]
  ])("refuses extended meta when %s, and the handler never runs", async (_what, frame) => {
    const Say = message("SAY", { text: z.string() }, { roomId: z.string() })
    let ran = 0
    const router = createRouter()
    router.on(Say, () => void ran++)
    const client = await Testing.make(router, {}).connect()
    await client.send(frame)
    expect(client.frames).toMatchObject([{ type: "ERROR", payload: { code: "INVALID_ARGUMENT" } }])
    expect(ran).toBe(0)
  })

  it("a DurablePubSub publish from a handler goes through authorizePublish: denied, no socket gets it", async () => {
    const Join = message("JOIN", { room: z.string() })
    const Shout = message("SHOUT")
    const pubsub = new DurablePubSub()
    const router = createRouter()
    router.on(Join, (ctx) => ctx.topics.subscribe(ctx.payload.room))
    router.on(Shout, () => pubsub.publish("locked", { type: "SHOUTED", payload: { text: "x" } }))
    const runtime = Testing.make(router, { authorizePublish: () => false })
    const listener = await runtime.connect()
    const shouter = await runtime.connect()
    await listener.send({ type: "JOIN", payload: { room: "locked" } })
    await shouter.send({ type: "SHOUT" })
    await pause(20)
    expect(listener.frames).toEqual([])
  })

  it("a DurablePubSub publish never puts a reserved type on a socket", async () => {
    const Join = message("JOIN", { room: z.string() })
    const Forge = message("FORGE")
    const pubsub = new DurablePubSub()
    const router = createRouter()
    router.on(Join, (ctx) => ctx.topics.subscribe(ctx.payload.room))
    router.on(Forge, () => pubsub.publish("r", { type: "$session", payload: { sessionId: "x", token: "t", seq: 0 } }))
    const runtime = Testing.make(router, {})
    const victim = await runtime.connect()
    const forger = await runtime.connect()
    await victim.send({ type: "JOIN", payload: { room: "r" } })
    await forger.send({ type: "FORGE" })
    await pause(20)
    expect(victim.frames).toEqual([])
  })

  it("a flood past maxPending is refused frame by frame; the connection keeps working", async () => {
    const Slow = message("SLOW")
    const router = createRouter({ limits: { maxPending: 1 } })
    router.on(Slow, () => pause(20))
    router.on(Echo, (ctx) => ctx.send(Echo, { text: ctx.payload.text }))
    const client = await Testing.make(router, {}).connect()
    const flood = Array.from({ length: 50 }, () => client.send({ type: "SLOW" }))
    await Promise.all(flood)
    expect(client.frames.filter((frame) => frame.type === "ERROR")).toHaveLength(49)
    expect(client.frames.every((frame) => (frame.payload as { code?: string }).code === "RESOURCE_EXHAUSTED")).toBe(true)
    await pause(30)
    await client.send({ type: "ECHO", payload: { text: "still here" } })
    expect((await frameOf(client, (frame) => frame.type === "ECHO")).payload).toEqual({ text: "still here" })
  })

  it("mount refuses a prefix that would make types reserved", () => {
    const inner = createRouter().on(Echo, () => {})
    expect(() => createRouter().mount("$", inner)).toThrow(/reserved/)
    expect(() => createRouter().mount("__", inner)).toThrow(/reserved/)
  })

  it("an onError hook returning false answers an rpc's failure by itself: no error frame, and no deadline error later", async () => {
    const Boom = rpc("BOOM", undefined, "NEVER", undefined)
    const router = createRouter()
    router.rpc(Boom, () => {
      throw new Error("kept on the server")
    })
    router.onError(() => false)
    const client = await Testing.make(router, { handlerTimeoutMs: 40 }).connect()
    await client.send({ type: "BOOM", meta: { correlationId: "b" } })
    await pause(80)
    expect(client.frames).toEqual([])
  })
})
