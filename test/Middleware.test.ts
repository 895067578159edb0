import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { describe, expect, it } from "vitest"
import type { Router } from "../src/index"
import { createRouter, message, PubSub, rpc, WsError } from "../src/index"
import * as Testing from "../src/Testing"
import { captureConsole } from "./helpers/console"

const Ping = message("PING", { text: Schema.String })
const Pong = message("PONG", { reply: Schema.String })

/** Under a 30 ms deadline: a HANG that never ends, then a PING; what the client got, errors by code. */
const hangThenPing = async (router: Router) => {
  const client = await Testing.make(router, { handlerTimeoutMs: 30 }).connect()
  await client.send({ type: "HANG" })
  await client.send({ type: "PING", payload: { text: "after" } })
  return client.frames.map((f) => f.type === "ERROR" ? (f.payload as { code: string }).code : f.type)
}

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
    expect(await hangThenPing(router)).toEqual(["DEADLINE_EXCEEDED", "PONG"])
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

describe("middleware in place: what each layer hands the next", () => {
  class Greeting extends Context.Service<Greeting, { readonly text: string }>()("test/Greeting") {}
  const layer = Layer.succeed(Greeting, Greeting.of({ text: "from the layer" }))
  const greet = (ctx: { readonly send: (message: typeof Pong, payload: { reply: string }) => unknown }) =>
    Effect.gen(function*() {
      const greeting = yield* Greeting
      // A step of the handler's own, so that it goes on on a fiber.
      yield* Effect.sync(() => ctx.send(Pong, { reply: greeting.text }))
    })
  const fromMiddleware = Greeting.of({ text: "from the middleware" })
  const replies = async (router: Router<{}, Greeting>) => {
    const client = await Testing.make(router, { layer }).connect()
    await client.send({ type: "PING", payload: { text: "x" } })
    await client.send({ type: "PING", payload: { text: "y" } })
    return client.frames.map((f) => f.type === "PONG" ? (f.payload as { reply: string }).reply : f.type)
  }

  it("a service an Effect middleware provides around next() reaches the handler, however next() is called", async () => {
    const direct = createRouter<{}, Greeting>()
      .use((_ctx, next) => Effect.promise(next).pipe(Effect.provideService(Greeting, fromMiddleware)))
      .on(Ping, greet)
    // Below a promise middleware.
    const belowPromise = createRouter<{}, Greeting>()
      .use(async (_ctx, next) => {
        await next()
      })
      .use((_ctx, next) => Effect.promise(next).pipe(Effect.provideService(Greeting, fromMiddleware)))
      .on(Ping, greet)
    // From a callback of the middleware's, after an await.
    const afterAwait = createRouter<{}, Greeting>()
      .use((_ctx, next) =>
        Effect.promise(async () => {
          await Promise.resolve()
          await next()
        }).pipe(Effect.provideService(Greeting, fromMiddleware))
      )
      .on(Ping, greet)
    const plain = createRouter<{}, Greeting>().use((_ctx, next) => next()).on(Ping, greet)
    expect(await replies(direct)).toEqual(["from the middleware", "from the middleware"])
    expect(await replies(belowPromise)).toEqual(["from the middleware", "from the middleware"])
    expect(await replies(afterAwait)).toEqual(["from the middleware", "from the middleware"])
    expect(await replies(plain)).toEqual(["from the layer", "from the layer"])
  })

  it("a chain of promise middleware starts no fiber for a promise handler", async () => {
    const fibers: Array<boolean> = []
    const router = createRouter()
      .use((_ctx, next) => {
        fibers.push(Fiber.getCurrent() !== undefined)
        return next()
      })
      .use(async (_ctx, next) => {
        await next()
        fibers.push(Fiber.getCurrent() !== undefined)
      })
      .on(Ping, (ctx) => {
        fibers.push(Fiber.getCurrent() !== undefined)
        ctx.send(Pong, { reply: ctx.payload.text })
      })
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "PING", payload: { text: "x" } })
    expect(client.frames.map((f) => [f.type, f.payload])).toEqual([["PONG", { reply: "x" }]])
    expect(fibers).toEqual([false, false, false])
  })

  it("failures travel up through next(): thrown, rejected, an Effect's typed failure, and a middleware's own", async () => {
    captureConsole("error")
    const seen: Array<string> = []
    const Fail = message("FAIL", { how: Schema.String })
    const router = createRouter()
      .use(async (_ctx, next) => {
        try {
          await next()
        } catch (error) {
          seen.push(error instanceof WsError ? error.code : String(error))
          throw error
        }
      })
      .use((ctx, next) => {
        if (ctx.type === "FAIL" && (ctx.payload as { how: string }).how === "middleware") throw new WsError({ code: "ABORTED", message: "m" })
        return next()
      })
      .on(Fail, (ctx) => {
        switch (ctx.payload.how) {
          case "throw":
            throw new WsError({ code: "NOT_FOUND", message: "t" })
          case "reject":
            return Promise.reject(new WsError({ code: "UNAVAILABLE", message: "r" }))
          default:
            return Effect.fail(new WsError({ code: "RESOURCE_EXHAUSTED", message: "e" }))
        }
      })
    const client = await Testing.make(router, {}).connect()
    for (const how of ["throw", "reject", "effect", "middleware"]) await client.send({ type: "FAIL", payload: { how } })
    const codes = client.frames.map((f) => (f.payload as { code: string }).code)
    expect(codes).toEqual(["NOT_FOUND", "UNAVAILABLE", "RESOURCE_EXHAUSTED", "ABORTED"])
    expect(seen).toEqual(codes)
  })

  it("next() called twice runs the rest once, and a slow middleware keeps the connection's order", async () => {
    let handled = 0
    const router = createRouter()
      .use(async (ctx, next) => {
        // The first message waits longest: the second must still be answered after it.
        await new Promise((resolve) => setTimeout(resolve, ctx.payload !== undefined && (ctx.payload as { text: string }).text === "a" ? 20 : 0))
        await Promise.all([next(), next()])
      })
      .on(Ping, (ctx) => {
        handled++
        ctx.send(Pong, { reply: ctx.payload.text })
      })
    const client = await Testing.make(router, {}).connect()
    await Promise.all([client.send({ type: "PING", payload: { text: "a" } }), client.send({ type: "PING", payload: { text: "b" } })])
    expect(client.frames.map((f) => (f.payload as { reply: string }).reply)).toEqual(["a", "b"])
    expect(handled).toBe(2)
  })
})

