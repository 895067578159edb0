/**
 * `durable-ws/zod` and `durable-ws/valibot` as `@ws-kit/zod` and
 * `@ws-kit/valibot` document them: a message is a strict schema of its whole
 * envelope (safeParse, z.infer, discriminated unions), with extended meta and
 * the object forms; the router takes these messages as they are. Only the
 * import lines differ from WS-Kit's docs.
 */
import { env } from "cloudflare:workers"
import { afterEach, describe, expect, expectTypeOf, it } from "vitest"
import type { Client } from "../../src/Client"
import { createClient } from "../../src/Client"
import * as Testing from "../../src/Testing"
import { v, message as vMessage, rpc as vRpc, withValibot } from "../../src/Valibot"
import type { InferMessage, InferMeta, InferPayload, InferResponse, InferType } from "../../src/Zod"
import { createRouter, message, rpc, withZod, z } from "../../src/Zod"
import { workerdSockets } from "../helpers/clientSocket"
import { frameOf } from "../helpers/testing"

describe("durable-ws/zod messages are zod schemas of their envelope", () => {
  const Join = message("JOIN", { roomId: z.string() })
  const Ping = message("PING")

  it("safeParse accepts a well-formed envelope, meta optional", () => {
    expect(Join.safeParse({ type: "JOIN", meta: {}, payload: { roomId: "42" } }).success).toBe(true)
    const parsed = Join.safeParse({ type: "JOIN", payload: { roomId: "42" } })
    expect(parsed.success && parsed.data.meta).toEqual({})
    expect(Ping.safeParse({ type: "PING", meta: { timestamp: 1, correlationId: "c" } }).success).toBe(true)
  })

  it("is strict at every level, as WS-Kit's are", () => {
    expect(Join.safeParse({ type: "JOIN", meta: {}, payload: { roomId: "42" }, extra: 1 }).success).toBe(false)
    expect(Join.safeParse({ type: "JOIN", meta: {}, payload: { roomId: "42", extra: 1 } }).success).toBe(false)
    expect(Join.safeParse({ type: "JOIN", meta: { other: 1 }, payload: { roomId: "42" } }).success).toBe(false)
    expect(Join.safeParse({ type: "LEAVE", meta: {}, payload: { roomId: "42" } }).success).toBe(false)
    expect(Ping.safeParse({ type: "PING", meta: {}, payload: {} }).success).toBe(false)
  })

  it("types z.infer as the envelope, and the Infer helpers as WS-Kit's", () => {
    type JoinFrame = z.infer<typeof Join>
    expectTypeOf<JoinFrame["type"]>().toEqualTypeOf<"JOIN">()
    expectTypeOf<JoinFrame["payload"]>().toEqualTypeOf<{ roomId: string }>()
    expectTypeOf<JoinFrame["meta"]["correlationId"]>().toEqualTypeOf<string | undefined>()
    expectTypeOf<InferMessage<typeof Join>>().toEqualTypeOf<JoinFrame>()
    expectTypeOf<InferType<typeof Join>>().toEqualTypeOf<"JOIN">()
    expectTypeOf<InferPayload<typeof Join>>().toEqualTypeOf<{ roomId: string }>()
    expectTypeOf<InferPayload<typeof Ping>>().toEqualTypeOf<never>()
    const GetUser = rpc("GET_USER", { id: z.string() }, "USER", { id: z.string(), name: z.string() })
    expectTypeOf<InferResponse<typeof GetUser>>().toEqualTypeOf<{ id: string; name: string }>()
  })

  it("composes into z.discriminatedUnion over the message types", () => {
    const Incoming = z.discriminatedUnion("type", [
      message("JOIN", { roomId: z.string() }),
      message("LEAVE", { reason: z.string() }),
      message("PING")
    ])
    const result = Incoming.safeParse({ type: "LEAVE", meta: {}, payload: { reason: "bye" } })
    expect(result.success).toBe(true)
    if (result.success && result.data.type === "LEAVE") {
      expectTypeOf(result.data.payload).toEqualTypeOf<{ reason: string }>()
      expect(result.data.payload.reason).toBe("bye")
    }
    expect(Incoming.safeParse({ type: "JOIN", meta: {}, payload: { reason: "x" } }).success).toBe(false)
  })

  it("takes extended meta as a third argument: required and optional fields", () => {
    const WithMeta = message("TEST", { data: z.string() }, { roomId: z.string(), priority: z.number().optional() })
    expect(WithMeta.safeParse({ type: "TEST", meta: { roomId: "room-1", priority: 5 }, payload: { data: "hello" } }).success)
      .toBe(true)
    expect(WithMeta.safeParse({ type: "TEST", meta: { roomId: "room-1" }, payload: { data: "hello" } }).success).toBe(true)
    expect(WithMeta.safeParse({ type: "TEST", meta: {}, payload: { data: "hello" } }).success).toBe(false)
    expectTypeOf<InferMeta<typeof WithMeta>>().toEqualTypeOf<{ roomId: string; priority?: number | undefined }>()
  })

  it("refuses meta keys the server sets (clientId, receivedAt)", () => {
    expect(() => message("BAD", { a: z.string() }, { clientId: z.string() })).toThrow(/clientId/)
    expect(() => message("BAD", undefined, { receivedAt: z.number() })).toThrow(/receivedAt/)
  })

  it("takes the object forms message({ type, payload, meta }) and rpc({ req, res })", () => {
    const Join2 = message({ type: "USER_JOIN", payload: z.object({ roomId: z.string() }), meta: { token: z.string() } })
    expect(Join2.safeParse({ type: "USER_JOIN", meta: { token: "t" }, payload: { roomId: "r" } }).success).toBe(true)
    expect(Join2.safeParse({ type: "USER_JOIN", meta: { token: "t" }, payload: { roomId: "r", x: 1 } }).success).toBe(false)
    const Loose = message({ type: "LOOSE", payload: z.object({ a: z.string() }), options: { strict: false } })
    expect(Loose.safeParse({ type: "LOOSE", meta: {}, payload: { a: "x", b: 1 } }).success).toBe(true)

    const GetUser = rpc({
      req: { type: "GET_USER", payload: z.object({ id: z.string() }) },
      res: { type: "USER", payload: z.object({ id: z.string(), name: z.string() }) }
    })
    expect(GetUser.messageType).toBe("GET_USER")
    expect(GetUser.responseType).toBe("USER")
    expect(GetUser.response.safeParse({ type: "USER", meta: {}, payload: { id: "1", name: "Alice" } }).success).toBe(true)
    expect(GetUser.response.safeParse({ type: "USER", meta: {}, payload: { id: "1" } }).success).toBe(false)
  })
})

