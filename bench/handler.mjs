// The message path's CPU per echo, in Node (see bench/handler/harness.ts): bundles the
// harness with esbuild and runs it in this process, so `node --cpu-prof bench/handler.mjs`
// profiles it.
//
//   npm run bench:handler        (HANDLER_MESSAGES, HANDLER_ROUNDS to change the run;
//                                HANDLER_CASES=gen for the cases whose name matches)
import { build } from "esbuild"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { pathToFileURL } from "node:url"

const root = resolve(import.meta.dirname, "..")
const dir = mkdtempSync(join(tmpdir(), "durable-ws-handler-"))
try {
  const outfile = join(dir, "harness.mjs")
  await build({
    entryPoints: [join(root, "bench/handler/harness.ts")],
    bundle: true,
    platform: "node",
    format: "esm",
    outfile,
    // As wrangler's default `keep_names`: a function made with a name pays for it where it is made.
    keepNames: true,
    logLevel: "warning"
  })
  await import(pathToFileURL(outfile).href)
} finally {
  rmSync(dir, { recursive: true, force: true })
}
