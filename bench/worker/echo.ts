/**
 * The echo every durable-ws contender answers, one definition for the
 * workerd bench (`durableWs.ts`) and the Node harness (`handler/harness.ts`),
 * so both price the same handlers. It imports no `cloudflare:` module.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Connection } from "../../src/Connection"
import type { MessageContext } from "../../src/HandlerContext"
import type { MessageSchema } from "../../src/Message"
import { message } from "../../src/Message"

export const echoFields = { n: Schema.Number, text: Schema.String }
export const Echo = message("ECHO", echoFields)
export const EchoFn = message("ECHO_FN", echoFields)
export const EchoGenerator = message("ECHO_GENERATOR", echoFields)
export const EchoReply = message("ECHO_REPLY", echoFields)

/** The context of any echo route, whatever its type: the handlers serve several. */
type EchoContext = MessageContext<MessageSchema<string, Schema.Struct<typeof echoFields>>>

/** The promise facade's echo. */
export const promiseEcho = async (ctx: EchoContext) => ctx.send(EchoReply, ctx.payload)

/** The Effect echo as the README writes it: a generator made per message. */
export const effectEcho = (ctx: EchoContext) =>
  Effect.gen(function*() {
    const connection = yield* Connection
    yield* connection.send(EchoReply, ctx.payload)
  })

const generatorNext = (Object.getPrototypeOf(function*() {}.prototype) as Generator).next

/**
 * V8's part of the Effect echo: the promise echo plus what the `Effect.gen`
 * shape costs with no runtime at all, a generator function made for the
 * message (it closes over `ctx`) and run to its end, its two steps given
 * back as their values, through the prototype's own `next` as durable-ws
 * steps one. Its cost over the promise echo is the floor of
 * `Effect.gen` ÷ promise that no Effect runtime can remove.
 */
export const generatorEcho = async (ctx: EchoContext) => {
  const generator = (function*() {
    const payload: unknown = yield ctx
    yield payload
  })()
  let step = generatorNext.call(generator, undefined)
  step = generatorNext.call(generator, step.value)
  generatorNext.call(generator, step.value)
  return ctx.send(EchoReply, ctx.payload)
}

/** The same echo made once with `Effect.fnUntraced`. */
export const effectEchoOnce = Effect.fnUntraced(function*(ctx: EchoContext) {
  const connection = yield* Connection
  yield* connection.send(EchoReply, ctx.payload)
})