describe("the router takes durable-ws/zod messages as its own", () => {
  const Ping = message("PING", { text: z.string() })
  const Pong = message("PONG", { reply: z.string() })
  const GetUser = rpc("GET_USER", { id: z.string() }, "USER", { id: z.string(), name: z.string() })
  const Say = message("SAY", { text: z.string() }, { roomId: z.string() })

  const router = createRouter<{ userId?: string }>().plugin(withZod())
  router.on(Ping, (ctx) => {
    expectTypeOf(ctx.payload).toEqualTypeOf<{ text: string }>()
    expectTypeOf(ctx.type).toEqualTypeOf<"PING">()
    ctx.send(Pong, { reply: `Got: ${ctx.payload.text}` })
  })
  router.rpc(GetUser, async (ctx) => {
    ctx.reply({ id: ctx.payload.id, name: "Alice" })
  })
  router.on(Say, (ctx) => {
    expectTypeOf(ctx.meta.roomId).toEqualTypeOf<string>()
    ctx.send(Pong, { reply: `${ctx.meta.roomId}: ${ctx.payload.text}` })
  })

  it("answers the frames WS-Kit's client sends, as WS-Kit's client expects them", async () => {
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "PING", meta: { timestamp: 1 }, payload: { text: "hi" } })
    await client.send({ type: "GET_USER", meta: { timestamp: 2, correlationId: "rpc-1" }, payload: { id: "u1" } })
    expect(client.frames).toEqual([
      { type: "PONG", meta: { timestamp: expect.any(Number) }, payload: { reply: "Got: hi" } },
      { type: "USER", meta: { timestamp: expect.any(Number), correlationId: "rpc-1" }, payload: { id: "u1", name: "Alice" } }
    ])
    // Each frame is what the schema of its type accepts.
    expect(Pong.safeParse(client.frames[0]).success).toBe(true)
    expect(GetUser.response.safeParse(client.frames[1]).success).toBe(true)
  })

  it("refuses unknown payload keys, as WS-Kit's strict schemas do", async () => {
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "PING", payload: { text: "hi", admin: true } })
    expect(client.frames).toEqual([{
      type: "ERROR",
      meta: {},
      payload: {
        code: "INVALID_ARGUMENT",
        message: "Invalid payload for \"PING\"",
        details: { issues: [{ path: [], message: expect.stringContaining("admin") }] }
      }
    }])
  })

  it("checks extended meta on inbound frames and hands it to the handler typed", async () => {
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "SAY", meta: { roomId: "lobby" }, payload: { text: "hello" } })
    await client.send({ type: "SAY", meta: {}, payload: { text: "no room" } })
    expect(client.frames[0]).toMatchObject({ type: "PONG", payload: { reply: "lobby: hello" } })
    expect(client.frames[1]).toMatchObject({
      type: "ERROR",
      payload: { code: "INVALID_ARGUMENT", message: "Invalid meta for \"SAY\"", details: { issues: [{ path: ["roomId"] }] } }
    })
    expect(client.frames).toHaveLength(2)
  })

  it("publishes zod messages to subscribers", async () => {
    const Join = message("JOIN", { room: z.string() })
    const Joined = message("JOINED", { room: z.string() })
    const pubsub = createRouter()
    pubsub.on(Join, async (ctx) => {
      await ctx.topics.subscribe(ctx.payload.room)
      await ctx.publish(ctx.payload.room, Joined, { room: ctx.payload.room })
    })
    const client = await Testing.make(pubsub, {}).connect()
    await client.send({ type: "JOIN", payload: { room: "r1" } })
    const joined = await frameOf(client, (frame) => frame.type === "JOINED")
    expect(Joined.safeParse({ ...joined, meta: {} }).success).toBe(true)
  })
})

