/**
 * The message path in Node: one in-memory instance (what `Testing.make`
 * builds) whose socket sends nothing, fed the same echo frame again and
 * again, next to a hand-written raw echo (parse, build the reply, send).
 * Prints the CPU time per message of each handler shape, median over
 * interleaved rounds, and the ratios the workerd bench has targets for.
 *
 * It prices the engine's JavaScript without workerd: precise to a few
 * percent in seconds, where the workerd bench's clock counts whole
 * milliseconds. Its figures are not the targets (`npm run bench` is); run
 * it under `node --cpu-prof` to see where a change's time goes.
 */
import * as Effect from "effect/Effect"
import { message } from "../../src/Message"
import { PubSub } from "../../src/PubSub"
import { createRouter } from "../../src/Router"
import { admit, isRefusal } from "../../src/internal/server/admission"
import type { Socket } from "../../src/internal/server/data"
import { Instance } from "../../src/internal/server/instance"
import { resolveOptions } from "../../src/internal/server/options"
import { memoryRegistry } from "../../src/internal/server/registry"
import { tablesOf } from "../../src/internal/server/routes"
import * as Sockets from "../../src/internal/server/sockets"
import { echoFields, EchoReply, effectEcho, effectEchoOnce, generatorEcho, promiseEcho } from "../worker/echo"
import type { InboundFrame } from "../worker/protocol"
import { echoReply } from "../worker/protocol"

const EchoPromise = message("ECHO_PROMISE", echoFields)
const EchoSync = message("ECHO_SYNC", echoFields)
const EchoGen = message("ECHO_GEN", echoFields)
const EchoOnce = message("ECHO_ONCE", echoFields)
const EchoGenerator = message("ECHO_GENERATOR", echoFields)
const EchoPublish = message("ECHO_PUBLISH", echoFields)
const EchoPublishGen = message("ECHO_PUBLISH_GEN", echoFields)
const Join = message("JOIN")

// The handlers of the workerd bench (bench/worker/echo.ts), one route each, and a plain function.
const router = createRouter()
  .on(EchoPromise, promiseEcho)
  .on(EchoSync, (ctx) => ctx.send(EchoReply, ctx.payload))
  .on(EchoGen, effectEcho)
  .on(EchoOnce, effectEchoOnce)
  .on(EchoGenerator, generatorEcho)
  // The echo published to a topic whose one subscriber is the sender, from each face.
  .on(Join, (ctx) => ctx.topics.subscribe("echo"))
  .on(EchoPublish, async (ctx) => {
    await ctx.publish("echo", EchoReply, ctx.payload)
  })
  .on(EchoPublishGen, (ctx) =>
    Effect.gen(function*() {
      const pubsub = yield* PubSub
      yield* pubsub.publish("echo", EchoReply, ctx.payload)
    }))

// The promise echo behind a middleware that only calls `next`, under a handler deadline, and both;
// the Effect echo under a deadline.
const withMiddleware = createRouter().use((_ctx, next) => next()).on(EchoPromise, promiseEcho)
const withDeadline = createRouter().on(EchoPromise, promiseEcho).on(EchoGen, effectEcho)

const messages = Number(process.env["HANDLER_MESSAGES"] ?? 200_000)
const rounds = Number(process.env["HANDLER_ROUNDS"] ?? 7)
/** `HANDLER_CASES=gen` runs only the cases whose name matches (with raw and promise, which the ratios need): for a profile of one. */
const only = process.env["HANDLER_CASES"] === undefined ? undefined : new RegExp(process.env["HANDLER_CASES"], "i")

// The bench's echo frame (bench/worker/protocol.ts), under each route's type.
const frameOf = (type: string) => JSON.stringify({ type, payload: { n: 1, text: "hello, bench" } })

let sent = 0
const socket: Socket = { readyState: 1, send: () => void sent++, close: () => {} }

