import { defineConfig } from "tsup"

export default defineConfig({
  entry: ["src/*.ts"],
  format: ["esm"],
  dts: true,
  clean: true,
  splitting: true,
  treeshake: true,
  target: "es2022",
  external: ["cloudflare:workers", "effect", "uuid"]
})
