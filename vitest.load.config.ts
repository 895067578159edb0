import { cloudflareTest } from "@cloudflare/vitest-plugin"
import { defineConfig } from "vitest/config"

// The load test (`npm run test:load`) holds 1000 sockets in one object for about half a minute, so it
// stays out of `npm test`: its files end in `.load.ts`, which the default config does not pick up.
const processEnv = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {}

export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./test/fixtures/wrangler.toml" },
      // SPAN_EDGES=200 npm run test:load spreads the spanning-topic scenario over more edge objects.
      miniflare: { bindings: { SPAN_EDGES: processEnv["SPAN_EDGES"] ?? "" } }
    })
  ],
  test: {
    include: ["test/load/**/*.load.ts"],
    testTimeout: 300_000,
    hookTimeout: 60_000
  }
})
