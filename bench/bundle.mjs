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

const workers = [
  { name: "chat example (examples/chat)", config: chatConfig(), limitKiB: 60 },
  { name: "quick start (bench/quickstart)", config: join(root, "bench/quickstart/wrangler.toml"), limitKiB: undefined }
]

const measure = (config, minify) => {
  const outdir = mkdtempSync(join(tmpdir(), "durable-ws-bundle-"))
  try {
    const flags = minify ? ["--minify"] : []
    execFileSync(wrangler, ["deploy", "--dry-run", "--outdir", outdir, "--config", config, ...flags], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_UPDATE_NOTIFIER: "1" },
      timeout: 120_000
    })
    let bytes = 0
    let gzip = 0
    for (const file of readdirSync(outdir, { recursive: true })) {
      if (!/\.m?js$/.test(file)) continue
      const code = readFileSync(join(outdir, file))
      bytes += code.length
      gzip += gzipSync(code).length
    }
    return { bytes, gzip }
  } finally {
    rmSync(outdir, { recursive: true, force: true })
  }
}

const kib = (bytes) => (bytes / KiB).toFixed(1)
const rows = []
for (const worker of workers) {
  if (worker.config === undefined) {
    rows.push([worker.name, "-", "-", "-", "-", "skipped: examples/chat is not there yet"])
    continue
  }
  const plain = measure(worker.config, false)
  const minified = measure(worker.config, true)
  const verdict = (gzip) => (gzip <= worker.limitKiB * KiB ? "met" : "MISSED")
  const target = worker.limitKiB === undefined
    ? ""
    : `≤ ${worker.limitKiB} KiB gzip: ${verdict(plain.gzip)} as configured, ${verdict(minified.gzip)} minified`
  rows.push([worker.name, kib(plain.bytes), kib(plain.gzip), kib(minified.bytes), kib(minified.gzip), target])
}

const header = ["worker bundle", "KiB", "KiB gzip", "minified KiB", "minified KiB gzip", "target"]
const last = header.length - 1
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
const left = (i) => i === 0 || i === last
const line = (cells) => "| " + cells.map((c, i) => (left(i) ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ") + " |"
const rule = "|" + widths.map((w, i) => (left(i) ? "-".repeat(w + 2) : "-".repeat(w + 1) + ":")).join("|") + "|"
console.log(["", line(header), rule, ...rows.map(line), ""].join("\n"))
