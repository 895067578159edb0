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

/** The same echo made once with `Effect.fnUntraced`. */
export const effectEchoOnce = Effect.fnUntraced(function*(ctx: EchoContext) {
  const connection = yield* Connection
  yield* connection.send(EchoReply, ctx.payload)
})
