/**
 * How an Effect handler runs: in place while it only reads services and
 * sends, on a fiber from its first other step. Whichever way it ran, what
 * the client gets, in what order, and what `onError` hears are the same.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"
import * as Tracer from "effect/Tracer"
import { describe, expect, it } from "vitest"
import type { Router } from "../src/index"
import { Connection, createRouter, message, PubSub, WsError } from "../src/index"
import * as Testing from "../src/Testing"
import { captureConsole } from "./helpers/console"

const Ping = message("PING", { n: Schema.Number })
const Pong = message("PONG", { n: Schema.Number, step: Schema.String })

class Counter extends Context.Service<Counter, { readonly next: () => number }>()("test/Counter") {}

const payloads = (frames: ReadonlyArray<{ type: string; payload?: unknown }>) =>
  frames.map((frame) => frame.type === "PONG" ? frame.payload : frame)

describe("Effect handlers", () => {
  it("send, read services and return without a step that waits; the next frame follows in order", async () => {
    let counted = 0
    const router = createRouter<{}, Counter>().on(Ping, (ctx) =>
      Effect.gen(function*() {
        const connection = yield* Connection
        const counter = yield* Counter
        yield* connection.send(Pong, { n: ctx.payload.n, step: `first ${counter.next()}` })
        yield* Effect.void
        const value = yield* Effect.succeed("second")
        yield* connection.send(Pong, { n: ctx.payload.n, step: value })
      }))
    const client = await Testing.make(router, { layer: Layer.succeed(Counter, { next: () => ++counted }) }).connect()
    await client.send({ type: "PING", payload: { n: 1 } })
    await client.send({ type: "PING", payload: { n: 2 } })
    expect(payloads(client.frames)).toEqual([
      { n: 1, step: "first 1" },
      { n: 1, step: "second" },
      { n: 2, step: "first 2" },
      { n: 2, step: "second" }
    ])
  })

  it("go on on a fiber from the first step that waits, and the connection's next frame waits for them", async () => {
    const router = createRouter().on(Ping, (ctx) =>
      Effect.gen(function*() {
        const connection = yield* Connection
        yield* connection.send(Pong, { n: ctx.payload.n, step: "before" })
        if (ctx.payload.n === 1) yield* Effect.sleep(30)
        yield* connection.send(Pong, { n: ctx.payload.n, step: "after" })
      }))
    const client = await Testing.make(router, {}).connect()
    const first = client.send({ type: "PING", payload: { n: 1 } })
    const second = client.send({ type: "PING", payload: { n: 2 } })
    await Promise.all([first, second])
    expect(payloads(client.frames)).toEqual([
      { n: 1, step: "before" },
      { n: 1, step: "after" },
      { n: 2, step: "before" },
      { n: 2, step: "after" }
    ])
  })

  it("run a user's own steps on a fiber: Effect.sync and Effect.suspend see the current fiber", async () => {
    const seen: Array<string> = []
    const router = createRouter().on(Ping, (ctx) =>
      Effect.gen(function*() {
        const connection = yield* Connection
        yield* connection.send(Pong, { n: ctx.payload.n, step: "sent" })
        seen.push(yield* Effect.sync(() => Fiber.getCurrent() === undefined ? "sync: none" : "sync: fiber"))
        seen.push(yield* Effect.suspend(() => Effect.succeed(Fiber.getCurrent() === undefined ? "suspend: none" : "suspend: fiber")))
        seen.push(Fiber.getCurrent() === undefined ? "body: none" : "body: fiber")
      }))
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "PING", payload: { n: 1 } })
    expect(seen).toEqual(["sync: fiber", "suspend: fiber", "body: fiber"])
    expect(payloads(client.frames)).toEqual([{ n: 1, step: "sent" }])
  })

  it("that fail or throw after a send: the send, then the error; onError hears the original", async () => {
    const heard: Array<unknown> = []
    const boom = new Error("boom")
    const router = createRouter()
      .on(Ping, (ctx) =>
        Effect.gen(function*() {
          const connection = yield* Connection
          yield* connection.send(Pong, { n: ctx.payload.n, step: "sent" })
          if (ctx.payload.n === 1) return yield* Effect.fail(new WsError({ code: "NOT_FOUND", message: "no such room" }))
          throw boom
        }))
      .onError((error) => {
        heard.push(error)
      })
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "PING", payload: { n: 1 } })
    await client.send({ type: "PING", payload: { n: 2 } })
    expect(client.frames).toEqual([
      expect.objectContaining({ type: "PONG", payload: { n: 1, step: "sent" } }),
      { type: "ERROR", meta: {}, payload: { code: "NOT_FOUND", message: "no such room" } },
      expect.objectContaining({ type: "PONG", payload: { n: 2, step: "sent" } }),
      { type: "ERROR", meta: {}, payload: { code: "INTERNAL", message: "Internal server error" } }
    ])
    expect(heard).toHaveLength(2)
    expect(heard[0]).toMatchObject({ code: "NOT_FOUND" })
    expect(heard[1]).toBe(boom)
  })

  it("that read a service nobody provided fail as they did on a fiber", async () => {
    const heard: Array<unknown> = []
    const router = createRouter<{}, Counter>()
      .on(Ping, () =>
        Effect.gen(function*() {
          const counter = yield* Counter
          counter.next()
        }))
      .onError((error) => {
        heard.push(error)
      })
    // The type says the layer is needed; a router used without it must still fail cleanly.
    const client = await Testing.make(router as unknown as Router<{}, never>, {}).connect()
    await client.send({ type: "PING", payload: { n: 1 } })
    expect(client.frames).toEqual([{ type: "ERROR", meta: {}, payload: { code: "INTERNAL", message: "Internal server error" } }])
    expect(String(heard[0])).toContain("test/Counter")
  })

  it("that take many steps without waiting finish, every frame in order", async () => {
    const router = createRouter().on(Ping, (ctx) =>
      Effect.gen(function*() {
        const connection = yield* Connection
        for (let step = 0; step < 150; step++) {
          yield* Effect.void
          if (step % 50 === 0) yield* connection.send(Pong, { n: ctx.payload.n, step: String(step) })
        }
        return yield* connection.send(Pong, { n: ctx.payload.n, step: "done" })
      }))
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "PING", payload: { n: 7 } })
    expect(payloads(client.frames)).toEqual(["0", "50", "100", "done"].map((step) => ({ n: 7, step })))
  })

  /** How many times `observed` counts while a second echo runs (the first also waits for the layer to build). */
  const countedOnSecondEcho = async (layer: Layer.Layer<never>, observed: () => number) => {
    const router = createRouter().on(Ping, (ctx) =>
      Effect.gen(function*() {
        const connection = yield* Connection
        yield* connection.send(Pong, { n: ctx.payload.n, step: "echo" })
      }))
    const client = await Testing.make(router, { layer }).connect()
    await client.send({ type: "PING", payload: { n: 1 } })
    const before = observed()
    await client.send({ type: "PING", payload: { n: 2 } })
    expect(payloads(client.frames)).toEqual([{ n: 1, step: "echo" }, { n: 2, step: "echo" }])
    return observed() - before
  }

  it("run every step on a fiber under a tracer that wraps each step", async () => {
    let wrapped = 0
    const native = Context.get(Context.empty(), Tracer.Tracer)
    const tracer = Tracer.make({
      span: (options) => native.span(options),
      context: (primitive, fiber) => {
        wrapped++
        return primitive["~effect/Effect/evaluate"](fiber)
      }
    })
    expect(await countedOnSecondEcho(Layer.succeed(Tracer.Tracer, tracer), () => wrapped)).toBeGreaterThan(0)
  })

  it("run every step on a fiber when fiber metrics are on", async () => {
    let started = 0
    const metrics: Metric.FiberRuntimeMetricsService = {
      recordFiberStart: () => {
        started++
      },
      recordFiberEnd: () => {}
    }
    expect(await countedOnSecondEcho(Layer.succeed(Metric.FiberRuntimeMetrics, metrics), () => started)).toBeGreaterThan(0)
  })

  it("publish through the PubSub service: every subscriber gets it, excludeSelf leaves the sender out", async () => {
    const Join = message("JOIN", { topic: Schema.String })
    const Say = message("SAY", { topic: Schema.String, text: Schema.String, excludeSelf: Schema.Boolean })
    const Said = message("SAID", { text: Schema.String })
    const Done = message("DONE", { matched: Schema.Number })
    const router = createRouter()
      .on(Join, (ctx) =>
        Effect.gen(function*() {
          const pubsub = yield* PubSub
          yield* pubsub.subscribe(ctx.payload.topic)
        }))
      .on(Say, (ctx) =>
        Effect.gen(function*() {
          const pubsub = yield* PubSub
          const { topic, text, excludeSelf } = ctx.payload
          const result = yield* pubsub.publish(topic, Said, { text }, { excludeSelf })
          const connection = yield* Connection
          yield* connection.send(Done, { matched: result.ok ? result.matched : -1 })
        }))
    const runtime = Testing.make(router, {})
    const [a, b] = await Promise.all([runtime.connect(), runtime.connect()])
    for (const client of [a, b]) await client.send({ type: "JOIN", payload: { topic: "room" } })
    await a.send({ type: "SAY", payload: { topic: "room", text: "to all", excludeSelf: false } })
    await a.send({ type: "SAY", payload: { topic: "room", text: "to the others", excludeSelf: true } })
    const seen = (frames: ReadonlyArray<{ type: string; payload?: unknown }>) => frames.map((f) => [f.type, f.payload])
    expect(seen(a.frames)).toEqual([
      ["SAID", { text: "to all" }],
      ["DONE", { matched: 2 }],
      ["DONE", { matched: 1 }]
    ])
    expect(seen(b.frames)).toEqual([["SAID", { text: "to all" }], ["SAID", { text: "to the others" }]])
  })

  it("of every shape still run: a plain Effect, an Effect.fnUntraced, a piped one", async () => {
    const router = createRouter()
      .on(Ping, (ctx) =>
        ctx.payload.n === 1
          ? Effect.void
          : ctx.payload.n === 2
          ? Effect.flatMap(Connection, (c) => c.send(Pong, { n: 2, step: "piped" }))
          : Effect.fnUntraced(function*(n: number) {
            const connection = yield* Connection
            yield* connection.send(Pong, { n, step: "fn" })
          })(ctx.payload.n))
    const client = await Testing.make(router, {}).connect()
    for (const n of [1, 2, 3]) await client.send({ type: "PING", payload: { n } })
    expect(payloads(client.frames)).toEqual([{ n: 2, step: "piped" }, { n: 3, step: "fn" }])
  })
})