/** An in-memory instance of `routes` with one connection on `socket`. */
const instanceOf = async (routes: typeof router, options: { readonly handlerTimeoutMs?: number } = {}) => {
  const tables = tablesOf(routes)
  const registry = memoryRegistry()
  const instance = new Instance(tables, registry, resolveOptions(options, false, tables.limits))
  const connection = await admit(instance, { authenticated: undefined, resourceId: undefined, resume: null }, () => {
    registry.add!(socket)
    return socket
  })
  if (isRefusal(connection)) throw connection
  return instance
}

const main = async () => {
  const instance = await instanceOf(router)
  await Sockets.message(instance, socket, JSON.stringify({ type: "JOIN" }))
  const middlewareInstance = await instanceOf(withMiddleware as unknown as typeof router)
  const deadlineInstance = await instanceOf(withDeadline as unknown as typeof router, { handlerTimeoutMs: 10_000 })
  const bothInstance = await instanceOf(withMiddleware as unknown as typeof router, { handlerTimeoutMs: 10_000 })

  const rawFrame = frameOf("ECHO")
  // The raw contender's echo (bench/worker/raw.ts): parse, then the same reply durable-ws sends.
  const raw = () => {
    const frame = JSON.parse(rawFrame) as InboundFrame
    socket.send(echoReply(frame.payload))
  }
  const viaDws = (type: string, on = instance) => {
    const frame = frameOf(type)
    return () => Sockets.message(on, socket, frame)
  }
  const all: ReadonlyArray<readonly [string, () => unknown]> = [
    ["raw", raw],
    ["promise", viaDws("ECHO_PROMISE")],
    ["sync", viaDws("ECHO_SYNC")],
    ["Effect.gen", viaDws("ECHO_GEN")],
    ["Effect.fnUntraced", viaDws("ECHO_ONCE")],
    ["promise + a generator per message", viaDws("ECHO_GENERATOR")],
    ["promise, published to itself", viaDws("ECHO_PUBLISH")],
    ["Effect.gen, published to itself", viaDws("ECHO_PUBLISH_GEN")],
    ["promise, a middleware", viaDws("ECHO_PROMISE", middlewareInstance)],
    ["promise, a deadline", viaDws("ECHO_PROMISE", deadlineInstance)],
    ["promise, a middleware and a deadline", viaDws("ECHO_PROMISE", bothInstance)],
    ["Effect.gen, a deadline", viaDws("ECHO_GEN", deadlineInstance)]
  ]
  const cases = all.filter(([name]) => only === undefined || name === "raw" || name === "promise" || only.test(name))
  const samples = new Map<string, Array<number>>(cases.map(([name]) => [name, []]))
  // Round 0 warms the JIT and is not kept; each round rotates which case goes first.
  for (let round = 0; round <= rounds; round++) {
    for (let i = 0; i < cases.length; i++) {
      const [name, run] = cases[(i + round) % cases.length]!
      const before = process.cpuUsage()
      for (let m = 0; m < messages; m++) await run()
      const used = process.cpuUsage(before)
      if (round > 0) samples.get(name)!.push((used.user + used.system) / messages)
    }
  }
  if (sent !== messages * cases.length * (rounds + 1)) throw new Error(`${sent} replies sent, expected one per message`)

  const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
  const paired = (a: string, b: string) => median(samples.get(a)!.map((value, i) => value / samples.get(b)![i]!))
  console.log(`Handler CPU per echo message in Node ${process.version}, ${rounds} rounds of ${messages} messages (µs, median):`)
  console.log("")
  console.log("| handler | µs | ÷ raw | ÷ promise |")
  console.log("|---|--:|--:|--:|")
  for (const [name] of cases) {
    const cells = [median(samples.get(name)!).toFixed(3), paired(name, "raw").toFixed(2) + "×", name === "raw" ? "-" : paired(name, "promise").toFixed(2) + "×"]
    console.log(`| ${name} | ${cells.join(" | ")} |`)
  }
  console.log("")
  console.log("Ratios are medians of per-round ratios. These are Node's figures, not the targets: `npm run bench` measures those in workerd.")
}

await main()
