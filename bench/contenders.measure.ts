/**
 * Echo throughput, publish fan-out and the first publish after a wake, for
 * the four contenders, measured in one workerd process, interleaved round by
 * round. Run with `npm run bench`; the method is in bench/README.md.
 */
import { env, evictDurableObject, runInDurableObject, SELF } from "cloudflare:test"
import { afterAll, describe, it } from "vitest"
import { record, renderReport } from "./lib/report"
import type { Results } from "./lib/report"
import type { BenchSocket } from "./lib/sockets"
import { expectFrames, open, openSubscribers } from "./lib/sockets"
import { rotated } from "./lib/stats"
import type { Contender } from "./worker/index"
import { contenders as bindings } from "./worker/index"
import type { Instrumented } from "./worker/measured"
import { echoFnFrame, echoFrame, echoGeneratorFrame, prefixes, publishFrame, rpcFrame, subscribeFrame, topic } from "./worker/protocol"

const quick = env.BENCH_QUICK === "1"

/**
 * `BENCH_PROFILE=<scenario name prefix>` (set by bench/profile.mjs) runs only
 * that scenario, between two idle pauses: workerd serves its inspector only
 * while the isolate is idle, so the profiler starts in the first pause and
 * stops in the second, once it reads `globalThis.benchScenarioDone`.
 */
const profiling = env.BENCH_PROFILE ?? ""
const pause = () => new Promise((r) => setTimeout(r, 3000))
const scenario = (name: string, body: () => Promise<void>) =>
  it.skipIf(profiling !== "" && !name.startsWith(profiling))(name, async () => {
    if (profiling === "") return body()
    await pause()
    await body()
    ;(globalThis as { benchScenarioDone?: boolean }).benchScenarioDone = true
    await pause()
  })

/** Sizes and rounds; `BENCH_QUICK=1` shrinks them to a smoke run. */
const plan = {
  warmupRounds: 1,
  echo: { clients: 10, messagesPerClient: quick ? 20 : 250, rounds: quick ? 2 : 21 },
  // 40,000 calls: the object's clock counts whole milliseconds, so a 0.6 µs handler sums to 24 ms a round (±4 %).
  handlerCpu: { calls: quick ? 500 : 40_000, rounds: quick ? 2 : 15 },
  fanOut: [
    { subscribers: 100, publishesPerRound: quick ? 2 : 40, rounds: quick ? 2 : 15 },
    { subscribers: 1000, publishesPerRound: quick ? 1 : 32, rounds: quick ? 2 : 15 }
  ],
  wake: { subscribers: 1000, rounds: quick ? 2 : 15 },
  recovery: {
    subscribers: 1000,
    publishesPerRound: quick ? 1 : 8,
    rounds: quick ? 2 : 15,
    resumeRounds: quick ? 2 : 5,
    replayed: quick ? 100 : 1000,
    rpcsPerRound: quick ? 20 : 500
  }
} as const

const contenders: ReadonlyArray<Contender> = ["raw", "promise", "effect", "party"]
const results: Results = { plan, rows: new Map() }
const timeoutMs = 60_000

const stub = (contender: Contender, name: string) => {
  const namespace = env[bindings[contender]]
  return namespace.get(namespace.idFromName(name))
}

/** The time the object spent handling messages since the last call, and how many it handled. */
const inObject = async (contender: Contender, name: string): Promise<{ ms: number; messages: number }> => {
  const res = await SELF.fetch(`http://bench.local/${contender}/${name}/__stats`)
  return res.json()
}

/** Runs `measure` for every contender, round after round; warm-up rounds are run and discarded. */
const interleaved = async (rounds: number, measure: (contender: Contender, keep: boolean) => Promise<void>) => {
  for (let round = 0; round < plan.warmupRounds + rounds; round++) {
    for (const contender of rotated(contenders, round)) await measure(contender, round >= plan.warmupRounds)
  }
}

interface Room {
  readonly publisher: BenchSocket
  readonly subscribers: ReadonlyArray<BenchSocket>
}

const everyone: Array<BenchSocket> = []
const rooms = new Map<string, Room>()
const fanOutRoom = (subscribers: number) => `fan-${subscribers}`

const echoClients = new Map<Contender, Array<BenchSocket>>()

