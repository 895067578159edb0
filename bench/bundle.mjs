// Bundle sizes: each worker bundled by wrangler exactly as `wrangler deploy`
// would upload it (`--dry-run --outdir`), then gzipped with Node's zlib.
// Measured twice: as its wrangler config says, and with `--minify` (what
// `minify = true` in that config would give).
// Runs in Node (npm run bench), after the workerd measurements.
import { execFileSync } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { gzipSync } from "node:zlib"

const root = resolve(import.meta.dirname, "..")
const wrangler = join(root, "node_modules", ".bin", "wrangler")
const KiB = 1024

/** The chat example's wrangler config: the root one points at it (SPEC §3); a config of its own also counts. */
const chatConfig = () => {
  if (!existsSync(join(root, "examples/chat/worker.ts"))) return undefined
  for (const config of ["wrangler.toml", "examples/chat/wrangler.toml"]) {
    const path = join(root, config)
    if (existsSync(path) && readFileSync(path, "utf8").includes("examples/chat")) return path
  }
  return existsSync(join(root, "examples/chat/wrangler.toml")) ? join(root, "examples/chat/wrangler.toml") : undefined
}

// Targets (issue 22): the chat worker as its config builds it (`minify = true`), the quick start minified.
const workers = [
  { name: "chat example (examples/chat)", config: chatConfig(), limitKiB: 50, limitOn: "configured" },
  { name: "quick start (bench/quickstart)", config: join(root, "bench/quickstart/wrangler.toml"), limitKiB: 45, limitOn: "minified" },
  // No target: what a worker with the quick start's Effect shape (a Schema-decoded frame, an Effect handler reading a service) pays for Effect alone.
  { name: "Effect floor (bench/floor)", config: join(root, "bench/floor/wrangler.toml"), limitOn: "minified" }
]

