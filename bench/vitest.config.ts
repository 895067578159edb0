import { cloudflareTest } from "@cloudflare/vitest-plugin"
import { buildSync } from "esbuild"
import { defineConfig } from "vitest/config"

const processEnv = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {}

// The contenders run as they are deployed: `wrangler deploy` bundles a worker into one module
// with esbuild, and so does this. Loaded as sources instead, each module would be its own module
// in vitest's runner, and every call from one to another would go through the runner's import
// bindings, a cost no deployed worker pays (it took 0.2–0.3 µs a message from durable-ws, which
// is many modules, and nothing from raw or partyserver, which are one each).
const bundled = "bench/.build/worker.mjs"
buildSync({
  entryPoints: ["bench/worker/index.ts"],
  outfile: bundled,
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2024",
  conditions: ["workerd", "worker", "browser"],
  mainFields: ["browser", "module", "main"],
  external: ["cloudflare:*", "node:*"],
  // As wrangler's default (`keep_names`): every named function gets its name set where it is made,
  // which is what a deployed worker pays. `npm run bench:profile` leaves that out
  // (BENCH_KEEP_NAMES=0), so that V8 names the functions it samples.
  keepNames: processEnv["BENCH_KEEP_NAMES"] !== "0",
  logLevel: "warning"
})

// The benchmarks run as one vitest file inside workerd, so the contenders
// share one process and are measured the same way, interleaved.
export default defineConfig({
  plugins: [
    cloudflareTest({
      main: `./${bundled}`,
      wrangler: { configPath: "./bench/wrangler.toml" },
      miniflare: {
        bindings: { BENCH_QUICK: processEnv["BENCH_QUICK"] ?? "", BENCH_PROFILE: processEnv["BENCH_PROFILE"] ?? "" }
      }
    })
  ],
  test: {
    include: ["bench/**/*.measure.ts"],
    fileParallelism: false,
    testTimeout: 600_000,
    hookTimeout: 120_000
  }
})
