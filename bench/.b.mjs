import { buildSync } from "esbuild"
buildSync({ entryPoints: ["bench/worker/index.ts"], bundle: true, format: "esm", platform: "neutral", outfile: "/tmp/w/worker.mjs", external: ["cloudflare:*", "node:*"], keepNames: false, mainFields: ["module","main"], conditions: ["workerd","worker","import"] , logLevel: "warning"})
