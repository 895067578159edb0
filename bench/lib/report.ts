import type { Contender } from "../worker/index"
import { median } from "./stats"

/** A measured quantity, its samples by contender in round order (round r of each ran side by side). */
export interface Row {
  readonly label: string
  readonly unit: "msg/s" | "ms" | "µs" | "bytes"
  readonly samples: Partial<Record<Contender, Array<number>>>
}

/** Every row of the run, in the order they are printed, and the plan they came from. */
export interface Results {
  readonly plan: unknown
  readonly rows: Map<string, Row>
}

/** Adds one sample to a row, creating the row on first use. */
export const record = (results: Results, key: string, label: string, unit: Row["unit"], c: Contender, value: number) => {
  let row = results.rows.get(key)
  if (row === undefined) results.rows.set(key, row = { label, unit, samples: {} })
  ;(row.samples[c] ??= []).push(value)
}

const names: Record<Contender, string> = {
  raw: "raw",
  promise: "dws promise",
  effect: "dws Effect",
  party: "partyserver",
  recovery: "dws recovery",
  rawRecorded: "raw + 1 row",
  rawAttached: "raw + attachments"
}
const order: ReadonlyArray<Contender> = ["raw", "promise", "effect", "party"]

const fmt = (value: number, unit: Row["unit"]) =>
  Number.isNaN(value)
    ? "-"
    : unit === "msg/s"
    ? Math.round(value).toLocaleString("en-US")
    : unit === "µs"
    ? value.toFixed(2)
    : unit === "bytes"
    ? Math.round(value).toLocaleString("en-US")
    : value.toFixed(2)

/**
 * The median over rounds of `a[r] / b[r]`: each round's contenders ran next
 * to each other, so pairing them cancels the drift of a shared machine
 * better than dividing two medians would.
 */
export const pairedRatio = (a: ReadonlyArray<number> | undefined, b: ReadonlyArray<number> | undefined): number => {
  if (a === undefined || b === undefined) return Number.NaN
  const ratios: Array<number> = []
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const r = a[i]! / b[i]!
    if (Number.isFinite(r)) ratios.push(r)
  }
  return median(ratios)
}

const times = (r: number) => (Number.isNaN(r) ? "-" : `${r.toFixed(2)}×`)

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) =>
    "| " + cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join(" | ") + " |"
  const rule = "|" + widths.map((w, i) => (i === 0 ? "-".repeat(w + 2) : "-".repeat(w + 1) + ":")).join("|") + "|"
  return [line(header), rule, ...rows.map(line)].join("\n")
}

interface Target {
  readonly row: string
  readonly text: string
  /** Whether a paired ratio durable-ws ÷ other meets the goal. */
  readonly meets: (ratio: number) => boolean
  readonly against: Contender
}

/** Rows of the recovery table: `recovery` (on) against `promise` (off), same handlers. */
const isRecoveryRow = (key: string) => key.startsWith("recovery-")
/** Rows printed in a table of their own, not the contenders' table. */
const isOwnTableRow = (key: string) => isRecoveryRow(key) || key === "cpu-generator"

const recoveryTable = (results: Results): Array<string> => {
  const rows = [...results.rows.entries()].filter(([key]) => isRecoveryRow(key)).map(([, row]) => row)
  if (rows.length === 0) return []
  const body = rows.map((row) => [
    `${row.label} (${row.unit})`,
    String(Math.max(row.samples.recovery?.length ?? 0, row.samples.promise?.length ?? 0)),
    fmt(median(row.samples.promise ?? []), row.unit),
    fmt(median(row.samples.recovery ?? []), row.unit),
    times(pairedRatio(row.samples.recovery, row.samples.promise))
  ])
  const onOff = (key: string) => pairedRatio(results.rows.get(key)?.samples.recovery, results.rows.get(key)?.samples.promise)
  const ratio = onOff("recovery-fan-out-1000")
  const rpc = onOff("recovery-rpc")
  const floor = (key: string) => pairedRatio(results.rows.get(key)?.samples.rawRecorded, results.rows.get(key)?.samples.raw)
  const floors = ["recovery-rpc", "recovery-rpc-object"].flatMap((key) => {
    const row = results.rows.get(key)
    if (row?.samples.rawRecorded === undefined) return []
    const ms = (c: Contender) => median(row.samples[c] ?? [])
    const µs = (value: number) => (value * 1000).toFixed(1)
    return [
      `| ${row.label} | ${µs(ms("raw"))} | ${µs(ms("rawRecorded"))} | ${µs(ms("rawRecorded") - ms("raw"))} | ${
        µs(ms("recovery") - ms("promise"))
      } | ${times(floor(key))} | ${times(onOff(key))} |`
    ]
  })
  return [
    "",
    "Resumable delivery: dws promise with `recovery: true` (on) and without (off), the same handlers.",
    "",
    table(["scenario", "rounds", "off", "on", "on÷off"], body),
    "",
    `- fan-out 1000 with recovery ≤ 1.15× without: ${times(ratio)} ${Number.isNaN(ratio) ? "" : ratio <= 1.15 ? "met" : "MISSED"}`,
    `- rpc with recovery (a durable record per request) ≤ 1.2× without: ${times(rpc)} ${
      Number.isNaN(rpc) ? "" : rpc <= 1.2 ? "met" : "MISSED"
    }`,
    ...(floors.length === 0 ? [] : [
      "",
      "The platform's part of the rpc row: the raw Hibernation API echo, without and with one SQLite row written",
      "before each reply (the Durable Object holds a reply until the write before it is stored).",
      "",
      "| rpc, µs per request | raw | raw + 1 row | the row adds | recovery adds to dws | raw: with ÷ without | dws: on ÷ off |",
      "|---|--:|--:|--:|--:|--:|--:|",
      ...floors
    ])
  ]
}