/** Opens, once, the echo clients of every contender (all on the object named "echo"). */
const openEchoClients = async (): Promise<Map<Contender, Array<BenchSocket>>> => {
  for (const contender of contenders) {
    if (echoClients.has(contender)) continue
    const opened = await Promise.all(Array.from({ length: plan.echo.clients }, () => open(contender, "echo")))
    echoClients.set(contender, opened)
    everyone.push(...opened)
  }
  return echoClients
}

/** Opens, once, a room per contender (the four, or those given) with `subscribers` subscribers and a publisher. */
const openRooms = async (subscribers: number, which: ReadonlyArray<Contender> = contenders) => {
  const name = fanOutRoom(subscribers)
  for (const contender of which) {
    if (rooms.has(`${contender}/${name}`)) continue
    const subs = await openSubscribers(contender, name, topic, subscribers)
    const publisher = await open(contender, name)
    rooms.set(`${contender}/${name}`, { publisher, subscribers: subs })
    everyone.push(publisher, ...subs)
  }
}

/** One publish; the time until every subscriber has the frame. */
const publishOnce = async (contender: Contender, room: Room, n: number): Promise<number> => {
  const start = performance.now()
  await expectFrames(room.subscribers.length, prefixes.news, timeoutMs, `${contender} fan-out`, (frame) => {
    for (const socket of room.subscribers) socket.sink = frame
    room.publisher.send(publishFrame(n))
  })
  return performance.now() - start
}

interface SessionSocket {
  readonly socket: BenchSocket
  readonly sessionId: string
  readonly token: string
  /** The last seq received: the watermark of the next resume. */
  readonly seq: number
}

/**
 * Opens a recovery socket subscribed to the topic and resolves with its
 * session once `$resumed` (for a resume) or `SUBSCRIBED` arrived; a resume
 * must have replayed exactly `replayed` messages.
 */
const sessionOf = async (contender: Contender, name: string, resume: string, replayed = 0): Promise<SessionSocket> => {
  const res = await SELF.fetch(`http://bench.local/${contender}/${name}?${resume}`, { headers: { Upgrade: "websocket" } })
  if (res.status !== 101 || res.webSocket === null) throw new Error(`upgrade answered ${res.status}`)
  const ws = res.webSocket
  ws.accept()
  return new Promise<SessionSocket>((resolve, reject) => {
    let session: { sessionId: string; token: string } | undefined
    let seq = 0
    let news = 0
    const timer = setTimeout(() => reject(new Error(`resume timed out after ${news} messages`)), timeoutMs)
    const socket: BenchSocket = { ws, sink: () => {}, send: (frame) => ws.send(frame), close: () => ws.close(1000) }
    const done = () => {
      clearTimeout(timer)
      resolve({ socket, sessionId: session!.sessionId, token: session!.token, seq })
    }
    ws.addEventListener("message", (event) => {
      const data = event.data as string
      if (data.startsWith(prefixes.news)) {
        news++
        seq = JSON.parse(data).meta.seq
      } else if (data.startsWith("{\"type\":\"$session\"")) {
        const payload = JSON.parse(data).payload
        session = { sessionId: payload.sessionId, token: payload.token }
        if (resume === "") {
          seq = payload.seq
          ws.send(subscribeFrame)
        }
      } else if (data.startsWith("{\"type\":\"$resumed\"")) {
        if (news !== replayed) reject(new Error(`the resume replayed ${news} messages, not ${replayed}`))
        else done()
      } else if (data.startsWith(prefixes.subscribed) && resume === "") {
        done()
      }
    })
  })
}

/** Publishes `count` messages through `publisher` and waits until the object has handled them all. */
const publishMany = async (publisher: BenchSocket, count: number) => {
  for (let n = 0; n < count; n++) publisher.send(publishFrame(n))
  await expectFrames(1, prefixes.echoReply, timeoutMs, "publishes handled", (frame) => {
    publisher.sink = frame
    publisher.send(echoFrame(0))
  })
}