/** Minified bytes per input module (esbuild's metafile), grouped: one row per Effect or durable-ws module. */
const modulesOf = (metafile) => {
  const output = Object.values(metafile.outputs).find((o) => o.entryPoint !== undefined)
  const groups = new Map()
  for (const [input, { bytesInOutput }] of Object.entries(output?.inputs ?? {})) {
    const module = input.includes("node_modules/")
      ? input.replace(/.*node_modules\//, "").replace(/^effect\/dist\//, "effect/").replace(/\.js$/, "")
      : `durable-ws ${input.replace(/.*?src\//, "src/")}`
    groups.set(module, (groups.get(module) ?? 0) + bytesInOutput)
  }
  return [...groups].sort((a, b) => b[1] - a[1])
}

/** Base64 VLQ, the encoding of a source map's mappings: one segment's fields. */
const base64 = new Map([..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"].map((c, i) => [c, i]))
const fieldsOf = (segment) => {
  const fields = []
  let value = 0
  let shift = 0
  for (const c of segment) {
    const digit = base64.get(c)
    value += (digit & 31) << shift
    if (digit & 32) {
      shift += 5
    } else {
      fields.push(value & 1 ? -(value >>> 1) : value >>> 1)
      value = 0
      shift = 0
    }
  }
  return fields
}

/**
 * The bundle's code cut into the parts `partOf` names, by where each piece
 * of it came from (the source map): every part's pieces, in bundle order.
 * Code the map gives no source (wrangler's own lines) goes to `partOf(undefined)`.
 */
const partsOf = (code, map, partOf) => {
  const parts = new Map()
  const add = (part, text) => parts.set(part, (parts.get(part) ?? "") + text)
  const lines = code.split("\n")
  let source = 0
  map.mappings.split(";").forEach((mappings, index) => {
    const line = lines[index] ?? ""
    let column = 0
    let from = 0
    let part = partOf(undefined)
    for (const segment of mappings.split(",")) {
      if (segment === "") continue
      const fields = fieldsOf(segment)
      column += fields[0]
      add(part, line.slice(from, column))
      from = column
      if (fields.length >= 4) source += fields[1]
      part = partOf(fields.length >= 4 ? map.sources[source] : undefined)
    }
    add(part, line.slice(from) + "\n")
  })
  return parts
}

/** The parts a bundle is cut into: Effect, the engines `createDurableObjectHandler` builds from plain options, the rest. */
const partOf = (source) =>
  source === undefined ? "wrangler's own lines"
  : source.includes("node_modules/effect/") ? "Effect's modules"
  : /src\/internal\/server\/(recovery|resume)\.ts$/.test(source) ? "durable-ws: resumable delivery (`recovery`)"
  : /src\/internal\/server\/(presence|span|spanPresence)\.ts$/.test(source) ? "durable-ws: presence and spanning topics (`presence`, `span`)"
  : /(^|\/)src\//.test(source) ? "durable-ws: everything else"
  : "the rest (the worker itself, its other packages)"

/** One bundle's sizes; with `byOrigin`, also its parts (see {@link partsOf}). */
const measure = (config, minify, byOrigin) => {
  const outdir = mkdtempSync(join(tmpdir(), "durable-ws-bundle-"))
  try {
    const flags = [
      ...(byOrigin ? ["--upload-source-maps"] : []),
      ...(minify ? ["--minify", "--metafile", join(outdir, "meta.json")] : [])
    ]
    execFileSync(wrangler, ["deploy", "--dry-run", "--outdir", outdir, "--config", config, ...flags], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_UPDATE_NOTIFIER: "1" },
      timeout: 120_000
    })
    let bytes = 0
    let gzip = 0
    let parts = new Map()
    for (const file of readdirSync(outdir, { recursive: true })) {
      if (!/\.m?js$/.test(file)) continue
      const code = readFileSync(join(outdir, file))
      bytes += code.length
      gzip += gzipSync(code).length
      const map = join(outdir, `${file}.map`)
      if (byOrigin && existsSync(map)) parts = partsOf(code.toString("utf8"), JSON.parse(readFileSync(map, "utf8")), partOf)
    }
    const modules = minify ? modulesOf(JSON.parse(readFileSync(join(outdir, "meta.json"), "utf8"))) : []
    return { bytes, gzip, modules, parts }
  } finally {
    rmSync(outdir, { recursive: true, force: true })
  }
}

const kib = (bytes) => (bytes / KiB).toFixed(1)
const rows = []
const targets = []
let quickStartModules = []
const byOrigin = []
for (const worker of workers) {
  if (worker.config === undefined) {
    rows.push([worker.name, "-", "-", "-", "-", "skipped: examples/chat is not there yet"])
    continue
  }
  // Cut by origin: the bundle a target is measured on.
  const plain = measure(worker.config, false, worker.limitOn === "configured")
  const minified = measure(worker.config, true, worker.limitOn === "minified" && worker.limitKiB !== undefined)
  const measured = worker.limitOn === "minified" ? minified : plain
  if (worker.limitKiB === undefined) {
    rows.push([worker.name, kib(plain.bytes), kib(plain.gzip), kib(minified.bytes), kib(minified.gzip), "the floor: no target"])
    continue
  }
  const verdict = measured.gzip <= worker.limitKiB * KiB ? "met" : "MISSED"
  const target = `≤ ${worker.limitKiB} KiB gzip ${worker.limitOn}: ${verdict}`
  targets.push(`- ${worker.name} ≤ ${worker.limitKiB} KiB gzip (${worker.limitOn}): ${kib(measured.gzip)} KiB ${verdict}`)
  rows.push([worker.name, kib(plain.bytes), kib(plain.gzip), kib(minified.bytes), kib(minified.gzip), target])
  if (worker.limitOn === "minified") quickStartModules = minified.modules
  byOrigin.push({ name: worker.name, how: worker.limitOn, limitKiB: worker.limitKiB, ...measured })
}

const header = ["worker bundle", "KiB", "KiB gzip", "minified KiB", "minified KiB gzip", "target"]
const last = header.length - 1
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
const left = (i) => i === 0 || i === last
const line = (cells) => "| " + cells.map((c, i) => (left(i) ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ") + " |"
const rule = "|" + widths.map((w, i) => (left(i) ? "-".repeat(w + 2) : "-".repeat(w + 1) + ":")).join("|") + "|"
console.log(["", line(header), rule, ...rows.map(line), ""].join("\n"))
console.log(["Targets:", ...targets, ""].join("\n"))

// What each module costs the quick start: minified bytes in the bundle, before gzip (gzip shrinks all alike, about 3×).
const total = quickStartModules.reduce((sum, [, bytes]) => sum + bytes, 0)
const shown = quickStartModules.slice(0, 30)
const rest = quickStartModules.slice(30).reduce((sum, [, bytes]) => sum + bytes, 0)
console.log(`Quick start, minified, by module (${kib(total)} KiB in all; esbuild metafile):`)
console.log(["", "| module | minified KiB | share |", "|---|--:|--:|",
  ...shown.map(([module, bytes]) => `| ${module} | ${kib(bytes)} | ${((100 * bytes) / total).toFixed(1)} % |`),
  `| ${quickStartModules.length - shown.length} more | ${kib(rest)} | ${((100 * rest) / total).toFixed(1)} % |`, ""].join("\n"))

// Each measured bundle by where its code comes from, each part gzipped on its own: which part of
// a target Effect's modules take, and what that leaves for everything else.
for (const { name, how, limitKiB, gzip, parts } of byOrigin) {
  if (parts.size === 0) continue
  const rows = [...parts].map(([part, text]) => [part, Buffer.byteLength(text), gzipSync(text).length])
    .sort((a, b) => b[2] - a[2])
  const summed = rows.reduce((sum, [, , size]) => sum + size, 0)
  const effect = rows.find(([part]) => part === "Effect's modules")?.[2] ?? 0
  console.log(`${name}, ${how}, by origin (each part gzipped alone: they sum to ${kib(summed)} KiB, the whole is ${kib(gzip)}):`)
  console.log(["", "| part | KiB | KiB gzip |", "|---|--:|--:|",
    ...rows.map(([part, bytes, size]) => `| ${part} | ${kib(bytes)} | ${kib(size)} |`), ""].join("\n"))
  console.log(`Of its ${limitKiB} KiB target, Effect's modules take ${kib(effect)} KiB: ${kib(limitKiB * KiB - effect)} KiB are left for the rest.\n`)
}
