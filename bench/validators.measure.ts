/**
 * What validation costs per message, by validator: the durable-ws echo
 * (decode in, encode out) once with Effect Schema, zod, valibot and
 * arktype, against the same echo without validation and against the raw
 * Hibernation-API object (no validation, no routing), measured in the
 * same run, interleaved round by round. The method is in bench/README.md.
 */
import { env, runInDurableObject, SELF } from "cloudflare:test"
import { afterAll, describe, it } from "vitest"
import type { Variant } from "./lib/report"
import { renderVariants } from "./lib/report"
import { rotated } from "./lib/stats"
import type { Instrumented } from "./worker/measured"
import { echoFrame } from "./worker/protocol"
import type { Validator } from "./worker/validators"
import { validators } from "./worker/validators"

const quick = env.BENCH_QUICK === "1"
// Under bench/profile.mjs only the named scenario runs, between idle pauses (see contenders.measure.ts).
const profiling = env.BENCH_PROFILE ?? ""
const scenarioName = "validation cost per echo message"
const pause = () => new Promise((r) => setTimeout(r, 3000))
const plan = { warmupRounds: 1, calls: quick ? 500 : 15_000, rounds: quick ? 2 : 7 } as const

type Subject = Validator | "raw"
const subjects: ReadonlyArray<Subject> = ["raw", ...(Object.keys(validators) as Array<Validator>)]
const labels: Record<Subject, string> = {
  raw: "raw Hibernation API (no validation, no routing)",
  "validator-none": "durable-ws, no validation",
  "validator-effect": "durable-ws, Effect Schema fields",
  "validator-zod": "durable-ws, zod fields",
  "validator-zod-object": "durable-ws, zod z.object",
  "validator-valibot": "durable-ws, valibot fields",
  "validator-valibot-object": "durable-ws, valibot v.object",
  "validator-arktype": "durable-ws, arktype fields",
  "validator-arktype-object": "durable-ws, arktype type({…})"
}
const samples = new Map<Subject, Array<number>>(subjects.map((subject) => [subject, []]))
const sockets: Array<WebSocket> = []

const namespaceOf = (subject: Subject) => env[subject === "raw" ? "RAW" : validators[subject]]

describe("validation cost per message", () => {
  afterAll(() => {
    for (const ws of sockets) ws.close(1000, "bench done")
    if (samples.get("raw")!.length === 0) return
    const variant = (subject: Subject): Variant => ({ label: labels[subject], samples: samples.get(subject)! })
    const none = { ...variant("validator-none"), label: "no validation" }
    const raw = { ...variant("raw"), label: "raw" }
    console.log([
      "",
      renderVariants("handler CPU per echo message, in the object", subjects.map(variant), none, [raw, none]),
      "",
      "Per message: one inbound decode and one outbound encode of { n: number, text: string }.",
      "Cells: medians over the rounds; differences and ratios are medians of per-round pairs.",
      `Plan: ${JSON.stringify(plan)}`,
      ""
    ].join("\n"))
  })

  it.skipIf(profiling !== "" && !scenarioName.startsWith(profiling))(scenarioName, async () => {
    const frame = echoFrame(1)
    // One socket per object, for its attachment: the calls themselves go to a stand-in socket.
    for (const subject of subjects) {
      const res = await SELF.fetch(`http://bench.local/${subject}/validation`, { headers: { Upgrade: "websocket" } })
      if (res.webSocket === null) throw new Error(`upgrade to ${subject} answered ${res.status}`)
      res.webSocket.accept()
      sockets.push(res.webSocket)
    }
    if (profiling !== "") await pause()
    for (let round = 0; round < plan.warmupRounds + plan.rounds; round++) {
      for (const subject of rotated(subjects, round)) {
        const namespace = namespaceOf(subject)
        const ms = await runInDurableObject(namespace.get(namespace.idFromName("validation")), (instance, state) => {
          const socket = state.getWebSockets()[0]
          if (socket === undefined) throw new Error(`${subject}: the object has no socket`)
          return (instance as unknown as Instrumented).directCalls(socket, frame, plan.calls)
        })
        if (round >= plan.warmupRounds) samples.get(subject)!.push((ms * 1000) / plan.calls)
      }
    }
    if (profiling !== "") {
      ;(globalThis as { benchScenarioDone?: boolean }).benchScenarioDone = true
      await pause()
    }
  })
})