describe("durable-ws vs raw Hibernation API vs partyserver", () => {
  afterAll(() => {
    for (const socket of everyone) socket.close()
    console.log(`\n${renderReport(results)}\n`)
  })

  scenario("echo throughput", async () => {
    const { clients, messagesPerClient, rounds } = plan.echo
    const sockets = await openEchoClients()
    const frames = Array.from({ length: messagesPerClient }, (_, n) => echoFrame(n))
    const total = clients * messagesPerClient
    await interleaved(rounds, async (contender, keep) => {
      const group = sockets.get(contender)!
      const start = performance.now()
      await expectFrames(total, prefixes.echoReply, timeoutMs, `${contender} echo replies`, (frame) => {
        for (const socket of group) socket.sink = frame
        for (const data of frames) for (const socket of group) socket.send(data)
      })
      const elapsed = performance.now() - start
      if (keep) record(results, "echo", `echo, ${clients}×${messagesPerClient} messages`, "msg/s", contender, total / (elapsed / 1000))
    })
  })

  scenario("handler CPU per echo message", async () => {
    const { calls, rounds } = plan.handlerCpu
    const frame = echoFrame(1)
    await openEchoClients()
    await interleaved(rounds, async (contender, keep) => {
      const direct = (frame: string) =>
        runInDurableObject(stub(contender, "echo"), (instance, state) => {
          const socket = state.getWebSockets()[0]
          if (socket === undefined) throw new Error(`${contender}: the echo object has no socket`)
          return (instance as unknown as Instrumented).directCalls(socket, frame, calls)
        })
      const ms = await direct(frame)
      if (keep) record(results, "cpu", "handler CPU per echo message, in the object", "µs", contender, (ms * 1000) / calls)
      // The same echo written as an Effect.fnUntraced handler (its generator made once, not per message).
      // Only the Effect contender has that shape; raw and promise are repeated for the ratios.
      if (contender === "effect" || contender === "raw" || contender === "promise") {
        const hoisted = contender === "effect" ? await direct(echoFnFrame(1)) : ms
        if (keep) {
          record(results, "cpu-fn", "… written with Effect.fnUntraced, in the object", "µs", contender, (hoisted * 1000) / calls)
        }
      }
      // V8's part of the Effect.gen shape: the promise echo plus a generator function made per message.
      if (contender === "promise") {
        const generator = await direct(echoGeneratorFrame(1))
        if (keep) record(results, "cpu-generator", "… promise echo plus a generator made per message", "µs", "promise", (generator * 1000) / calls)
      }
    })
  })

  for (const { subscribers, publishesPerRound, rounds } of plan.fanOut) {
    scenario(`publish fan-out to ${subscribers}`, async () => {
      const name = fanOutRoom(subscribers)
      await openRooms(subscribers)
      await interleaved(rounds, async (contender, keep) => {
        const room = rooms.get(`${contender}/${name}`)!
        await inObject(contender, name)
        let elapsed = 0
        for (let n = 0; n < publishesPerRound; n++) elapsed += await publishOnce(contender, room, n)
        const stats = await inObject(contender, name)
        if (!keep) return
        record(results, `fan-out-${subscribers}`, `fan-out to ${subscribers}, per publish`, "ms", contender, elapsed / publishesPerRound)
        record(
          results,
          `fan-out-${subscribers}-object`,
          `fan-out to ${subscribers}, in the object`,
          "ms",
          contender,
          stats.ms / stats.messages
        )
      })
    })
  }

  scenario("recovery: fan-out, resume, storage", async () => {
    const { subscribers, publishesPerRound, rounds, resumeRounds, replayed } = plan.recovery
    const name = fanOutRoom(subscribers)
    // Without recovery: the promise room of the fan-out run; with it, the same handlers and room size.
    await openRooms(subscribers, [...contenders, "recovery"])
    for (let round = 0; round < plan.warmupRounds + rounds; round++) {
      for (const contender of rotated(["promise", "recovery"] as const, round)) {
        const room = rooms.get(`${contender}/${name}`)!
        await inObject(contender, name)
        let elapsed = 0
        for (let n = 0; n < publishesPerRound; n++) elapsed += await publishOnce(contender, room, n)
        const stats = await inObject(contender, name)
        if (round < plan.warmupRounds) continue
        record(results, "recovery-fan-out-1000", `fan-out to ${subscribers}, per publish`, "ms", contender, elapsed / publishesPerRound)
        record(results, "recovery-fan-out-1000-object", `fan-out to ${subscribers}, in the object`, "ms", contender, stats.ms / stats.messages)
      }
    }

    // Rpcs from one socket, pipelined: with recovery each is recorded in SQLite before its handler
    // runs and its reply kept for a resend. The raw pair prices the platform's part: the same echo
    // by hand, with and without one SQLite row written before each reply.
    const rpcContenders = ["promise", "recovery", "raw", "rawRecorded"] as const
    const rpcClients = new Map<Contender, BenchSocket>()
    for (const contender of rpcContenders) {
      const socket = await open(contender, "rpc")
      rpcClients.set(contender, socket)
      everyone.push(socket)
    }
    let nextRpc = 0
    for (let round = 0; round < plan.warmupRounds + rounds; round++) {
      for (const contender of rotated(rpcContenders, round)) {
        const socket = rpcClients.get(contender)!
        const { rpcsPerRound } = plan.recovery
        await inObject(contender, "rpc")
        const start = performance.now()
        await expectFrames(rpcsPerRound, prefixes.rpcReply, timeoutMs, `${contender} rpc`, (frame) => {
          socket.sink = frame
          for (let i = 0; i < rpcsPerRound; i++) socket.send(rpcFrame(nextRpc++))
        })
        const elapsed = performance.now() - start
        const stats = await inObject(contender, "rpc")
        if (round < plan.warmupRounds) continue
        record(results, "recovery-rpc", "rpc, per request (pipelined)", "ms", contender, elapsed / rpcsPerRound)
        record(results, "recovery-rpc-object", "rpc, per request, in the object", "ms", contender, stats.ms / stats.messages)
      }
    }

    // A resume that replays `replayed` messages: from the upgrade to `$resumed`, the replay included.
    const resumeRoom = "resume"
    const sizeOf = () => runInDurableObject(stub("recovery", resumeRoom), (_instance, state) => state.storage.sql.databaseSize)
    const publisher = await open("recovery", resumeRoom)
    everyone.push(publisher)
    let credentials = await sessionOf("recovery", resumeRoom, "")
    for (let round = 0; round < plan.warmupRounds + resumeRounds; round++) {
      credentials.socket.ws.close(4000, "away")
      const before = await sizeOf()
      await publishMany(publisher, replayed)
      const grown = (await sizeOf()) - before
      const start = performance.now()
      const resumed = await sessionOf("recovery", resumeRoom, `dws_resume=${credentials.sessionId}.${credentials.token}.${credentials.seq}`, replayed)
      const elapsed = performance.now() - start
      credentials = resumed
      // Storage is read on the first round only: it starts on an empty log, and later rounds replace old entries.
      if (round === 0) record(results, "recovery-bytes", "SQLite bytes per logged message", "bytes", "recovery", grown / replayed)
      if (round < plan.warmupRounds) continue
      record(results, "recovery-resume", `resume replaying ${replayed} messages`, "ms", "recovery", elapsed)
    }
  })

  scenario("first publish after a wake", async () => {
    // The 1000-subscriber rooms of the fan-out run: eviction hibernates their sockets, the publish wakes the object.
    // `rawAttached` prices the platform's part: raw, with each socket's topics read from its attachment.
    const { subscribers, rounds } = plan.wake
    const name = fanOutRoom(subscribers)
    await openRooms(subscribers, [...contenders, "rawAttached"])
    for (let round = 0; round < plan.warmupRounds + rounds; round++) {
      for (const contender of rotated([...contenders, "rawAttached"] as const, round)) {
        const room = rooms.get(`${contender}/${name}`)
        if (room === undefined) throw new Error(`no ${subscribers}-subscriber room for ${contender}`)
        // The room may have hibernated on its own while other scenarios ran: wake it, so there is an instance to evict.
        await inObject(contender, name)
        await evictDurableObject(stub(contender, name))
        const elapsed = await publishOnce(contender, room, 0)
        const stats = await inObject(contender, name)
        if (round < plan.warmupRounds) continue
        record(results, "wake", `first publish to ${subscribers} after eviction`, "ms", contender, elapsed)
        record(results, "wake-object", `first publish to ${subscribers} after eviction, in the object`, "ms", contender, stats.ms)
      }
    }
  })
})
