import type { ChildProcess } from "node:child_process"
import { spawn } from "node:child_process"
import { mkdtemp, rm } from "node:fs/promises"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

export const root = fileURLToPath(new URL("../..", import.meta.url))

/** A port nobody listens on right now, on loopback. */
export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port")))
    })
  })

export interface DevServer {
  readonly url: string
  readonly port: number
  /** Where the Durable Objects' storage lives. */
  readonly persistTo: string
  /** Everything wrangler printed, for failure messages. */
  readonly output: () => string
  /** Ends wrangler and workerd; the storage is deleted unless kept (to start again on it). */
  readonly stop: (options?: { readonly keepStorage?: boolean }) => Promise<void>
}

export interface DevServerOptions {
  /** Defaults to a free port. */
  readonly port?: number
  /** Defaults to a fresh temporary directory. */
  readonly persistTo?: string
  readonly readyTimeoutMs?: number
  /** A wrangler.toml other than the root one (the chat example). */
  readonly config?: string
}

const exited = (child: ChildProcess, timeoutMs: number) =>
  new Promise<boolean>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(true)
    const timer = setTimeout(() => resolve(false), timeoutMs)
    child.once("exit", () => {
      clearTimeout(timer)
      resolve(true)
    })
  })

/**
 * Starts `wrangler dev` on the root wrangler.toml (the chat example), on a
 * loopback port (free unless given) with its storage in a fresh temporary
 * directory (unless given), and resolves once it serves the page. It runs
 * in its own process group so `stop` ends wrangler and workerd together.
 */
export const startDevServer = async (options: DevServerOptions = {}): Promise<DevServer> => {
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000
  const port = options.port ?? await freePort()
  const inspectorPort = await freePort()
  const persistTo = options.persistTo ?? await mkdtemp(join(tmpdir(), "durable-ws-chat-"))
  const child = spawn(
    process.execPath,
    [
      join(root, "node_modules/wrangler/bin/wrangler.js"),
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--inspector-port",
      String(inspectorPort),
      "--persist-to",
      persistTo,
      "--show-interactive-dev-session=false",
      "--live-reload=false",
      ...(options.config === undefined ? [] : ["--config", options.config])
    ],
    {
      cwd: root,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        // The build step runs `node`: the same one as this test.
        PATH: `${join(root, "node_modules/.bin")}:${process.env["PATH"] ?? ""}`,
        WRANGLER_SEND_METRICS: "false",
        WRANGLER_HIDE_BANNER: "true",
        CLOUDFLARE_CF_FETCH_ENABLED: "false"
      }
    }
  )
  let output = ""
  child.stdout?.on("data", (chunk: Buffer) => void (output += chunk.toString()))
  child.stderr?.on("data", (chunk: Buffer) => void (output += chunk.toString()))

  const stop = async ({ keepStorage = false }: { readonly keepStorage?: boolean } = {}) => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid, "SIGTERM")
      } catch {
        // already gone
      }
      if (!(await exited(child, 5000))) {
        try {
          process.kill(-child.pid, "SIGKILL")
        } catch {
          // already gone
        }
        await exited(child, 5000)
      }
    }
    if (!keepStorage) await rm(persistTo, { recursive: true, force: true })
  }

  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + readyTimeoutMs
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`wrangler dev exited with ${child.exitCode}`)
      try {
        const res = await fetch(`${url}/`, { signal: AbortSignal.timeout(2000) })
        if (res.ok) break
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`wrangler dev was not ready after ${readyTimeoutMs} ms`)
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
  } catch (error) {
    await stop()
    throw new Error(`${(error as Error).message}\n--- wrangler output ---\n${output}`)
  }
  return { url, port, persistTo, output: () => output, stop }
}
