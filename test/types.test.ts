/**
 * Type-level tests: `npm run typecheck` fails when an inferred type drifts or
 * an expected compile error disappears (`@ts-expect-error` becomes unused).
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { describe, expectTypeOf, it } from "vitest"
import type { Client } from "../src/Client"
import type { MessageContext, Payload, PublishResult } from "../src/index"
import type { ProgressOf } from "../src/Message"
import { Connection, createDurableObjectHandler, createRouter, message, PubSub, rpc } from "../src/index"

const Ping = message("PING", { text: Schema.String, count: Schema.optional(Schema.Number) })
const Pong = message("PONG", { reply: Schema.String })
const Bare = message("BARE")
const Tagged = message("TAGGED", Schema.Union([Schema.String, Schema.Number]))
const GetUser = rpc("GET_USER", { id: Schema.String }, "USER", { name: Schema.String })

class Clock extends Context.Service<Clock, { readonly now: Effect.Effect<number> }>()("test/Clock") {}
class Mailer extends Context.Service<Mailer, { readonly send: (to: string) => Effect.Effect<void> }>()("test/Mailer") {}
const ClockLive = Layer.succeed(Clock, Clock.of({ now: Effect.sync(() => 0) }))

declare const state: DurableObjectState

describe("type inference", () => {
  it("infers payload types from fields, schemas and absent payloads", () => {
    expectTypeOf<Payload<typeof Ping>>().toEqualTypeOf<{ readonly text: string; readonly count?: number | undefined }>()
    expectTypeOf<Payload<typeof Bare>>().toBeUndefined()
    expectTypeOf<Payload<typeof Tagged>>().toEqualTypeOf<string | number>()
    expectTypeOf(Ping.type).toEqualTypeOf<"PING">()
    expectTypeOf<Payload<typeof GetUser.response>>().toEqualTypeOf<{ readonly name: string }>()
  })

  it("types ctx in handlers, send, reply and connection data", () => {
    createRouter<{ userId: string }>()
      .on(Ping, (ctx) => {
        expectTypeOf(ctx.payload.text).toEqualTypeOf<string>()
        expectTypeOf(ctx.type).toEqualTypeOf<"PING">()
        expectTypeOf(ctx.data.userId).toEqualTypeOf<string>()
        expectTypeOf(ctx.data.clientId).toEqualTypeOf<string>()
        ctx.send(Pong, { reply: "ok" })
        ctx.send(Bare)
        // @ts-expect-error reply must be a string
        ctx.send(Pong, { reply: 1 })
        // @ts-expect-error the payload is required
        ctx.send(Pong)
        // @ts-expect-error BARE takes no payload
        ctx.send(Bare, { x: 1 })
        // @ts-expect-error assignData only takes known connection data
        ctx.assignData({ userId: 1 })
        expectTypeOf(ctx.publish("t", Pong, { reply: "x" })).toEqualTypeOf<Promise<PublishResult>>()
      })
      .rpc(GetUser, (ctx) => {
        ctx.reply({ name: ctx.payload.id })
        // @ts-expect-error the response has a name
        ctx.reply({ id: "x" })
      })
      .use((ctx, next) => {
        expectTypeOf(ctx).toExtend<MessageContext>()
        return next()
      })
  })

  it("lets Effect handlers use the built-in services", () => {
    createRouter().on(Ping, (ctx) =>
      Effect.gen(function*() {
        const pubsub = yield* PubSub
        const connection = yield* Connection
        yield* pubsub.publish("room", Pong, { reply: ctx.payload.text })
        yield* connection.send(Pong, { reply: "direct" })
      }))
    createRouter().on(
      Ping,
      Effect.fn(function*(ctx) {
        expectTypeOf(ctx.payload.text).toEqualTypeOf<string>()
        const pubsub = yield* PubSub
        yield* pubsub.publish("room", Pong, { reply: ctx.payload.text })
      })
    )
  })

  it("refuses Effect handlers that need services the router does not declare", () => {
    createRouter().on(
      Ping,
      // @ts-expect-error Clock is not declared on the router
      () => Clock.use((clock) => clock.now)
    )
    createRouter<{}, Clock>().on(Ping, () => Clock.use((clock) => clock.now))
  })

  it("requires a layer that provides the declared services", () => {
    // Only compiled, never run: there is no DurableObjectState outside an object.
    const compileOnly = () => {
      const router = createRouter<{}, Clock>()
      createDurableObjectHandler(router, { state, layer: ClockLive })
      // @ts-expect-error the layer is required when the router declares services
      createDurableObjectHandler(router, { state })
      const both = createRouter<{}, Clock | Mailer>()
      // @ts-expect-error ClockLive does not provide Mailer
      createDurableObjectHandler(both, { state, layer: ClockLive })
      createDurableObjectHandler(createRouter(), { state })
    }
    expectTypeOf(compileOnly).toBeFunction()
  })

  it("types ctx.progress by the rpc's progress schema; an rpc without one sends (and its caller hears) unknown", () => {
    const Export = rpc("EXPORT", undefined, "EXPORTED", { url: Schema.String }, { progress: { done: Schema.Number } })
    const Plain = rpc("PLAIN", undefined, "PLAINED", undefined, {})
    expectTypeOf<ProgressOf<typeof Export>>().toEqualTypeOf<{ readonly done: number }>()
    expectTypeOf<ProgressOf<typeof GetUser>>().toBeUnknown()
    expectTypeOf<ProgressOf<typeof Plain>>().toBeUnknown()
    createRouter()
      .rpc(Export, (ctx) => {
        ctx.progress({ done: 1 })
        // @ts-expect-error done is a number
        ctx.progress({ done: "half" })
        // @ts-expect-error the progress payload is required
        ctx.progress()
        ctx.reply({ url: "u" })
      })
      .rpc(GetUser, (ctx) => {
        // GET_USER declares no progress: WS-Kit's untyped ctx.progress
        expectTypeOf(ctx.progress).parameter(0).toBeUnknown()
        ctx.progress({ done: 1 })
        ctx.reply({ name: "n" })
      })
    const compileOnly = (client: Client) => {
      void client.request(Export, undefined, {
        onProgress: (progress) => expectTypeOf(progress).toEqualTypeOf<{ readonly done: number }>()
      })
      void client.request(GetUser, { id: "7" }, {
        // @ts-expect-error GET_USER's progress is unknown: a listener must not assume its shape
        onProgress: (progress: { done: number }) => progress
      })
    }
    expectTypeOf(compileOnly).toBeFunction()
  })
})
