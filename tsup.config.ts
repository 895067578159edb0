import { execFileSync } from "node:child_process"
import { existsSync } from "node:fs"
import { readdir, readFile, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { defineConfig } from "tsup"

const outDir = "dist"

/**
 * Declarations come from tsc itself, one `.d.ts` (and `.d.ts.map`, so "go to
 * definition" opens `src/`) per source file, rather than from tsup's bundled
 * declarations: the bundler rewrote re-exported types into values
 * (`declare const RateLimit: typeof RateLimit`), which broke consumers that
 * typecheck libraries (`skipLibCheck: false`).
 *
 * The sources import each other without extensions (fine for bundlers), but a
 * consumer on `moduleResolution: "node16"`/`"nodenext"` needs them, so the
 * relative specifiers in the emitted declarations get their `.js` (a `.ts`
 * one becomes `.js` too).
 */
const emitDeclarations = async () => {
  execFileSync(path.resolve("node_modules/.bin/tsc"), ["-p", "tsconfig.build.json"], { stdio: "inherit" })
  const files = (await readdir(outDir, { recursive: true })).filter((file) => file.endsWith(".d.ts"))
  for (const file of files) {
    const full = path.join(outDir, file)
    const text = await readFile(full, "utf8")
    const fixed = text.replace(
      /(\bfrom\s+|\bimport\s*\(\s*)(["'])(\.{1,2}\/[^"']+)\2/g,
      (_, lead: string, quote: string, specifier: string) => {
        if (specifier.endsWith(".js")) return `${lead}${quote}${specifier}${quote}`
        const base = specifier.replace(/\.ts$/, "")
        if (!existsSync(path.join(path.dirname(full), `${base}.d.ts`))) {
          throw new Error(`${full}: cannot resolve ${specifier}`)
        }
        return `${lead}${quote}${base}.js${quote}`
      }
    )
    if (fixed !== text) await writeFile(full, fixed)
  }
}

export default defineConfig({
  entry: ["src/*.ts"],
  format: ["esm"],
  sourcemap: true,
  clean: true,
  splitting: true,
  treeshake: true,
  target: "es2022",
  external: ["cloudflare:workers", "effect", "valibot", "zod"],
  onSuccess: emitDeclarations
})
