/**
 * What presence costs (SPEC §15), on the engine itself through
 * `Testing.make` (the same instance code the Durable Object runs, sockets
 * in memory), so the figures are the engine's work, not the transport's:
 *
 * - a burst of 200 joins: frames and bytes each subscriber receives with
 *   presence (diffs collected for `flushMs`) against the hand-rolled way
 *   (every join publishes a "joined" message to the room topic);
 * - the time of one join (track, then its diff fanned out) in a topic
 *   with 1,000 members and subscribers, against the same in a topic with
 *   one, interleaved round by round;
 * - across objects: a burst of 200 joins spread over 10 edge objects of a
 *   spanning topic, with a subscriber on each edge: frames and bytes per
 *   subscriber, and the calls between objects it cost (real Durable
 *   Objects here, not `Testing.make`);
 * - at a spanning topic's home: one change (a join, then its leave) from an
 *   edge whose part has 1,000 members, against the same from an edge of
 *   one, interleaved round by round (the home's own work, called inside
 *   the home object).
 */
import { env, runInDurableObject } from "cloudflare:test"
import * as Schema from "effect/Schema"
import { afterAll, describe, it } from "vitest"
import { createRouter, message } from "../src/index"
import * as Testing from "../src/Testing"
import { median, rotated } from "./lib/stats"

const quick = env.BENCH_QUICK === "1"
// workerd's clock only moves at I/O: a timer at the end of a timed batch lets it catch up.
const clockAfterIo = async () => {
  await new Promise((resolve) => setTimeout(resolve, 0))
  return Date.now()
}
const topic = "room"
const flushMs = 5
const Join = message("JOIN", { name: Schema.String })
const Watch = message("WATCH")
const Joined = message("JOINED", { name: Schema.String, clientId: Schema.String })
const Leave = message("LEAVE")

const router = createRouter<{ name?: string }>()
  .on(Watch, (ctx) => ctx.topics.subscribe(topic))
  .on(Join, async (ctx) => {
    await ctx.topics.subscribe(topic)
    await ctx.presence.track(topic, ctx.payload.name, { since: 0 })
  })
  .on(Leave, (ctx) => ctx.presence.untrack(topic))

/** The hand-rolled way: one published "joined" message per join. */
const handRolled = createRouter<{ name?: string }>()
  .on(Watch, (ctx) => ctx.topics.subscribe(topic))
  .on(Join, async (ctx) => {
    await ctx.topics.subscribe(topic)
    await ctx.publish(topic, Joined, { name: ctx.payload.name, clientId: ctx.clientId })
  })

const settle = () => new Promise((resolve) => setTimeout(resolve, flushMs * 4))
const bytesOf = (frames: ReadonlyArray<unknown>) => frames.reduce<number>((sum, f) => sum + JSON.stringify(f).length, 0)
const lines: Array<string> = []