describe("durable-ws/valibot messages are valibot schemas of their envelope", () => {
  const Join = vMessage("JOIN", { roomId: v.string() })
  const GetUser = vRpc("GET_USER", { id: v.string() }, "USER", { name: v.string() })
  const Tagged = vMessage("TAGGED", { text: v.string() }, { roomId: v.string() })

  it("safeParse, strictness, InferOutput and variant work as with WS-Kit's", () => {
    expect(v.safeParse(Join, { type: "JOIN", meta: {}, payload: { roomId: "42" } }).success).toBe(true)
    expect(v.safeParse(Join, { type: "JOIN", payload: { roomId: "42", extra: 1 } }).success).toBe(false)
    expect(v.safeParse(Tagged, { type: "TAGGED", meta: {}, payload: { text: "t" } }).success).toBe(false)
    expect(v.safeParse(GetUser.response, { type: "USER", meta: {}, payload: { name: "Ada" } }).success).toBe(true)
    type JoinFrame = v.InferOutput<typeof Join>
    expectTypeOf<JoinFrame["payload"]>().toEqualTypeOf<{ roomId: string }>()
    const Incoming = v.variant("type", [Join, vMessage("LEAVE")])
    expect(v.safeParse(Incoming, { type: "LEAVE", meta: {} }).success).toBe(true)
  })

  it("runs through the router: messages, rpc and extended meta", async () => {
    const router = createRouter().plugin(withValibot())
    router.rpc(GetUser, (ctx) => ctx.reply({ name: `user-${ctx.payload.id}` }))
    router.on(Tagged, (ctx) => ctx.send(Join, { roomId: ctx.meta.roomId }))
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "GET_USER", meta: { correlationId: "1" }, payload: { id: "7" } })
    await client.send({ type: "TAGGED", meta: { roomId: "r9" }, payload: { text: "x" } })
    await client.send({ type: "TAGGED", payload: { text: "x" } })
    expect(client.frames.map((frame) => [frame.type, frame.payload])).toEqual([
      ["USER", { name: "user-7" }],
      ["JOIN", { roomId: "r9" }],
      ["ERROR", expect.objectContaining({ code: "INVALID_ARGUMENT", message: "Invalid meta for \"TAGGED\"" })]
    ])
  })
})

describe("durable-ws's client takes durable-ws/zod messages too", () => {
  const clients: Array<Client> = []
  afterEach(() => {
    for (const client of clients.splice(0)) client.close()
  })

  it("sends and hears them against WS-Kit's chat example (test/fixtures/wskit/chat.ts)", async () => {
    // The chat's own schemas, as a page would share them.
    const JoinRoom = message("JOIN_ROOM", { room: z.string() })
    const SendMessage = message("SEND_MESSAGE", { text: z.string() })
    const RoomMessage = message("ROOM:MESSAGE", { user: z.string(), text: z.string() })
    const client = createClient({
      url: `ws://chat.test/compat-${Date.now()}`,
      webSocket: workerdSockets(env.WSKIT_CHAT).factory,
      heartbeat: false
    })
    clients.push(client)
    await client.connect()
    const heard = new Promise<{ user: string; text: string }>((resolve) => client.on(RoomMessage, (payload) => resolve(payload)))
    client.send(JoinRoom, { room: "general" })
    client.send(SendMessage, { text: "hi from the client" })
    const said = await Promise.race([heard, new Promise<never>((_, reject) => setTimeout(() => reject(new Error("no ROOM:MESSAGE")), 3000))])
    expectTypeOf(said).toEqualTypeOf<{ user: string; text: string }>()
    expect(said.text).toBe("hi from the client")
  })
})
