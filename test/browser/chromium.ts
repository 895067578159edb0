import { execFile } from "node:child_process"
import { existsSync } from "node:fs"
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { promisify } from "node:util"
import type { BrowserContext } from "playwright-core"
import { chromium } from "playwright-core"
import { root } from "./devServer"

/**
 * The browser comes from npm: `@sparticuz/chromium` ships a headless Chromium
 * (with the NSS libraries it links and a font) as compressed files, so
 * `npm install` is all a machine needs. Nothing is downloaded at test time
 * and no system browser is used.
 */
const packageDir = join(root, "node_modules/@sparticuz/chromium")
const cacheDir = join(root, "node_modules/.cache/durable-ws-chromium")

/**
 * The package unpacks into `os.tmpdir()`, shared by every checkout and run on
 * the machine, and trusts whatever file it finds there. So it unpacks in a
 * child process whose TMPDIR is a fresh directory, renamed into place once
 * complete: an interrupted or concurrent unpack never leaves a half-written
 * browser behind.
 */
const unpack = async (): Promise<string> => {
  const { version } = JSON.parse(await readFile(join(packageDir, "package.json"), "utf8")) as { version: string }
  const dir = join(cacheDir, version)
  if (existsSync(join(dir, "chromium"))) return dir
  await mkdir(cacheDir, { recursive: true })
  const partial = await mkdtemp(join(cacheDir, `${version}-partial-`))
  const script = [
    `import chromium, { inflate } from "@sparticuz/chromium"`,
    `await chromium.executablePath()`,
    `await inflate(${JSON.stringify(join(packageDir, "bin/al2023.tar.br"))})`
  ].join("\n")
  try {
    await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], {
      cwd: root,
      env: { ...process.env, TMPDIR: partial },
      timeout: 120_000
    })
    await writeFile(
      join(partial, "fonts.conf"),
      `<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig>
  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>
  <dir>${join(dir, "fonts")}</dir>
  <cachedir>${join(dir, "fonts-cache")}</cachedir>
</fontconfig>
`
    )
    await rename(partial, dir)
  } catch (error) {
    await rm(partial, { recursive: true, force: true })
    // Another run finished first: its copy is as good as ours.
    if (existsSync(join(dir, "chromium"))) return dir
    throw error
  }
  return dir
}

/** Flags for a sandbox-less Lambda that would weaken what the page is tested under. */
const unwanted = new Set(["--disable-web-security", "--allow-running-insecure-content"])

export interface Chromium {
  readonly context: BrowserContext
  readonly close: () => Promise<void>
}

/** Headless Chromium with a fresh profile and nothing that reaches beyond loopback. */
export const launchChromium = async (): Promise<Chromium> => {
  const { default: sparticuz } = await import("@sparticuz/chromium")
  const dir = await unpack()
  const browser = await chromium.launch({
    executablePath: join(dir, "chromium"),
    headless: true,
    timeout: 30_000,
    args: [
      ...sparticuz.args.filter((arg) => !unwanted.has(arg)),
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic"
    ],
    env: {
      ...process.env,
      LD_LIBRARY_PATH: [join(dir, "al2023/lib"), process.env["LD_LIBRARY_PATH"]].filter(Boolean).join(":"),
      FONTCONFIG_FILE: join(dir, "fonts.conf")
    }
  })
  const context = await browser.newContext({ viewport: { width: 960, height: 540 } })
  return {
    context,
    close: async () => {
      await browser.close().catch(() => {})
    }
  }
}