describe("presence", () => {
  afterAll(() => console.log(["", ...lines, ""].join("\n")))

  it("a burst of 200 joins: frames and bytes per subscriber", async () => {
    const watchers = 10
    const joins = 200
    const burst = async (r: typeof router) => {
      const runtime = Testing.make(r, { presence: { flushMs } })
      const subscribers = await Promise.all(Array.from({ length: watchers }, () => runtime.connect({})))
      await Promise.all(subscribers.map((s) => s.send({ type: "WATCH" })))
      await settle()
      const before = subscribers.map((s) => s.frames.length)
      const joiners = await Promise.all(Array.from({ length: joins }, () => runtime.connect({})))
      await Promise.all(joiners.map((j, i) => j.send({ type: "JOIN", payload: { name: `user-${i}` } })))
      await settle()
      const received = subscribers.map((s, i) => s.frames.slice(before[i]))
      await runtime.dispose()
      return { frames: median(received.map((f) => f.length)), bytes: median(received.map(bytesOf)) }
    }
    const presence = await burst(router)
    const rolled = await burst(handRolled)
    lines.push(
      `presence: a burst of ${joins} joins, per subscriber (${watchers} subscribers, flushMs ${flushMs})`,
      `| | frames | bytes |`,
      `|---|---|---|`,
      `| presence diffs | ${presence.frames} | ${presence.bytes} |`,
      `| hand-rolled: one published message per join | ${rolled.frames} | ${rolled.bytes} |`,
      `| ratio | ${(presence.frames / rolled.frames).toFixed(3)} | ${(presence.bytes / rolled.bytes).toFixed(3)} |`,
      ""
    )
  })

  it("across objects: a burst of 200 joins over 10 edges, per subscriber", async () => {
    const edges = Array.from({ length: 10 }, (_, i) => `presence-edge-${Date.now()}-${i}`)
    const hall = `hall:bench-${Date.now()}`
    const joins = 200
    const openOn = async (name: string) => {
      const res = await env.BENCH_PRESENCE_EDGE.get(env.BENCH_PRESENCE_EDGE.idFromName(name)).fetch("http://bench.local/", {
        headers: { Upgrade: "websocket" }
      })
      const ws = res.webSocket!
      ws.accept()
      const frames: Array<string> = []
      ws.addEventListener("message", (event) => {
        frames.push(event.data as string)
      })
      return { ws, frames }
    }
    const isPresence = (frame: string) => frame.startsWith("{\"type\":\"$presence")
    const watchers = await Promise.all(edges.map(openOn))
    for (const watcher of watchers) watcher.ws.send(JSON.stringify({ type: "P_WATCH", payload: { topic: hall } }))
    // Each watcher's first frame is the whole (empty) state.
    const deadline = Date.now() + 10_000
    while (watchers.some((w) => !w.frames.some(isPresence)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    const before = watchers.map((w) => w.frames.length)
    const homeStub = env.BENCH_PRESENCE_HOME.get(env.BENCH_PRESENCE_HOME.idFromName(hall))
    const callsBefore = await homeStub.counted()
    const joiners = await Promise.all(Array.from({ length: joins }, (_, i) => openOn(edges[i % edges.length]!)))
    const started = Date.now()
    joiners.forEach((joiner, i) => joiner.ws.send(JSON.stringify({ type: "P_JOIN", payload: { topic: hall, name: `user-${i}` } })))
    // Done when every watcher's view holds the 200 names.
    const names = (frames: ReadonlyArray<string>) => {
      const seen = new Set<string>()
      for (const frame of frames.filter(isPresence)) {
        const payload = JSON.parse(frame).payload as { members?: object; joins?: object }
        for (const key of Object.keys(payload.members ?? payload.joins ?? {})) seen.add(key)
      }
      return seen.size
    }
    while (watchers.some((w) => names(w.frames) < joins) && Date.now() < started + 30_000) await new Promise((r) => setTimeout(r, 10))
    const elapsed = Date.now() - started
    await new Promise((r) => setTimeout(r, 200))
    const received = watchers.map((w, i) => w.frames.slice(before[i]).filter(isPresence))
    const calls = await homeStub.counted()
    for (const socket of [...watchers, ...joiners]) socket.ws.close(1000)
    lines.push(
      `presence across objects: a burst of ${joins} joins over ${edges.length} edges, one subscriber on each (flushMs 5 on the edges, 20 at the home)`,
      `| | per subscriber |`,
      `|---|---|`,
      `| frames | ${median(received.map((f) => f.length))} (max ${Math.max(...received.map((f) => f.length))}) |`,
      `| bytes | ${median(received.map((f) => f.reduce((sum, frame) => sum + frame.length, 0)))} |`,
      `| every subscriber has all ${joins} (ms) | ${elapsed} |`,
      `| edge → home updates, whole burst | ${calls.updates - callsBefore.updates} |`,
      `| home → edge deliveries, whole burst | ${calls.deliveries - callsBefore.deliveries} |`,
      `| hand-rolled (one published message per join): frames per subscriber | ${joins} |`,
      ""
    )
  })

  it("at the home: one change from an edge of 1,000 members against one from an edge of 1", async () => {
    const rounds = quick ? 2 : 7
    const perRound = quick ? 20 : 1000
    const hall = `hall:bench-home-${Date.now()}`
    const home = env.BENCH_PRESENCE_HOME.get(env.BENCH_PRESENCE_HOME.idFromName(hall))
    const refOf = (n: number) => n.toString(16).padStart(16, "0")
    const edgeOf = (size: number, base: number) => {
      const address = { id: env.BENCH_PRESENCE_EDGE.idFromName(`${hall}-${size}`).toString(), binding: "BENCH_PRESENCE_EDGE" }
      const members = Object.fromEntries(Array.from({ length: size }, (_, i) => [`edge${size}-member-${i}`, [{ ref: refOf(base + i), meta: { since: 0 } }]]))
      const newcomer = { newcomer: [{ ref: refOf(base + 0xfffff), meta: { since: 0 } }] }
      return { address, epoch: `bench-${size}`, counter: 1, members, newcomer }
    }
    const big = edgeOf(1000, 0)
    const small = edgeOf(1, 0x10000000)
    type Edge = typeof big
    // Each edge's whole part first, as an edge's first update of its epoch.
    await runInDurableObject(home, (instance) => {
      for (const edge of [big, small]) {
        const answer = instance.presenceUpdate(hall, edge.address, { epoch: edge.epoch, counter: edge.counter, members: edge.members })
        if (!answer.ok) throw new Error(`part refused: ${JSON.stringify(answer)}`)
      }
    })
    const timeChanges = (edge: Edge) =>
      runInDurableObject(home, async (instance) => {
        const started = await clockAfterIo()
        for (let i = 0; i < perRound; i++) {
          const joined = instance.presenceUpdate(hall, edge.address, { epoch: edge.epoch, counter: ++edge.counter, changes: { joins: edge.newcomer, leaves: {} } })
          const left = instance.presenceUpdate(hall, edge.address, { epoch: edge.epoch, counter: ++edge.counter, changes: { joins: {}, leaves: edge.newcomer } })
          if (!joined.ok || !left.ok) throw new Error(`change refused: ${JSON.stringify([joined, left])}`)
        }
        return ((await clockAfterIo()) - started) / perRound
      })
    const ratios: Array<number> = []
    const bigChanges: Array<number> = []
    const smallChanges: Array<number> = []
    for (let round = 0; round <= rounds; round++) {
      const order = rotated([big, small], round)
      const times = new Map<Edge, number>()
      for (const edge of order) times.set(edge, await timeChanges(edge))
      if (round === 0) continue
      bigChanges.push(times.get(big)!)
      smallChanges.push(times.get(small)!)
      ratios.push(times.get(big)! / times.get(small)!)
    }
    const status = await home.presenceStatus(hall)
    if (status.members !== 1001) throw new Error(`the home holds ${status.members} members, not 1,001`)
    lines.push(
      `presence across objects, at the home: one change from an edge (a join, then its leave: two updates), median of ${rounds} rounds × ${perRound} pairs`,
      `| edge's part | join + leave (ms) |`,
      `|---|---|`,
      `| 1,000 members | ${median(bigChanges).toFixed(4)} |`,
      `| 1 member | ${median(smallChanges).toFixed(4)} |`,
      `| ratio 1,000 ÷ 1 (per round) | ${median(ratios).toFixed(2)} |`,
      ""
    )
  })

  it("one join in a topic of 1,000 members against one of 1 member", async () => {
    const rounds = quick ? 2 : 7
    const perRound = quick ? 20 : 1000
    const room = async (members: number) => {
      const runtime = Testing.make(router, { presence: { flushMs }, maxConnections: 2000 })
      const present = await Promise.all(Array.from({ length: members }, () => runtime.connect({})))
      await Promise.all(present.map((c, i) => c.send({ type: "JOIN", payload: { name: `member-${i}` } })))
      await settle()
      const newcomer = await runtime.connect({})
      await newcomer.send({ type: "WATCH" })
      return { runtime, newcomer }
    }
    const big = await room(1000)
    const small = await room(1)
    const timeJoins = async ({ newcomer }: { newcomer: Testing.TestConnection<{ name?: string }> }) => {
      const started = await clockAfterIo()
      for (let i = 0; i < perRound; i++) {
        await newcomer.send({ type: "JOIN", payload: { name: `newcomer-${i}` } })
        await newcomer.send({ type: "LEAVE" })
      }
      return ((await clockAfterIo()) - started) / perRound
    }
    const timeFlush = async ({ newcomer }: { newcomer: Testing.TestConnection<{ name?: string }> }) => {
      // The diff goes out on a timer: time from the join to the newcomer (the last subscriber) having it.
      const before = newcomer.frames.length
      const started = await clockAfterIo()
      await newcomer.send({ type: "JOIN", payload: { name: "flush" } })
      while (newcomer.frames.length === before) await new Promise((r) => setTimeout(r, 0))
      const elapsed = Date.now() - started
      await newcomer.send({ type: "LEAVE" })
      await settle()
      return elapsed
    }
    const ratios: Array<number> = []
    const bigJoins: Array<number> = []
    const smallJoins: Array<number> = []
    const bigFlush: Array<number> = []
    for (let round = 0; round <= rounds; round++) {
      const order = rotated([big, small], round)
      const times = new Map<unknown, number>()
      for (const subject of order) times.set(subject, await timeJoins(subject))
      const flushed = await timeFlush(big)
      if (round === 0) continue
      bigJoins.push(times.get(big)!)
      smallJoins.push(times.get(small)!)
      ratios.push(times.get(big)! / times.get(small)!)
      bigFlush.push(flushed)
    }
    await big.runtime.dispose()
    await small.runtime.dispose()
    lines.push(
      `presence: one join and its leave (the handler's track, then untrack), median of ${rounds} rounds × ${perRound} pairs`,
      `| topic | join + leave (ms) |`,
      `|---|---|`,
      `| 1,000 members and subscribers | ${median(bigJoins).toFixed(3)} |`,
      `| 1 member | ${median(smallJoins).toFixed(3)} |`,
      `| ratio 1,000 ÷ 1 (per round) | ${median(ratios).toFixed(2)} |`,
      `| join to diff received by the 1,001st subscriber, 1,000 members (ms, includes the ${flushMs} ms flush delay) | ${median(bigFlush).toFixed(1)} |`,
      ""
    )
  })
})
