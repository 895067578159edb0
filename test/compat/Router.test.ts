/**
 * WS-Kit's router surface as its docs use it — composition (merge, mount,
 * route().use().on()), plugins, observe, limits, ctx.receivedAt, the send,
 * reply and error options, and onError for refused frames — with only the
 * import lines changed. Frames are what WS-Kit's client sends and expects.
 */
import { describe, expect, expectTypeOf, it } from "vitest"
import * as Testing from "../../src/Testing"
import { createRouter, message, rpc, withMessaging, withPubSub, withRpc, withZod, z } from "../../src/Zod"
import { frameOf, pause } from "../helpers/testing"

interface ConnectionData {
  userId?: string
  roles?: Array<string>
}

const LoginMessage = message("LOGIN", { userId: z.string() })
const SendMessageMessage = message("SEND_MESSAGE", { text: z.string() })
const Ack = message("ACK", { text: z.string() })

const codesOf = (frames: ReadonlyArray<{ type: string; payload?: unknown }>) =>
  frames.map((frame) => frame.type === "ERROR" || frame.type === "RPC_ERROR" ? (frame.payload as { code: string }).code : frame.type)

describe("composition", () => {
  it("merge() takes the routes of other routers", async () => {
    const authRouter = createRouter<ConnectionData>()
    authRouter.on(LoginMessage, (ctx) => {
      ctx.assignData({ userId: ctx.payload.userId })
      ctx.send(Ack, { text: "logged in" })
    })
    const chatRouter = createRouter<ConnectionData>()
    chatRouter.on(SendMessageMessage, (ctx) => ctx.send(Ack, { text: `${ctx.data.userId}: ${ctx.payload.text}` }))
    const router = createRouter<ConnectionData>()
    router.merge(authRouter).merge(chatRouter)

    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "LOGIN", meta: {}, payload: { userId: "ada" } })
    await client.send({ type: "SEND_MESSAGE", meta: {}, payload: { text: "hi" } })
    expect(client.frames.map((frame) => frame.payload)).toEqual([{ text: "logged in" }, { text: "ada: hi" }])
  })

  it("merge() refuses a type both routers handle, unless told to skip or replace", () => {
    const first = createRouter().on(Ack, () => {})
    const second = createRouter().on(Ack, () => {})
    expect(() => createRouter().merge(first).merge(second)).toThrow(/"ACK"/)
    expect(() => createRouter().merge(first).merge(second, { onConflict: "skip" })).not.toThrow()
    expect(() => createRouter().merge(first).merge(second, { onConflict: "replace" })).not.toThrow()
  })

  it("mount(prefix, router) serves the other router's types under the prefix", async () => {
    const Send = message("SEND", { text: z.string() })
    const chat = createRouter().on(Send, (ctx) => ctx.send(Ack, { text: `${ctx.type}:${ctx.payload.text}` }))
    const router = createRouter().mount("chat.", chat)
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "chat.SEND", payload: { text: "x" } })
    await client.send({ type: "SEND", payload: { text: "x" } })
    expect(client.frames[0]).toMatchObject({ type: "ACK", payload: { text: "chat.SEND:x" } })
    expect(client.frames[1]).toMatchObject({ type: "ERROR", payload: { code: "UNIMPLEMENTED" } })
  })

  it("route(schema).use(mw).on(handler): the middleware runs for that message only, after the global one", async () => {
    const trace: Array<string> = []
    const RateLimitMessage = message("RATE_LIMIT_MESSAGE", { text: z.string() })
    const router = createRouter<ConnectionData>()
    router.use((ctx, next) => {
      trace.push(`global:${ctx.type}`)
      if (!ctx.data?.userId && ctx.type !== "LOGIN") {
        ctx.error("UNAUTHENTICATED", "Not authenticated")
        return
      }
      return next()
    })
    let count = 0
    router
      .route(RateLimitMessage)
      .use((ctx, next) => {
        trace.push("route")
        if (++count > 1) {
          ctx.error("RESOURCE_EXHAUSTED", "Too many messages")
          return
        }
        return next()
      })
      .on((ctx) => {
        expectTypeOf(ctx.payload).toEqualTypeOf<{ text: string }>()
        ctx.send(Ack, { text: ctx.payload.text })
      })
    router.on(LoginMessage, (ctx) => ctx.assignData({ userId: ctx.payload.userId }))

    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "RATE_LIMIT_MESSAGE", payload: { text: "before login" } })
    await client.send({ type: "LOGIN", payload: { userId: "u1" } })
    await client.send({ type: "RATE_LIMIT_MESSAGE", payload: { text: "one" } })
    await client.send({ type: "RATE_LIMIT_MESSAGE", payload: { text: "two" } })
    expect(codesOf(client.frames)).toEqual(["UNAUTHENTICATED", "ACK", "RESOURCE_EXHAUSTED"])
    expect(trace).toEqual([
      "global:RATE_LIMIT_MESSAGE",
      "global:LOGIN",
      "global:RATE_LIMIT_MESSAGE",
      "route",
      "global:RATE_LIMIT_MESSAGE",
      "route"
    ])
  })

  it("route(rpc).on(handler) registers an rpc handler", async () => {
    const GetUser = rpc("GET_USER", { id: z.string() }, "USER", { name: z.string() })
    const router = createRouter()
    router.route(GetUser).on((ctx) => ctx.reply({ name: `user-${ctx.payload.id}` }))
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "GET_USER", meta: { correlationId: "r1" }, payload: { id: "1" } })
    expect(client.frames).toEqual([
      { type: "USER", meta: { timestamp: expect.any(Number), correlationId: "r1" }, payload: { name: "user-1" } }
    ])
  })

  it("plugin(withZod()), withMessaging(), withRpc() and withPubSub(...) return the router, ready to chain", async () => {
    const router = createRouter()
      .plugin(withZod())
      .plugin(withMessaging())
      .plugin(withRpc())
      .plugin(withPubSub({ adapter: { name: "memory" } }))
      .on(Ack, (ctx) => ctx.send(Ack, { text: "pong" }))
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "ACK", payload: { text: "ping" } })
    expect(client.frames).toMatchObject([{ type: "ACK", payload: { text: "pong" } }])
  })
})

