// Client bundle sizes: the pages in bench/client/ bundled for the browser with
// esbuild (minified, tree-shaken, as an app would ship them), then gzipped.
// The promise client is also measured at a base revision (default `main`,
// or CLIENT_BASE_REF), checked out with `git archive`, so a change to the
// client shows what it costs users who do not use the Effect face.
import { execFileSync } from "node:child_process"
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { gzipSync } from "node:zlib"
import { build } from "esbuild"

const root = resolve(import.meta.dirname, "..")
const KiB = 1024

const measure = async (base, entry) => {
  const result = await build({
    absWorkingDir: base,
    entryPoints: [entry],
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    logLevel: "silent"
  })
  const code = result.outputFiles[0].contents
  return { bytes: code.length, gzip: gzipSync(code).length }
}

const baseRef = process.env["CLIENT_BASE_REF"] ?? "main"
const rows = []
const scratch = mkdtempSync(join(tmpdir(), "durable-ws-client-"))
try {
  try {
    execFileSync("sh", ["-c", `git archive ${baseRef} src | tar -x -C "${scratch}"`], { cwd: root, stdio: "pipe" })
    mkdirSync(join(scratch, "bench/client"), { recursive: true })
    cpSync(join(root, "bench/client/promise.ts"), join(scratch, "bench/client/promise.ts"))
    symlinkSync(join(root, "node_modules"), join(scratch, "node_modules"))
    rows.push([`promise client at ${baseRef}`, await measure(scratch, "bench/client/promise.ts")])
  } catch (error) {
    rows.push([`promise client at ${baseRef}`, undefined])
  }
  rows.push(["promise client (this tree)", await measure(root, "bench/client/promise.ts")])
  rows.push(["Effect face (this tree)", await measure(root, "bench/client/effect.ts")])
} finally {
  rmSync(scratch, { recursive: true, force: true })
}

const base = rows[0][1]
const kib = (bytes) => (bytes / KiB).toFixed(1)
const table = rows.map(([name, size]) => [
  name,
  size === undefined ? "-" : kib(size.bytes),
  size === undefined ? "-" : kib(size.gzip),
  size === undefined || base === undefined ? "-" : `${(size.gzip / base.gzip).toFixed(2)}×`
])
const header = ["client page bundle (esbuild, minified)", "KiB", "KiB gzip", "gzip vs base"]
const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i].length)))
const line = (cells) => "| " + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ") + " |"
const rule = "|" + widths.map((w, i) => (i === 0 ? "-".repeat(w + 2) : "-".repeat(w + 1) + ":")).join("|") + "|"
console.log(["", line(header), rule, ...table.map(line), ""].join("\n"))
