import type { Contender } from "../worker/index"
import { median } from "./stats"

type Samples = Record<string, Partial<Record<Contender, Array<number>>>>

/** Every sample the run kept, by table row and contender. */
export interface Results {
  readonly plan: unknown
  /** messages per second */
  readonly echo: Samples
  /** ms until every subscriber has the frame, per publish */
  readonly fanOut: Samples
  /** ms until every subscriber has the first frame after an eviction */
  readonly wake: Samples
  /** ms the object spent per message (echo) or per publish, measured inside it */
  readonly inObject: Samples
}

const names: Record<Contender, string> = {
  raw: "raw",
  promise: "dws promise",
  effect: "dws Effect",
  party: "partyserver"
}

const order: ReadonlyArray<Contender> = ["raw", "promise", "effect", "party"]

type Unit = "rate" | "ms" | "µs"

const fmt = (value: number, unit: Unit) =>
  Number.isNaN(value)
    ? "-"
    : unit === "rate"
    ? Math.round(value).toLocaleString("en-US")
    : unit === "µs"
    ? (value * 1000).toFixed(1)
    : value.toFixed(2)

const ratio = (a: number, b: number) => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}×` : "-")

interface Row {
  readonly label: string
  readonly unit: Unit
  readonly medians: Record<Contender, number>
  readonly rounds: number
}

const rowsOf = (samples: Samples, unit: Unit, label: (row: string) => string): Array<Row> =>
  Object.entries(samples).map(([row, byContender]) => ({
    label: label(row),
    unit,
    medians: Object.fromEntries(order.map((c) => [c, median(byContender[c] ?? [])])) as Record<Contender, number>,
    rounds: Math.min(...order.map((c) => byContender[c]?.length ?? 0))
  }))

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) =>
    "| " + cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join(" | ") + " |"
  const rule = "|" + widths.map((w, i) => (i === 0 ? "-".repeat(w + 2) : "-".repeat(w + 1) + ":")).join("|") + "|"
  return [line(header), rule, ...rows.map(line)].join("\n")
}

const verdict = (ok: boolean) => (ok ? "met" : "MISSED")

/** The run as a Markdown table (medians, ratios) followed by the targets. */
export const renderReport = (results: Results): string => {
  const rows = [
    ...rowsOf(results.echo, "rate", () => "echo, msg/s (higher is better)"),
    ...rowsOf(results.fanOut, "ms", (row) => `${row}, ms per publish`),
    ...rowsOf(results.wake, "ms", (row) => `${row}, ms`),
    ...rowsOf(results.inObject, "µs", (row) => `in-object: ${row}, µs per ${row === "echo" ? "message" : "publish"}`)
  ]
  const header = [
    "scenario (median)",
    "rounds",
    ...order.map((c) => names[c]),
    "promise/raw",
    "Effect/raw",
    "promise/party",
    "Effect/party"
  ]
  const body = rows.map((row) => {
    const m = row.medians
    return [
      row.label,
      String(row.rounds),
      ...order.map((c) => fmt(m[c], row.unit)),
      ratio(m.promise, m.raw),
      ratio(m.effect, m.raw),
      ratio(m.promise, m.party),
      ratio(m.effect, m.party)
    ]
  })

  const lines = [table(header, body), "", "Ratios: durable-ws ÷ other (for msg/s higher is better, for ms lower is better).", ""]
  const echo = rows.find((r) => r.label.startsWith("echo"))
  const fan = rows.find((r) => r.label.startsWith("fan-out 1000"))
  const targets: Array<string> = []
  for (const flavour of ["promise", "effect"] as const) {
    if (echo !== undefined) {
      const m = echo.medians
      targets.push(`echo ≥ 0.8× raw (${names[flavour]}): ${ratio(m[flavour], m.raw)} ${verdict(m[flavour] >= 0.8 * m.raw)}`)
      targets.push(`echo ≥ partyserver (${names[flavour]}): ${ratio(m[flavour], m.party)} ${verdict(m[flavour] >= m.party)}`)
    }
    if (fan !== undefined) {
      const m = fan.medians
      targets.push(`fan-out 1000 ≤ 1.2× raw (${names[flavour]}): ${ratio(m[flavour], m.raw)} ${verdict(m[flavour] <= 1.2 * m.raw)}`)
      targets.push(`fan-out 1000 faster than partyserver (${names[flavour]}): ${ratio(m[flavour], m.party)} ${verdict(m[flavour] < m.party)}`)
    }
  }
  lines.push("Targets:", ...targets.map((t) => `- ${t}`), "", `Plan: ${JSON.stringify(results.plan)}`)
  return lines.join("\n")
}