describe("observe()", () => {
  it("sees publishes, errors, opens and closes until unsubscribed", async () => {
    const Join = message("JOIN", { room: z.string() })
    const Boom = message("BOOM")
    const router = createRouter()
    router.on(Join, async (ctx) => {
      await ctx.topics.subscribe(ctx.payload.room)
      await ctx.publish(ctx.payload.room, Ack, { text: "joined" })
    })
    router.on(Boom, () => {
      throw new Error("boom")
    })
    router.onError(() => {}) // the failure is expected: keep it out of the log
    const seen: Array<string> = []
    const off = router.observe({
      onPublish: (record) => seen.push(`publish:${record.topic}:${record.type}`),
      onError: (error, meta) => seen.push(`error:${meta?.type}:${(error as Error).message}`),
      onConnectionOpen: (clientId) => seen.push(`open:${typeof clientId}`),
      onConnectionClose: (_clientId, meta) => seen.push(`close:${meta?.code}`)
    })
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "JOIN", payload: { room: "r1" } })
    await client.send({ type: "BOOM" })
    await client.close(1000, "bye")
    off()
    const again = await Testing.make(router, {}).connect()
    await again.send({ type: "BOOM" })
    expect(seen).toEqual(["open:string", "publish:r1:ACK", "error:BOOM:boom", "close:1000"])
  })
})

