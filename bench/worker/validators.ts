/**
 * The echo of the durable-ws contenders, once per validator: the same
 * promise handler (`ctx.send(EchoReply, ctx.payload)`), so an inbound
 * decode and an outbound encode per message, with the payload
 * `{ n: number, text: string }` defined in each validator. `none` is a
 * Standard Schema that accepts anything: durable-ws without validation.
 */
import { type } from "arktype"
import * as Schema from "effect/Schema"
import * as v from "valibot"
import { z } from "zod"
import type { PayloadInput } from "../../src/Message"
import { createRouter, message, WebSocketDurableObject } from "../../src/index"
import type { StandardSchemaV1 } from "../../src/index"
import { measured } from "./measured"

const accepted: StandardSchemaV1 = { "~standard": { version: 1, vendor: "bench", validate: (value) => ({ value }) } }

const echoObject = (payload: PayloadInput) => {
  const Echo = message("ECHO", payload)
  const EchoReply = message("ECHO_REPLY", payload)
  const router = createRouter().on(Echo, async (ctx) => ctx.send(EchoReply, ctx.payload as never))
  return measured(WebSocketDurableObject(router, {}))
}

export class NoValidation extends echoObject(accepted) {}
export class EffectValidation extends echoObject({ n: Schema.Number, text: Schema.String }) {}
export class ZodValidation extends echoObject({ n: z.number(), text: z.string() }) {}
export class ZodObjectValidation extends echoObject(z.object({ n: z.number(), text: z.string() })) {}
export class ValibotValidation extends echoObject({ n: v.number(), text: v.string() }) {}
export class ValibotObjectValidation extends echoObject(v.object({ n: v.number(), text: v.string() })) {}
export class ArktypeValidation extends echoObject({ n: type("number"), text: type("string") }) {}
export class ArktypeObjectValidation extends echoObject(type({ n: "number", text: "string" })) {}

/** URL segment → binding, in the order the report lists them. */
export const validators = {
  "validator-none": "V_NONE",
  "validator-effect": "V_EFFECT",
  "validator-zod": "V_ZOD",
  "validator-zod-object": "V_ZOD_OBJECT",
  "validator-valibot": "V_VALIBOT",
  "validator-valibot-object": "V_VALIBOT_OBJECT",
  "validator-arktype": "V_ARKTYPE",
  "validator-arktype-object": "V_ARKTYPE_OBJECT"
} as const

export type Validator = keyof typeof validators
