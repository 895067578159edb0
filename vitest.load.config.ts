import { cloudflareTest } from "@cloudflare/vitest-plugin"
import { defineConfig } from "vitest/config"

// The load tests (`npm run test:load`) stay out of `npm test`: their files end in `.load.ts`, which the
// default config does not pick up. Most hold many sockets in one object inside workerd for about half
// a minute; the `.node.load.ts` ones run in Node and drive `wrangler dev` (restarts).
const processEnv = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {}

export default defineConfig({
  test: {
    projects: [
      {
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./test/fixtures/wrangler.toml" },
            // SPAN_EDGES=200 npm run test:load spreads the spanning-topic scenario over more edge objects.
            miniflare: { bindings: { SPAN_EDGES: processEnv["SPAN_EDGES"] ?? "" } }
          })
        ],
        test: {
          name: "load",
          include: ["test/load/**/*.load.ts"],
          exclude: ["test/load/**/*.node.load.ts"],
          testTimeout: 300_000,
          hookTimeout: 60_000
        }
      },
      {
        test: {
          name: "load-node",
          include: ["test/load/**/*.node.load.ts"],
          environment: "node",
          testTimeout: 300_000,
          hookTimeout: 60_000
        }
      }
    ]
  }
})
