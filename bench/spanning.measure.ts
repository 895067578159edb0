/**
 * Spanning topics against `federate` and a naive fan-out (SPEC §14), at 10
 * and 100 edge objects with subscribed sockets on each: publish → last
 * subscriber latency (p50, p99, one publish at a time) and sustained
 * publishes/s (many in flight, until every socket has every message). The
 * spanning rows also count the home's calls to edges per publish: the
 * object requests and edge rows written behind the cost model in the
 * spanning-topics guide (docs/spanning-topics.md). Run with `npm run bench`.
 */
import { env } from "cloudflare:test"
import { afterAll, it } from "vitest"
import type { FanOut } from "./worker/spanning"

const quick = env.BENCH_QUICK === "1"
const plan = {
  edges: [10, 100],
  socketsPerEdge: 2,
  latencySamples: quick ? 5 : 40,
  sustained: quick ? 20 : 300,
  inFlight: 25
} as const
const modes: ReadonlyArray<FanOut> = ["span", "federate", "naive"]
const newsPrefix = "{\"type\":\"B_NEWS\""
const batchPrefix = "{\"type\":\"$batch\""
/** The messages a frame carries: one, or each of a `$batch` frame's (counted without parsing it). */
const newsIn = (data: string): number => {
  if (data.startsWith(newsPrefix)) return 1
  if (!data.startsWith(batchPrefix)) return 0
  let count = 0
  for (let at = data.indexOf(newsPrefix); at !== -1; at = data.indexOf(newsPrefix, at + newsPrefix.length)) count++
  return count
}

interface Row {
  readonly edges: number
  readonly mode: FanOut
  /** Whether the subscribers read `$batch` frames (as durable-ws's client does). */
  readonly batches: boolean
  readonly p50: number
  readonly p99: number
  readonly perSecond: number
  /** Home → edge calls per publish, one publish at a time and sustained; entries per call sustained. */
  readonly calls: { readonly lone: number; readonly sustained: number; readonly entriesPerCall: number } | undefined
}
const rows: Array<Row> = []

const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!
}

/** Every socket of one size's edges, counting news frames into one total. */
const openEdges = async (names: ReadonlyArray<string>, topics: ReadonlyArray<string>, batches: boolean) => {
  const counter = { received: 0, waiter: undefined as undefined | { target: number; resolve: () => void } }
  const sockets: Array<WebSocket> = []
  for (const name of names) {
    for (let i = 0; i < plan.socketsPerEdge; i++) {
      const res = await env.BENCH_EDGE.get(env.BENCH_EDGE.idFromName(name)).fetch(batches ? "http://bench.local/?dws_batch=1" : "http://bench.local/", {
        headers: { Upgrade: "websocket" }
      })
      const ws = res.webSocket!
      ws.accept()
      let joined = 0
      const allJoined = new Promise<void>((resolve) => {
        ws.addEventListener("message", (event) => {
          const data = event.data as string
          const news = newsIn(data)
          if (news > 0) {
            counter.received += news
            if (counter.waiter !== undefined && counter.received >= counter.waiter.target) counter.waiter.resolve()
          } else if (++joined === topics.length) resolve()
        })
      })
      for (const topic of topics) ws.send(JSON.stringify({ type: "B_JOIN", payload: { topic } }))
      await allJoined
      sockets.push(ws)
    }
  }
  const reach = (target: number, timeoutMs: number, what: string) =>
    new Promise<void>((resolve, reject) => {
      if (counter.received >= target) return resolve()
      const timer = setTimeout(() => reject(new Error(`${what}: only ${counter.received} of ${target} frames arrived`)), timeoutMs)
      counter.waiter = {
        target,
        resolve: () => {
          clearTimeout(timer)
          counter.waiter = undefined
          resolve()
        }
      }
    })
  return { sockets, counter, reach }
}

// The subscribers read `$batch` frames, as durable-ws's client does; then the spanning topic again
// with subscribers that do not (raw or WS-Kit clients: one frame per message).
const runs = plan.edges.flatMap((edges) => [
  { edges, batches: true, modes },
  { edges, batches: false, modes: ["span"] as ReadonlyArray<FanOut> }
])

