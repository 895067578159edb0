import { access, mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { BrowserContext } from "playwright-core"
import { chromium } from "playwright-core"

/** Debian's Chromium; `.ci/run` installs it when missing. */
export const chromiumPath = "/usr/bin/chromium"

/** The system Chromium, else the one `@sparticuz/chromium` unpacks (when that package is installed). */
const executablePath = async (): Promise<string> => {
  try {
    await access(chromiumPath)
    return chromiumPath
  } catch {
    const name = "@sparticuz/chromium"
    const bundled = (await import(name)) as { default: { executablePath: () => Promise<string> } }
    return bundled.default.executablePath()
  }
}

export interface Chromium {
  readonly context: BrowserContext
  readonly close: () => Promise<void>
}

/** Headless Chromium with a fresh profile and nothing that reaches beyond loopback. */
export const launchChromium = async (): Promise<Chromium> => {
  const userDataDir = await mkdtemp(join(tmpdir(), "durable-ws-chromium-"))
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: await executablePath(),
    headless: true,
    viewport: { width: 960, height: 540 },
    timeout: 30_000,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic"
    ]
  }).catch(async (error: unknown) => {
    await rm(userDataDir, { recursive: true, force: true })
    throw error
  })
  return {
    context,
    close: async () => {
      await context.close().catch(() => {})
      await rm(userDataDir, { recursive: true, force: true })
    }
  }
}
