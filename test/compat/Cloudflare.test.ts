/**
 * What `@ws-kit/cloudflare`'s README documents, through real sockets:
 * `DurableObjectWebSocketData<T>`, `DurablePubSub`'s
 * publish/subscribe/unsubscribe/destroy, and the differences durable-ws keeps
 * on purpose (README, "Every difference"), each shown as documented there.
 */
import { describe, expect, expectTypeOf, it } from "vitest"
import type { DurableObjectWebSocketData } from "../../src/index"
import { DurablePubSub } from "../../src/index"
import * as Testing from "../../src/Testing"
import { createRouter, message, rpc, z } from "../../src/Zod"
import advanced, { publishOutside } from "../fixtures/wskit/advanced"
import { connect, upgrade, wrap } from "../helpers/socket"
import { frameOf } from "../helpers/testing"

describe("DurableObjectWebSocketData<T>", () => {
  it("is the connection data: clientId (UUID v7), resourceId from ?room, connectedAt, and authenticate's data", async () => {
    expectTypeOf<DurableObjectWebSocketData<{ userId?: string }>>().toMatchTypeOf<{
      clientId: string
      resourceId?: string
      connectedAt: number
      userId?: string
    }>()
    const before = Date.now()
    const socket = await connect("/wskit-advanced/x?room=general", { headers: { authorization: "Bearer t" } })
    socket.send({ type: "WHO_AM_I", meta: {} })
    const { data } = (await socket.next((frame) => frame.type === "YOU_ARE")).payload
    expect(data.clientId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(data.resourceId).toBe("general")
    expect(data.connectedAt).toBeGreaterThanOrEqual(before)
    expect(data.userId).toBe("user_123")
    socket.close(1000, "done")
  })
})

describe("DurablePubSub", () => {
  it("publishes to the listeners of a channel, strings as they are and objects as JSON, until unsubscribed", async () => {
    const pubsub = new DurablePubSub()
    const heard: Array<unknown> = []
    const listener = (m: unknown) => void heard.push(m)
    pubsub.subscribe("notifications", listener)
    pubsub.subscribe("other", () => void heard.push("wrong channel"))
    await pubsub.publish("notifications", JSON.stringify({ type: "NOTIFICATION", text: "Hello" }))
    await pubsub.publish("notifications", { type: "NOTIFICATION", text: "again" })
    pubsub.unsubscribe("notifications", listener)
    await pubsub.publish("notifications", "after unsubscribe")
    expect(heard).toEqual([
      "{\"type\":\"NOTIFICATION\",\"text\":\"Hello\"}",
      "{\"type\":\"NOTIFICATION\",\"text\":\"again\"}"
    ])
  })

  it("awaits async listeners, keeps going past one that throws, and does nothing once destroyed", async () => {
    const pubsub = new DurablePubSub()
    const heard: Array<string> = []
    const errors: Array<unknown> = []
    const original = console.error
    console.error = (...args: Array<unknown>) => void errors.push(args)
    try {
      pubsub.subscribe("c", async (m) => {
        await new Promise((resolve) => setTimeout(resolve, 5))
        heard.push(`slow:${String(m)}`)
      })
      pubsub.subscribe("c", () => {
        throw new Error("listener bug")
      })
      pubsub.subscribe("c", (m) => void heard.push(`fast:${String(m)}`))
      await pubsub.publish("c", "1")
      pubsub.destroy()
      await pubsub.publish("c", "2")
      pubsub.subscribe("c", (m) => void heard.push(`late:${String(m)}`))
      await pubsub.publish("c", "3")
    } finally {
      console.error = original
    }
    expect(heard).toEqual(["slow:1", "fast:1"])
    expect(errors).toHaveLength(1)
  })

  it("inside a handler, also reaches the instance's sockets subscribed to that topic", async () => {
    const Join = message("JOIN", { room: z.string() })
    const Shout = message("SHOUT", { text: z.string() })
    const pubsub = new DurablePubSub()
    const router = createRouter()
    router.on(Join, async (ctx) => {
      await ctx.topics.subscribe(ctx.payload.room)
    })
    router.on(Shout, async (ctx) => {
      await pubsub.publish("room:1", { type: "SHOUTED", payload: { text: ctx.payload.text } })
    })
    const runtime = Testing.make(router, {})
    const listener = await runtime.connect()
    const bystander = await runtime.connect()
    await listener.send({ type: "JOIN", payload: { room: "room:1" } })
    await bystander.send({ type: "SHOUT", payload: { text: "hey" } })
    expect(await frameOf(listener, (frame) => frame.type === "SHOUTED")).toEqual({ type: "SHOUTED", payload: { text: "hey" } })
    expect(bystander.frames).toEqual([])
  })
})

describe("differences kept on purpose (README, Every difference)", () => {
  it("an rpc request without meta.correlationId is refused with ERROR INVALID_ARGUMENT (its answer could not be matched)", async () => {
    const GetUser = rpc("GET_USER", { id: z.string() }, "USER", { name: z.string() })
    const router = createRouter()
    router.rpc(GetUser, (ctx) => ctx.reply({ name: "Ada" }))
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "GET_USER", meta: {}, payload: { id: "1" } })
    expect(client.frames).toEqual([
      {
        type: "ERROR",
        meta: {},
        payload: { code: "INVALID_ARGUMENT", message: "RPC request \"GET_USER\" requires meta.correlationId" }
      }
    ])
  })

  it("router.publish outside a handler resolves { ok: false, error: FAILED_PRECONDITION }: no instance is current", async () => {
    expect(await publishOutside()).toEqual({ ok: false, error: "FAILED_PRECONDITION", message: expect.stringContaining("ctx.publish") })
  })

  it("a connection without ?room, ?id or a path segment has no resourceId (WS-Kit says \"default\")", async () => {
    // The fixture's module-level handler, called directly with a URL that names nothing.
    const res = await advanced.fetch(
      new Request("http://test.local/", { headers: { Upgrade: "websocket", authorization: "Bearer t" } }),
      undefined as never,
      undefined as never
    )
    expect(res.status).toBe(101)
    const socket = wrap(res.webSocket!)
    socket.send({ type: "WHO_AM_I" })
    const { data } = (await socket.next((frame) => frame.type === "YOU_ARE")).payload
    expect(Object.keys(data).sort()).toEqual(["clientId", "connectedAt", "userId"])
    expect(data.resourceId).toBeUndefined()
    socket.close(1000, "done")
  })

  it("an authenticate that returns nothing refuses the upgrade with 401 (WS-Kit upgrades it without data)", async () => {
    const refused = await upgrade("/wskit-advanced/x?room=general")
    expect(refused.status).toBe(401)
    expect(refused.webSocket).toBeNull()
    const accepted = await upgrade("/wskit-advanced/x?room=general", { headers: { authorization: "Bearer t" } })
    expect(accepted.status).toBe(101)
    accepted.webSocket?.accept()
    accepted.webSocket?.close(1000, "done")
  })
})