/**
 * The Effect.gen handler against V8's part of it: the promise echo plus a
 * generator function made per message (`cpu-generator`), which is what the
 * `(ctx) => Effect.gen(function*() { … })` shape costs with no runtime.
 */
const generatorFloorTable = (results: Results): Array<string> => {
  const cpu = results.rows.get("cpu")?.samples
  const floor = results.rows.get("cpu-generator")?.samples.promise
  if (cpu === undefined || floor === undefined) return []
  const fn = results.rows.get("cpu-fn")?.samples.effect
  return [
    "",
    "V8's part of the Effect handler as the README writes it, `(ctx) => Effect.gen(function*() { … })`: a generator",
    "function made for every message, measured alone on top of the promise echo (promise + generator). No Effect",
    "runtime can make Effect.gen ÷ promise lower than floor÷promise unless the rest of its path costs less than",
    "the promise handler's.",
    "",
    table(["in the object (µs)", "dws promise", "promise + generator", "dws Effect.fnUntraced", "dws Effect.gen", "floor÷promise", "Effect.gen÷floor", "Effect.gen÷fnUntraced"], [[
      "handler CPU per echo message",
      ...[cpu.promise, floor, fn, cpu.effect].map((s) => fmt(median(s ?? []), "µs")),
      times(pairedRatio(floor, cpu.promise)),
      times(pairedRatio(cpu.effect, floor)),
      times(pairedRatio(cpu.effect, fn))
    ]])
  ]
}

/** The first publish after a wake against the platform's part of it (`rawAttached`). */
const wakeFloorTable = (results: Results): Array<string> => {
  const row = results.rows.get("wake-object")
  const s = row?.samples
  if (row === undefined || s?.rawAttached === undefined) return []
  return [
    "",
    "The platform's part of the first publish after a wake: topics that change after the upgrade cannot be",
    "WebSocket tags, so each socket keeps them in its attachment, read back after a wake (raw + attachments).",
    "",
    table(["in the object (ms)", "raw", "raw + attachments", "dws promise", "dws Effect", "floor÷raw", "promise÷floor", "Effect÷floor"], [[
      row.label,
      ...(["raw", "rawAttached", "promise", "effect"] as const).map((c) => fmt(median(s[c] ?? []), row.unit)),
      times(pairedRatio(s.rawAttached, s.raw)),
      times(pairedRatio(s.promise, s.rawAttached)),
      times(pairedRatio(s.effect, s.rawAttached))
    ]])
  ]
}

const targets: ReadonlyArray<Target> = [
  { row: "echo", text: "echo ≥ 0.8× raw msg/s", against: "raw", meets: (r) => r >= 0.8 },
  { row: "echo", text: "echo ≥ partyserver msg/s", against: "party", meets: (r) => r >= 1 },
  { row: "fan-out-1000", text: "fan-out 1000 ≤ 1.2× raw time", against: "raw", meets: (r) => r <= 1.2 },
  { row: "fan-out-1000", text: "fan-out 1000 faster than partyserver", against: "party", meets: (r) => r < 1 }
]

/** The cost of a message (issue 22): one paired ratio per line, `of` ÷ `against` on one row, at most `limit`. */
interface CostTarget {
  readonly row: string
  readonly text: string
  readonly of: Contender
  readonly against: Contender
  readonly limit: number
}

