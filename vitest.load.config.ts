import { cloudflareTest } from "@cloudflare/vitest-plugin"
import { defineConfig } from "vitest/config"

// The load test (`npm run test:load`) holds 1000 sockets in one object for about half a minute, so it
// stays out of `npm test`: its files end in `.load.ts`, which the default config does not pick up.
export default defineConfig({
  plugins: [cloudflareTest({ wrangler: { configPath: "./test/fixtures/wrangler.toml" } })],
  test: {
    include: ["test/load/**/*.load.ts"],
    testTimeout: 300_000,
    hookTimeout: 60_000
  }
})