for (const { batches, edges, modes } of runs) {
  const what = batches ? "spanning topics vs federate vs naive fan-out" : "spanning topics, one frame per message,"
  it(`${what} at ${edges} edges`, async () => {
    const run = `${edges}-${batches ? "b" : "s"}-${Date.now()}`
    const names = Array.from({ length: edges }, (_, i) => `edge-${run}-${i}`)
    const topicOf = (mode: FanOut) => mode === "span" ? `span:${run}` : `local:${run}`
    const { sockets, counter, reach } = await openEdges(names, [topicOf("span"), topicOf("federate")], batches)
    const publisher = env.BENCH_EDGE.get(env.BENCH_EDGE.idFromName(`publisher-${run}`))
    const home = env.BENCH_HOME.get(env.BENCH_HOME.idFromName(topicOf("span")))
    let n = 0
    for (const mode of modes) {
      const publish = () => publisher.fanOut(mode, topicOf(mode), n++, names)
      // Warm-up: every object awake, the home's registrations in place.
      const warm = counter.received + sockets.length
      await publish()
      await reach(warm, 30_000, `${mode} warm-up`)
      await home.counted(true)
      const latencies: Array<number> = []
      for (let i = 0; i < plan.latencySamples; i++) {
        const target = counter.received + sockets.length
        const started = performance.now()
        await publish()
        await reach(target, 30_000, `${mode} latency`)
        latencies.push(performance.now() - started)
      }
      const lone = mode === "span" ? await home.counted(true) : undefined
      const target = counter.received + sockets.length * plan.sustained
      const started = performance.now()
      let next = 0
      await Promise.all(Array.from({ length: plan.inFlight }, async () => {
        while (next < plan.sustained) {
          next++
          await publish()
        }
      }))
      await reach(target, 120_000, `${mode} sustained`)
      const elapsed = (performance.now() - started) / 1000
      const dense = mode === "span" ? await home.counted(true) : undefined
      rows.push({
        edges,
        mode,
        batches,
        p50: percentile(latencies, 0.5),
        p99: percentile(latencies, 0.99),
        perSecond: plan.sustained / elapsed,
        calls: lone === undefined || dense === undefined ? undefined : {
          lone: lone.calls / plan.latencySamples,
          sustained: dense.calls / plan.sustained,
          entriesPerCall: dense.entries / dense.calls
        }
      })
    }
    for (const ws of sockets) ws.close(1000)
  }, 600_000)
}

afterAll(() => {
  const label: Record<FanOut, string> = { span: "spanning topic", federate: "federate", naive: "naive fan-out" }
  const lines = [
    "",
    `Spanning topics (${plan.socketsPerEdge} sockets per edge; latency: one publish at a time, ${plan.latencySamples} samples; ` +
      `sustained: ${plan.sustained} publishes, ${plan.inFlight} in flight)`,
    "| edges | fan-out | p50 ms | p99 ms | publishes/s | home→edge calls per publish (one at a time / sustained) | " +
    "entries per call (sustained) | vs federate publishes/s |",
    "|---:|---|---:|---:|---:|---:|---:|---:|"
  ]
  for (const row of rows) {
    const federated = rows.find((other) => other.edges === row.edges && other.mode === "federate")
    const name = row.mode === "span" && !row.batches ? `${label.span}, one frame per message` : label[row.mode]
    lines.push(
      `| ${row.edges} | ${name} | ${row.p50.toFixed(1)} | ${row.p99.toFixed(1)} | ${row.perSecond.toFixed(1)} | ` +
        `${row.calls === undefined ? "- | -" : `${row.calls.lone.toFixed(2)} / ${row.calls.sustained.toFixed(2)} | ${row.calls.entriesPerCall.toFixed(1)}`} | ` +
        `${federated === undefined ? "-" : `${(row.perSecond / federated.perSecond).toFixed(1)}×`} |`
    )
  }
  console.log(lines.join("\n"))
})
