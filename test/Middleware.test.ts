import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { describe, expect, it } from "vitest"
import { createRouter, message, PubSub, rpc, WsError } from "../src/index"
import * as Testing from "../src/Testing"
import { captureConsole } from "./helpers/console"

const Ping = message("PING", { text: Schema.String })
const Pong = message("PONG", { reply: Schema.String })

describe("middleware (driven without a Durable Object)", () => {
  it("runs middleware in registration order around the handler", async () => {
    const trace: Array<string> = []
    const router = createRouter()
      .use(async (_ctx, next) => {
        trace.push("a:before")
        await next()
        trace.push("a:after")
      })
      .use((ctx, next) =>
        Effect.gen(function*() {
          trace.push(`b:${ctx.type}`)
          yield* Effect.promise(next)
          trace.push("b:after")
        })
      )
      .on(Ping, (ctx) => {
        trace.push("handler")
        ctx.send(Pong, { reply: ctx.payload.text })
      })
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "PING", payload: { text: "x" } })
    expect(trace).toEqual(["a:before", "b:PING", "handler", "b:after", "a:after"])
    expect(client.frames.map((f) => f.type)).toEqual(["PONG"])
  })

  it("short-circuits when next is not called", async () => {
    let handled = false
    const router = createRouter<{ role?: string }>()
      .use((ctx, next) => {
        if (ctx.data.role !== "admin") return ctx.error("PERMISSION_DENIED", "admins only")
        return next()
      })
      .on(Ping, () => {
        handled = true
      })
    const runtime = Testing.make(router, {})
    const guest = await runtime.connect({ role: "guest" })
    await guest.send({ type: "PING", payload: { text: "x" } })
    expect(handled).toBe(false)
    expect(guest.frames).toEqual([{ type: "ERROR", meta: {}, payload: { code: "PERMISSION_DENIED", message: "admins only" } }])
    const admin = await runtime.connect({ role: "admin" })
    await admin.send({ type: "PING", payload: { text: "x" } })
    expect(handled).toBe(true)
  })

  it("lets a middleware see and translate a handler's failure", async () => {
    const router = createRouter()
      .use(async (_ctx, next) => {
        try {
          await next()
        } catch {
          throw new WsError({ code: "UNAVAILABLE", message: "try later" })
        }
      })
      .on(Ping, () => {
        throw new Error("boom")
      })
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "PING", payload: { text: "x" } })
    expect(client.frames).toEqual([{ type: "ERROR", meta: {}, payload: { code: "UNAVAILABLE", message: "try later" } }])
  })

  it("does not lose the failure of a handler a middleware did not await", async () => {
    const router = createRouter()
      .use((_ctx, next) => {
        void next().catch(() => {})
      })
      .on(Ping, async () => {
        await new Promise((r) => setTimeout(r, 5))
        throw new WsError({ code: "ABORTED", message: "late" })
      })
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "PING", payload: { text: "x" } })
    expect(client.frames).toEqual([{ type: "ERROR", meta: {}, payload: { code: "ABORTED", message: "late" } }])
  })

  it("runs lifecycle hooks on test connections", async () => {
    const events: Array<string> = []
    const router = createRouter()
      .onOpen((ctx) => void events.push(`open:${ctx.clientId.length}`))
      .onClose((ctx) => void events.push(`close:${ctx.code}:${ctx.reason}`))
    const client = await Testing.make(router, {}).connect()
    await client.close(4000, "done")
    expect(events).toEqual(["open:36", "close:4000:done"])
  })

  it("answers DEADLINE_EXCEEDED when a handler runs past handlerTimeoutMs, and goes on", async () => {
    const Hang = message("HANG")
    const router = createRouter()
      .on(Hang, () => new Promise<void>(() => {}))
      .on(Ping, (ctx) => ctx.send(Pong, { reply: ctx.payload.text }))
    const client = await Testing.make(router, { handlerTimeoutMs: 30 }).connect()
    await client.send({ type: "HANG" })
    await client.send({ type: "PING", payload: { text: "after" } })
    expect(client.frames.map((f) => f.type === "ERROR" ? (f.payload as { code: string }).code : f.type)).toEqual([
      "DEADLINE_EXCEEDED",
      "PONG"
    ])
  })

  it("does not trust look-alike errors: only real WsError instances choose the code", async () => {
    const errors = captureConsole("error")
    const router = createRouter().on(Ping, () => {
      throw Object.assign(new Error("secret"), { _tag: "WsError", code: "NOT_FOUND" })
    })
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "PING", payload: { text: "x" } })
    expect(client.frames).toEqual([{ type: "ERROR", meta: {}, payload: { code: "INTERNAL", message: "Internal server error" } }])
    // With no onError hook, the original error goes to the log (and only there).
    expect(errors.lines()).toEqual(["durable-ws: handler failed Error: secret"])
  })

  it("answers an rpc request once: an error after the reply is not sent", async () => {
    const Ask = rpc("ASK", undefined, "ANSWER", { n: Schema.Number })
    const router = createRouter().rpc(Ask, (ctx) => {
      ctx.reply({ n: 1 })
      ctx.error("ABORTED", "too late")
      ctx.reply({ n: 2 })
    })
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "ASK", meta: { correlationId: "q" } })
    expect(client.frames.map((f) => [f.type, f.payload])).toEqual([["ANSWER", { n: 1 }]])
  })

  it("builds the router's layer with the instance's built-in services available to it", async () => {
    class Shouter extends Context.Service<Shouter, { readonly shout: (text: string) => Effect.Effect<void> }>()(
      "test/Shouter"
    ) {
      static readonly layer = Layer.effect(
        Shouter,
        Effect.gen(function*() {
          const pubsub = yield* PubSub
          return Shouter.of({ shout: (text) => Effect.asVoid(pubsub.publish("hall", Pong, { reply: text.toUpperCase() })) })
        })
      )
    }
    const Join = message("JOIN")
    const router = createRouter<{}, Shouter>()
      .on(Join, (ctx) => ctx.topics.subscribe("hall"))
      .on(Ping, (ctx) => Shouter.use((shouter) => shouter.shout(ctx.payload.text)))
    const client = await Testing.make(router, { layer: Shouter.layer }).connect()
    await client.send({ type: "JOIN" })
    await client.send({ type: "PING", payload: { text: "hey" } })
    expect(client.frames).toEqual([{ type: "PONG", payload: { reply: "HEY" } }])
  })
})
