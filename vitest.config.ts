import { cloudflareTest } from "@cloudflare/vitest-plugin"
import { configDefaults, defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    projects: [
      {
        plugins: [cloudflareTest({ wrangler: { configPath: "./test/fixtures/wrangler.toml" } })],
        test: {
          name: "workerd",
          include: ["test/**/*.test.ts"],
          globalSetup: ["./test/globalSetup.ts"],
          // Each file runs in a worker of its own (fresh module state and Durable Object instances).
          // Said explicitly, which also stops Vitest from suggesting otherwise after every run.
          isolate: true,
          exclude: [...configDefaults.exclude, "test/browser/**", "test/node/**"],
          testTimeout: 20_000,
          hookTimeout: 20_000
        }
      },
      {
        // Plain Node: what must work without workerd (Testing.make), and checks of the source tree.
        test: {
          name: "node",
          include: ["test/node/*.test.ts"],
          environment: "node"
        }
      },
      {
        // Runs in Node: starts `wrangler dev` and drives headless Chromium against it.
        test: {
          name: "browser",
          include: ["test/browser/*.test.ts"],
          environment: "node",
          testTimeout: 120_000,
          hookTimeout: 90_000
        }
      }
    ]
  }
})
