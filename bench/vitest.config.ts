import { cloudflareTest } from "@cloudflare/vitest-plugin"
import { defineConfig } from "vitest/config"

const processEnv = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {}

// The benchmarks run as one vitest file inside workerd, so the contenders
// share one process and are measured the same way, interleaved.
export default defineConfig({
  plugins: [
    cloudflareTest({
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