const costTargets: ReadonlyArray<CostTarget> = [
  { row: "cpu", text: "handler CPU, Effect handler as the README writes it ≤ 1.3× the promise handler", of: "effect", against: "promise", limit: 1.3 },
  { row: "cpu-fn", text: "handler CPU, Effect.fnUntraced handler ≤ 1.15× the promise handler", of: "effect", against: "promise", limit: 1.15 },
  { row: "cpu", text: "handler CPU, promise handler ≤ 2.0× raw", of: "promise", against: "raw", limit: 2 },
  { row: "fan-out-1000-object", text: "fan-out to 1000 in the object ≤ 1.05× raw, dws promise", of: "promise", against: "raw", limit: 1.05 },
  { row: "fan-out-1000-object", text: "fan-out to 1000 in the object ≤ 1.05× raw, dws Effect", of: "effect", against: "raw", limit: 1.05 },
  { row: "wake-object", text: "first publish after a wake, in the object ≤ 1.1× raw, dws promise", of: "promise", against: "raw", limit: 1.1 },
  { row: "wake-object", text: "first publish after a wake, in the object ≤ 1.1× raw, dws Effect", of: "effect", against: "raw", limit: 1.1 }
]

/** The run as a Markdown table (medians, paired ratios) followed by the targets. */
export const renderReport = (results: Results): string => {
  const header = [
    "scenario",
    "rounds",
    ...order.map((c) => names[c]),
    "promise÷raw",
    "Effect÷raw",
    "promise÷party",
    "Effect÷party"
  ]
  const body = [...results.rows.entries()].filter(([key]) => !isOwnTableRow(key)).map(([, row]) => {
    const s = row.samples
    return [
      `${row.label} (${row.unit})`,
      // A row some contender has no shape for ("-") counts the rounds of those that have it.
      String(Math.min(...order.map((c) => s[c]?.length ?? Infinity))),
      ...order.map((c) => fmt(median(s[c] ?? []), row.unit)),
      times(pairedRatio(s.promise, s.raw)),
      times(pairedRatio(s.effect, s.raw)),
      times(pairedRatio(s.promise, s.party)),
      times(pairedRatio(s.effect, s.party))
    ]
  })
  const lines = [
    table(header, body),
    "",
    "Cells: medians over the rounds. Ratios: durable-ws ÷ other, the median of per-round ratios",
    "(for msg/s higher is better, for ms and µs lower is better).",
    "",
    "Targets:"
  ]
  for (const target of targets) {
    const row = results.rows.get(target.row)
    if (row === undefined) continue
    const verdicts = (["promise", "effect"] as const).map((flavour) => {
      const r = pairedRatio(row.samples[flavour], row.samples[target.against])
      return `${names[flavour]} ${times(r)} ${Number.isNaN(r) ? "" : target.meets(r) ? "met" : "MISSED"}`
    })
    lines.push(`- ${target.text}: ${verdicts.join(", ")}`)
  }
  for (const target of costTargets) {
    const row = results.rows.get(target.row)
    if (row === undefined) continue
    const r = pairedRatio(row.samples[target.of], row.samples[target.against])
    lines.push(`- ${target.text}: ${times(r)} ${Number.isNaN(r) ? "" : r <= target.limit ? "met" : "MISSED"}`)
  }
  lines.push(...generatorFloorTable(results))
  lines.push(...wakeFloorTable(results))
  lines.push(...recoveryTable(results))
  lines.push("", `Plan: ${JSON.stringify(results.plan)}`)
  return lines.join("\n")
}

/** One variant of a measured quantity (µs), its samples in round order. */
export interface Variant {
  readonly label: string
  readonly samples: ReadonlyArray<number>
}

/** The median over rounds of `a[r] - b[r]`, paired like {@link pairedRatio}. */
const pairedDifference = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): number =>
  median(Array.from({ length: Math.min(a.length, b.length) }, (_, i) => a[i]! - b[i]!))

/**
 * A table of variants of one quantity in µs: medians, the paired
 * difference from `zero` (the cost the variant adds), and paired ratios
 * against each baseline.
 */
export const renderVariants = (
  title: string,
  variants: ReadonlyArray<Variant>,
  zero: Variant,
  baselines: ReadonlyArray<Variant>
): string => {
  const header = [title, "rounds", "µs", `− ${zero.label} (µs)`, ...baselines.map((b) => `÷ ${b.label}`)]
  const body = variants.map((variant) => [
    variant.label,
    String(variant.samples.length),
    fmt(median(variant.samples), "µs"),
    fmt(pairedDifference(variant.samples, zero.samples), "µs"),
    ...baselines.map((baseline) => times(pairedRatio(variant.samples, baseline.samples)))
  ])
  return table(header, body)
}