describe("createRouter({ limits })", () => {
  it("maxPayloadBytes refuses a larger frame with RESOURCE_EXHAUSTED, and the connection goes on", async () => {
    const router = createRouter({ limits: { maxPayloadBytes: 64 } })
    router.on(Ack, (ctx) => ctx.send(Ack, { text: "ok" }))
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "ACK", payload: { text: "x".repeat(100) } })
    await client.send({ type: "ACK", payload: { text: "short" } })
    expect(codesOf(client.frames)).toEqual(["RESOURCE_EXHAUSTED", "ACK"])
  })

  it("the handler's own maxPayloadBytes wins over the router's", async () => {
    const router = createRouter({ limits: { maxPayloadBytes: 64 } })
    router.on(Ack, (ctx) => ctx.send(Ack, { text: "ok" }))
    const client = await Testing.make(router, { maxPayloadBytes: 1024 }).connect()
    await client.send({ type: "ACK", payload: { text: "x".repeat(100) } })
    expect(codesOf(client.frames)).toEqual(["ACK"])
  })

  it("maxPending refuses frames past the limit while earlier ones are still being handled", async () => {
    const Slow = message("SLOW", { n: z.number() })
    const router = createRouter({ limits: { maxPending: 2 } })
    router.on(Slow, async (ctx) => {
      await pause(30)
      ctx.send(Ack, { text: String(ctx.payload.n) })
    })
    const client = await Testing.make(router, {}).connect()
    const sends = [1, 2, 3, 4].map((n) => client.send({ type: "SLOW", payload: { n } }))
    await Promise.all(sends)
    await frameOf(client, (frame) => frame.type === "ACK" && (frame.payload as { text: string }).text === "2")
    expect(codesOf(client.frames).filter((code) => code === "RESOURCE_EXHAUSTED")).toHaveLength(2)
    expect(client.frames.filter((frame) => frame.type === "ACK").map((frame) => frame.payload)).toEqual([
      { text: "1" },
      { text: "2" }
    ])
  })
})

describe("the handler's context", () => {
  it("ctx.receivedAt is the server's arrival time, and meta.clientId/receivedAt from the client never reach ctx.meta", async () => {
    const router = createRouter()
    let seen: { receivedAt: number; meta: Readonly<Record<string, unknown>> } | undefined
    router.on(Ack, (ctx) => {
      expectTypeOf(ctx.receivedAt).toEqualTypeOf<number>()
      seen = { receivedAt: ctx.receivedAt, meta: ctx.meta }
    })
    const client = await Testing.make(router, {}).connect()
    const before = Date.now()
    await client.send({ type: "ACK", meta: { timestamp: 1, clientId: "spoofed", receivedAt: 2 }, payload: { text: "x" } })
    expect(seen!.receivedAt).toBeGreaterThanOrEqual(before)
    expect(seen!.receivedAt).toBeLessThanOrEqual(Date.now())
    expect(seen!.meta).toEqual({ timestamp: 1 })
  })

  it("send options: inheritCorrelationId, signal, waitFor, meta", async () => {
    const Notify = message("NOTIFY", { n: z.number() })
    const router = createRouter()
    const results: Array<boolean> = []
    router.on(Notify, async (ctx) => {
      ctx.send(Ack, { text: "inherit" }, { inheritCorrelationId: true })
      const aborted = new AbortController()
      aborted.abort()
      ctx.send(Ack, { text: "never" }, { signal: aborted.signal })
      results.push(await ctx.send(Ack, { text: "waited" }, { waitFor: "drain", meta: { seq: ctx.payload.n } }))
    })
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "NOTIFY", meta: { correlationId: "c-9" }, payload: { n: 3 } })
    expect(client.frames).toEqual([
      { type: "ACK", meta: { timestamp: expect.any(Number), correlationId: "c-9" }, payload: { text: "inherit" } },
      { type: "ACK", meta: { timestamp: expect.any(Number), seq: 3 }, payload: { text: "waited" } }
    ])
    expect(results).toEqual([true])
  })

  it("reply options: meta, waitFor", async () => {
    const GetUser = rpc("GET_USER", { id: z.string() }, "USER", { name: z.string() })
    const router = createRouter()
    router.rpc(GetUser, async (ctx) => {
      await ctx.reply({ name: "Ada" }, { waitFor: "ack", meta: { region: "eu" } })
    })
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "GET_USER", meta: { correlationId: "q" }, payload: { id: "1" } })
    expect(client.frames).toEqual([
      { type: "USER", meta: { timestamp: expect.any(Number), region: "eu", correlationId: "q" }, payload: { name: "Ada" } }
    ])
  })

  it("ctx.error: custom codes, a missing message, details and options, each heard by onError", async () => {
    const Fail = message("FAIL", { kind: z.string() })
    const GetUser = rpc("GET_USER", { id: z.string() }, "USER", { name: z.string() })
    const heard: Array<string> = []
    const router = createRouter()
    router.onError((error, ctx) => {
      heard.push(`${(error as { code: string }).code}:${ctx?.type}`)
    })
    router.on(Fail, (ctx) => {
      if (ctx.payload.kind === "custom") ctx.error("QUOTA_EXCEEDED", "Monthly quota used up", { quota: 100 })
      if (ctx.payload.kind === "bare") ctx.error("NOT_FOUND")
      if (ctx.payload.kind === "options") {
        ctx.error("UNAVAILABLE", "Try later", undefined, { retryable: true, retryAfterMs: 500, meta: { node: "a" } })
      }
    })
    router.rpc(GetUser, (ctx) => ctx.error("NOT_FOUND", "No such user", { id: ctx.payload.id }, { retryable: false }))
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "FAIL", payload: { kind: "custom" } })
    await client.send({ type: "FAIL", payload: { kind: "bare" } })
    await client.send({ type: "FAIL", payload: { kind: "options" } })
    await client.send({ type: "GET_USER", meta: { correlationId: "g" }, payload: { id: "9" } })
    expect(client.frames).toEqual([
      { type: "ERROR", meta: {}, payload: { code: "QUOTA_EXCEEDED", message: "Monthly quota used up", details: { quota: 100 } } },
      { type: "ERROR", meta: {}, payload: { code: "NOT_FOUND", message: "Not found" } },
      {
        type: "ERROR",
        meta: { node: "a" },
        payload: { code: "UNAVAILABLE", message: "Try later", retryable: true, retryAfterMs: 500 }
      },
      {
        type: "RPC_ERROR",
        meta: { correlationId: "g" },
        payload: { code: "NOT_FOUND", message: "No such user", details: { id: "9" }, retryable: false }
      }
    ])
    expect(heard).toEqual(["QUOTA_EXCEEDED:FAIL", "NOT_FOUND:FAIL", "UNAVAILABLE:FAIL", "NOT_FOUND:GET_USER"])
  })
})

