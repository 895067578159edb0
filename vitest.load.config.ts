import { cloudflareTest } from "@cloudflare/vitest-plugin"
import { defineConfig } from "vitest/config"

// The load tests (`npm run test:load`) stay out of `npm test`: their files end in `.load.ts`, which the
// default config does not pick up. Most hold many sockets in one object inside workerd for about half
// a minute; the `.node.load.ts` ones run in Node and drive `wrangler dev` (restarts).
export default defineConfig({
  test: {
    projects: [
      {
        plugins: [cloudflareTest({ wrangler: { configPath: "./test/fixtures/wrangler.toml" } })],
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
