// Bundles the chat page's script (and durable-ws/client with it) for the browser.
import { build } from "esbuild"
import { fileURLToPath } from "node:url"

const here = new URL(".", import.meta.url)

await build({
  entryPoints: [fileURLToPath(new URL("page/app.ts", here))],
  outfile: fileURLToPath(new URL("public/app.js", here)),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  logLevel: "warning"
})
