/**
 * Type-level tests for Standard Schema payloads: `npm run typecheck` fails
 * when an inferred type drifts or an expected compile error disappears.
 */
import { type } from "arktype"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as v from "valibot"
import { describe, expectTypeOf, it } from "vitest"
import { z } from "zod"
import { createClient } from "../src/Client"
import type { OutgoingPayload, Payload, PublishResult, StandardSchemaV1 } from "../src/index"
import { Connection, createRouter, message, PubSub, rpc } from "../src/index"

type User = { readonly name: string; readonly age: number }

const ZodUser = message("ZOD_USER", { name: z.string(), age: z.number() })
const ValibotUser = message("VALIBOT_USER", { name: v.string(), age: v.number() })
const ArkUser = message("ARK_USER", { name: type("string"), age: type("number") })
const MixedUser = message("MIXED_USER", { name: z.string(), age: Schema.Number })
const ZodWhole = message("ZOD_WHOLE", z.object({ name: z.string(), age: z.number() }))
const ValibotWhole = message("VALIBOT_WHOLE", v.object({ name: v.string(), age: v.number() }))
const ArkWhole = message("ARK_WHOLE", type({ name: "string", age: "number" }))
const Optional = message("OPTIONAL", {
  zod: z.string().optional(),
  valibot: v.optional(v.string()),
  effect: Schema.optional(Schema.Number),
  lang: z.string().default("en")
})
const Lengths = message("LENGTHS", { word: z.string().transform((word) => word.length), at: Schema.DateFromMillis })
const GetUser = rpc("GET_USER", { id: z.string() }, "USER", { name: v.string(), age: type("number") })

describe("Standard Schema payload types", () => {
  it("infers payloads from zod, valibot and arktype, as fields or whole", () => {
    expectTypeOf<Payload<typeof ZodUser>>().toEqualTypeOf<User>()
    expectTypeOf<Payload<typeof ValibotUser>>().toEqualTypeOf<User>()
    expectTypeOf<Payload<typeof ArkUser>>().toEqualTypeOf<User>()
    expectTypeOf<Payload<typeof MixedUser>>().toEqualTypeOf<User>()
    expectTypeOf<Payload<typeof ZodWhole>>().toEqualTypeOf<{ name: string; age: number }>()
    expectTypeOf<Payload<typeof ValibotWhole>>().toEqualTypeOf<{ name: string; age: number }>()
    expectTypeOf<Payload<typeof ArkWhole>>().toEqualTypeOf<{ name: string; age: number }>()
    expectTypeOf<Payload<typeof GetUser.response>>().toEqualTypeOf<User>()
    expectTypeOf<Payload<typeof ZodWhole>>().toEqualTypeOf<StandardSchemaV1.InferOutput<typeof ZodWhole.schema>>()
  })

  it("makes fields that admit undefined optional keys; a default is optional going out only", () => {
    expectTypeOf<Payload<typeof Optional>>().toEqualTypeOf<{
      readonly zod?: string | undefined
      readonly valibot?: string | undefined
      readonly effect?: number | undefined
      readonly lang: string
    }>()
    expectTypeOf<OutgoingPayload<typeof Optional>>().toEqualTypeOf<{
      readonly zod?: string | undefined
      readonly valibot?: string | undefined
      readonly effect?: number | undefined
      readonly lang?: string | undefined
    }>()
  })

  it("handlers get the output of a transform; senders pass its input", () => {
    expectTypeOf<Payload<typeof Lengths>>().toEqualTypeOf<{ readonly word: number; readonly at: Date }>()
    expectTypeOf<OutgoingPayload<typeof Lengths>>().toEqualTypeOf<{ readonly word: string; readonly at: Date }>()
  })

  it("types ctx.payload, send, reply and publish in promise handlers", () => {
    createRouter()
      .on(ZodUser, (ctx) => {
        expectTypeOf(ctx.payload.name).toEqualTypeOf<string>()
        ctx.send(ValibotUser, { name: "Ada", age: 36 })
        ctx.send(ArkWhole, { name: "Ada", age: 36 })
        // @ts-expect-error age is a number
        ctx.send(ValibotUser, { name: "Ada", age: "36" })
        // @ts-expect-error name is required
        ctx.send(ArkUser, { age: 36 })
        ctx.send(Optional, {})
        expectTypeOf(ctx.publish("room", ZodWhole, { name: "Ada", age: 36 })).toEqualTypeOf<Promise<PublishResult>>()
        // @ts-expect-error the payload is required
        void ctx.publish("room", MixedUser)
      })
      .on(ValibotWhole, (ctx) => {
        expectTypeOf(ctx.payload).toEqualTypeOf<{ name: string; age: number }>()
      })
      .on(ArkUser, (ctx) => {
        expectTypeOf(ctx.payload.age).toEqualTypeOf<number>()
      })
      .on(Lengths, (ctx) => {
        expectTypeOf(ctx.payload.word).toEqualTypeOf<number>()
        ctx.send(Lengths, { word: "hello", at: new Date() })
      })
      .rpc(GetUser, (ctx) => {
        expectTypeOf(ctx.payload.id).toEqualTypeOf<string>()
        ctx.reply({ name: "Ada", age: 36 })
        // @ts-expect-error the response has an age
        ctx.reply({ name: "Ada" })
      })
  })

  it("types the Effect services' send and publish", () => {
    createRouter().on(MixedUser, (ctx) =>
      Effect.gen(function*() {
        expectTypeOf(ctx.payload).toEqualTypeOf<User>()
        const connection = yield* Connection
        const pubsub = yield* PubSub
        yield* connection.send(ZodUser, { name: ctx.payload.name, age: ctx.payload.age })
        yield* pubsub.publish("room", ArkUser, { name: "Ada", age: 36 })
        // @ts-expect-error age is a number
        yield* pubsub.publish("room", ArkUser, { name: "Ada", age: "36" })
      }))
  })

  it("types the client's on, send and request", () => {
    const compileOnly = async () => {
      const client = createClient({ url: "ws://localhost" })
      client.on(ValibotUser, (payload) => expectTypeOf(payload).toEqualTypeOf<User>())
      client.on(ZodWhole, (payload) => expectTypeOf(payload).toEqualTypeOf<{ name: string; age: number }>())
      client.send(ArkUser, { name: "Ada", age: 36 })
      // @ts-expect-error name is a string
      client.send(ZodUser, { name: 1, age: 36 })
      expectTypeOf(await client.request(GetUser, { id: "7" })).toEqualTypeOf<User>()
      // @ts-expect-error id is a string
      await client.request(GetUser, { id: 7 })
    }
    expectTypeOf(compileOnly).toBeFunction()
  })
})