describe("onError and refused frames", () => {
  const frames = [
    ["not JSON", "{nope", "INVALID_ARGUMENT"],
    ["no type", JSON.stringify({ payload: {} }), "INVALID_ARGUMENT"],
    ["an unknown type", JSON.stringify({ type: "NOPE" }), "UNIMPLEMENTED"],
    ["a frame over the size limit", JSON.stringify({ type: "ACK", payload: { text: "x".repeat(200) } }), "RESOURCE_EXHAUSTED"]
  ] as const

  it.each(frames)("tells onError about %s (no context), and sends the error frame", async (_what, frame, code) => {
    const heard: Array<{ error: unknown; ctx: unknown }> = []
    const router = createRouter({ limits: { maxPayloadBytes: 128 } })
    router.on(Ack, () => {})
    router.onError((error, ctx) => {
      heard.push({ error, ctx })
    })
    const client = await Testing.make(router, {}).connect()
    await client.send(frame)
    expect(codesOf(client.frames)).toEqual([code])
    expect(heard).toHaveLength(1)
    expect(heard[0]!.ctx).toBeUndefined()
    expect(heard[0]!.error).toBeInstanceOf(Error)
  })

  it.each(frames)("keeps the error frame for %s when onError returns false", async (_what, frame) => {
    const router = createRouter({ limits: { maxPayloadBytes: 128 } })
    router.on(Ack, (ctx) => ctx.send(Ack, { text: "still here" }))
    router.onError(() => false)
    const client = await Testing.make(router, {}).connect()
    await client.send(frame)
    await client.send({ type: "ACK", payload: { text: "after" } })
    expect(codesOf(client.frames)).toEqual(["ACK"])
  })

  it("returning false suppresses the INTERNAL frame of a throwing handler too", async () => {
    const router = createRouter()
    router.on(Ack, () => {
      throw new Error("kept on the server")
    })
    const errors: Array<string> = []
    router.onError((error) => {
      errors.push((error as Error).message)
      return false
    })
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "ACK", payload: { text: "x" } })
    expect(client.frames).toEqual([])
    expect(errors).toEqual(["kept on the server"])
  })
})