describe("the user's layer", () => {
  class Backend extends Context.Service<Backend, { readonly name: string }>()("test/Backend") {}

  const counting = createRouter<{}, Counter>().on(Ping, (ctx) =>
    Effect.gen(function*() {
      const counter = yield* Counter
      const connection = yield* Connection
      yield* connection.send(Pong, { n: ctx.payload.n, step: `count ${counter.next()}` })
    }))

  it("is built once for every connection, even for first messages that arrive together, and released by dispose", async () => {
    const events: Array<string> = []
    let counted = 0
    const layer = Layer.effect(
      Counter,
      Effect.acquireRelease(
        Effect.sync(() => {
          events.push("acquired")
          return { next: () => ++counted }
        }),
        () => Effect.sync(() => events.push("released"))
      )
    )
    const runtime = Testing.make(counting, { layer })
    const [a, b] = await Promise.all([runtime.connect(), runtime.connect()])
    await Promise.all([a.send({ type: "PING", payload: { n: 1 } }), b.send({ type: "PING", payload: { n: 2 } })])
    expect([...payloads(a.frames), ...payloads(b.frames)].map((p) => (p as { step: string }).step).sort())
      .toEqual(["count 1", "count 2"])
    expect(events).toEqual(["acquired"])
    await runtime.dispose()
    expect(events).toEqual(["acquired", "released"])
    await runtime.dispose()
    expect(events).toEqual(["acquired", "released"])
  })

  it("that fails to build fails no subscribe and no publish, which use none of its services", async () => {
    const Join = message("JOIN", { topic: Schema.String })
    const Say = message("SAY", { topic: Schema.String, text: Schema.String })
    const Said = message("SAID", { text: Schema.String })
    const router = createRouter()
      .on(Join, (ctx) => ctx.topics.subscribe(ctx.payload.topic))
      .on(Say, async (ctx) => {
        await ctx.publish(ctx.payload.topic, Said, { text: ctx.payload.text })
      })
    const layer = Layer.effect(Counter, Effect.fail(new Error("backend unreachable")))
    // An authorization hook puts a publish from a connection on the engine's Effect path; without one it sends at once.
    for (const authorizePublish of [undefined, () => Promise.resolve(true)]) {
      const runtime = Testing.make(router, authorizePublish === undefined ? { layer } : { layer, authorizePublish })
      const client = await runtime.connect()
      await client.send({ type: "JOIN", payload: { topic: "news" } })
      await client.send({ type: "SAY", payload: { topic: "news", text: "from a handler" } })
      await expect(runtime.publish("news", Said, { text: "from outside" })).resolves.toEqual({ ok: true, matched: 1 })
      expect(client.frames.map((f) => [f.type, f.payload])).toEqual([
        ["SAID", { text: "from a handler" }],
        ["SAID", { text: "from outside" }]
      ])
    }
  })

  it("that failed to build releases what it had acquired, answers UNAVAILABLE, and is built again on the next message", async () => {
    const events: Array<string> = []
    let attempts = 0
    const backend = Layer.effect(
      Backend,
      Effect.acquireRelease(
        Effect.sync(() => {
          events.push(`backend ${++attempts}`)
          return { name: "db" }
        }),
        () => Effect.sync(() => events.push(`backend ${attempts} released`))
      )
    )
    const counter = Layer.effect(
      Counter,
      Effect.gen(function*() {
        yield* Backend
        if (attempts === 1) return yield* Effect.fail(new Error("backend unreachable"))
        return { next: () => attempts }
      })
    )
    const errors = captureConsole("error")
    const runtime = Testing.make(counting, { layer: Layer.provide(counter, backend) })
    const client = await runtime.connect()
    await client.send({ type: "PING", payload: { n: 1 } })
    await client.send({ type: "PING", payload: { n: 2 } })
    expect(payloads(client.frames)).toEqual([
      { type: "ERROR", meta: {}, payload: { code: "UNAVAILABLE", message: "Service unavailable" } },
      { n: 2, step: "count 2" }
    ])
    expect(errors.lines()).toEqual(["durable-ws: services failed to build Error: backend unreachable"])
    expect(events).toEqual(["backend 1", "backend 1 released", "backend 2"])
    await runtime.dispose()
    expect(events).toEqual(["backend 1", "backend 1 released", "backend 2", "backend 2 released"])
  })
})