describe("middleware under handlerTimeoutMs", () => {
  it("interrupts every Effect layer and the Effect handler at the deadline, and the next frame goes on", async () => {
    const interrupted: Array<string> = []
    const Hang = message("HANG")
    const router = createRouter()
      .use(async (_ctx, next) => {
        await next()
      })
      .use((_ctx, next) =>
        Effect.promise(next).pipe(Effect.onInterrupt(() => Effect.sync(() => void interrupted.push("middleware"))))
      )
      .on(Hang, () => Effect.never.pipe(Effect.onInterrupt(() => Effect.sync(() => void interrupted.push("handler")))))
      .on(Ping, (ctx) => ctx.send(Pong, { reply: ctx.payload.text }))
    expect(await hangThenPing(router)).toEqual(["DEADLINE_EXCEEDED", "PONG"])
    expect([...interrupted].sort()).toEqual(["handler", "middleware"])
  })

  it("a chain done in time is answered as usual, and no deadline error follows it", async () => {
    const router = createRouter()
      .use((_ctx, next) => Effect.promise(next))
      .on(Ping, (ctx) =>
        Effect.sleep(5).pipe(Effect.andThen(Effect.sync(() => ctx.send(Pong, { reply: ctx.payload.text })))))
    const client = await Testing.make(router, { handlerTimeoutMs: 40 }).connect()
    await client.send({ type: "PING", payload: { text: "in time" } })
    await new Promise((resolve) => setTimeout(resolve, 80))
    expect(client.frames.map((f) => [f.type, f.payload])).toEqual([["PONG", { reply: "in time" }]])
  })
})
