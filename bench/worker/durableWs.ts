import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Connection, createRouter, message, PubSub, rpc, WebSocketDurableObject } from "../../src/index"
import { Echo, EchoFn, EchoGenerator, effectEcho, effectEchoOnce, EchoReply, generatorEcho, promiseEcho } from "./echo"

const Subscribe = message("SUBSCRIBE", { topic: Schema.String })
const Subscribed = message("SUBSCRIBED")
const Publish = message("PUBLISH", { topic: Schema.String, n: Schema.Number, text: Schema.String })
const News = message("NEWS", { n: Schema.Number, text: Schema.String })
const EchoRpc = rpc("ECHO_RPC", { n: Schema.Number, text: Schema.String }, "ECHO_RPC_REPLY", { n: Schema.Number, text: Schema.String })

// Fan-out needs the subscribers plus the publisher in one object; the admission storm (admission.mjs) opens 3000.
const options = { maxConnections: 5000 }

/** durable-ws, promise facade: async handlers on `ctx`. `ECHO_GENERATOR` is the echo plus a generator made per message. */
const promiseRouter = createRouter()
  .on(Echo, promiseEcho)
  .on(EchoGenerator, generatorEcho)
  .on(Subscribe, async (ctx) => {
    await ctx.topics.subscribe(ctx.payload.topic)
    ctx.send(Subscribed)
  })
  .on(Publish, async (ctx) => {
    await ctx.publish(ctx.payload.topic, News, { n: ctx.payload.n, text: ctx.payload.text })
  })
  .rpc(EchoRpc, async (ctx) => ctx.reply(ctx.payload))

export const PromiseHandlers = WebSocketDurableObject(promiseRouter, options)

/** The promise contender with resumable delivery on: every publish is logged in SQLite first. */
// The resume rounds resume one session back to back: the resume rate limit is raised out of their way.
export const RecoveringHandlers = WebSocketDurableObject(promiseRouter, {
  ...options,
  recovery: { resumeRate: { burst: 100 } }
})

/**
 * durable-ws, Effect-native: handlers are Effects using the built-in
 * services. `ECHO` builds its generator per message, the common shape;
 * `ECHO_FN` is the same handler made once with `Effect.fnUntraced`.
 */
const effectRouter = createRouter()
  .on(Echo, effectEcho)
  .on(EchoFn, effectEchoOnce)
  .on(Subscribe, (ctx) =>
    Effect.gen(function*() {
      const pubsub = yield* PubSub
      const connection = yield* Connection
      yield* pubsub.subscribe(ctx.payload.topic)
      yield* connection.send(Subscribed)
    }))
  .on(Publish, (ctx) =>
    Effect.gen(function*() {
      const pubsub = yield* PubSub
      yield* pubsub.publish(ctx.payload.topic, News, { n: ctx.payload.n, text: ctx.payload.text })
    }))

export const EffectHandlers = WebSocketDurableObject(effectRouter, options)
