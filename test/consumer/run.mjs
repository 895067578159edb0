// The consumer test (`npm run test:consumer`): durable-ws as a user gets it.
//
// It packs the library from a clean copy of the checkout (no dist/, so the
// tarball is only complete if `prepack` builds it), installs the tarball into
// a new Workers project, writes the README's marked code blocks into it as
// they are printed, typechecks them with `skipLibCheck: false`, bundles the
// browser-safe entries for the browser, imports them in Node, and runs the
// Quick start under `wrangler dev`, exchanging PING/PONG and the rpc.
//
// A README block is marked by an HTML comment on the line before its fence:
// `<!-- consumer: quick-start -->`. KEEP_CONSUMER=1 keeps the temporary
// directory for a look afterwards.
import { execFile, spawn } from "node:child_process"
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { build } from "esbuild"
import { freePort } from "../browser/devServer.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))
const totalTimeoutMs = 5 * 60_000
const started = Date.now()
const seconds = (since) => `${((Date.now() - since) / 1000).toFixed(1)} s`

const step = async (name, f) => {
  const at = Date.now()
  process.stdout.write(`consumer: ${name} ... `)
  const result = await f()
  process.stdout.write(`${seconds(at)}\n`)
  return result
}

const run = async (file, args, options = {}) => {
  try {
    return await promisify(execFile)(file, args, { timeout: 180_000, maxBuffer: 64 * 1024 * 1024, ...options })
  } catch (error) {
    throw new Error(`${[file, ...args].join(" ")} failed:\n${error.stdout ?? ""}${error.stderr ?? ""}${error.message}`)
  }
}

const node = (args, options) => run(process.execPath, args, options)
const npmCli = process.env["npm_execpath"]
const npm = (args, options) => npmCli ? node([npmCli, ...args], options) : run("npm", args, options)

/** The files whose marked blocks are checked: the README and every guide in docs/. */
const documents = async () => {
  const guides = (await readdir(join(root, "docs"), { recursive: true }))
    .filter((file) => file.endsWith(".md"))
    .sort()
    .map((file) => join("docs", file))
  return ["README.md", ...guides]
}

/** The marked blocks of the README and the guides, by name. */
const readmeBlocks = async () => {
  const blocks = new Map()
  for (const document of await documents()) {
    const lines = (await readFile(join(root, document), "utf8")).split("\n")
    for (let i = 0; i < lines.length; i++) {
      const marker = /^<!-- consumer: ([\w.-]+) -->$/.exec(lines[i])
      if (marker === null) continue
      const name = marker[1]
      let j = i + 1
      while (lines[j] === "") j++
      if (!/^```\w*$/.test(lines[j] ?? "")) throw new Error(`${document}:${i + 1}: "${name}" is not followed by a code fence`)
      const end = lines.indexOf("```", j + 1)
      if (end === -1) throw new Error(`${document}:${j + 1}: unclosed fence`)
      if (blocks.has(name)) throw new Error(`${document}:${i + 1}: "${name}" is marked twice`)
      blocks.set(name, lines.slice(j + 1, end).join("\n") + "\n")
    }
  }
  return blocks
}

const block = (blocks, name) => {
  const text = blocks.get(name)
  if (text === undefined) throw new Error(`no block in README.md or docs/ is marked <!-- consumer: ${name} -->`)
  return text
}

const versionOf = async (name) =>
  JSON.parse(await readFile(join(root, "node_modules", name, "package.json"), "utf8")).version


const work = await mkdtemp(join(tmpdir(), "durable-ws-consumer-"))
const checkout = join(work, "checkout")
const app = join(work, "app")
let wrangler

const cleanUp = async () => {
  if (wrangler !== undefined && wrangler.exitCode === null && wrangler.signalCode === null) {
    try {
      process.kill(-wrangler.pid, "SIGKILL")
    } catch {
      // already gone
    }
  }
  if (process.env["KEEP_CONSUMER"] === "1") console.log(`consumer: kept ${work}`)
  else await rm(work, { recursive: true, force: true })
}

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, async () => {
    await cleanUp()
    process.exit(1)
  })
}

const watchdog = setTimeout(async () => {
  console.error(`\nconsumer: gave up after ${totalTimeoutMs / 1000} s`)
  await cleanUp()
  process.exit(1)
}, totalTimeoutMs)

/**
 * Starts `wrangler dev` in the consumer project with `config`, waits until
 * `probe` is answered by a Durable Object (426 Upgrade Required), runs
 * `drive` with the host, and stops it.
 */
const underWranglerDev = async (config, probe, drive) => {
  const port = await freePort()
  const inspectorPort = await freePort()
  let output = ""
  wrangler = spawn(process.execPath, [
    join(app, "node_modules/wrangler/bin/wrangler.js"),
    "dev",
    "--config",
    config,
    "--ip",
    "127.0.0.1",
    "--port",
    String(port),
    "--inspector-port",
    String(inspectorPort),
    "--persist-to",
    join(work, "state"),
    "--show-interactive-dev-session=false",
    "--live-reload=false"
  ], {
    cwd: app,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", WRANGLER_HIDE_BANNER: "true", CLOUDFLARE_CF_FETCH_ENABLED: "false" }
  })
  wrangler.stdout.on("data", (chunk) => void (output += chunk))
  wrangler.stderr.on("data", (chunk) => void (output += chunk))
  try {
    const base = `127.0.0.1:${port}`
    const deadline = Date.now() + 60_000
    for (;;) {
      if (wrangler.exitCode !== null) throw new Error(`wrangler dev exited with ${wrangler.exitCode}`)
      // Any answer will do: the object answers a plain GET with 426 Upgrade Required.
      const res = await fetch(`http://${base}${probe}`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined)
      if (res?.status === 426) break
      if (res !== undefined) throw new Error(`GET ${probe} answered ${res.status}, expected 426 from the Durable Object`)
      if (Date.now() > deadline) throw new Error("wrangler dev was not ready after 60 s")
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
    await drive(base)
  } catch (error) {
    throw new Error(`${error.message}\n--- wrangler output ---\n${output}`)
  } finally {
    await stopWrangler()
  }
}

const stopWrangler = async () => {
  const running = wrangler
  if (running === undefined || running.exitCode !== null || running.signalCode !== null) return
  const exited = new Promise((resolve) => running.once("exit", resolve))
  try {
    process.kill(-running.pid, "SIGKILL")
  } catch {
    return
  }
  await exited
}

/**
 * Drives the Effect example with two raw sockets: both JOIN the room, one
 * says something, both hear it as SAID. Each wait is bounded.
 */
const effectDrive = `
const url = process.argv[1]
const within = (ms, what, promise) => Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error("no " + what + " within " + ms + " ms")), ms).unref())])
const open = async () => {
  const socket = new WebSocket(url)
  const frames = []
  const waiting = []
  socket.addEventListener("message", (event) => {
    const frame = JSON.parse(event.data)
    const wake = waiting.shift()
    if (wake === undefined) frames.push(frame); else wake(frame)
  })
  await within(10000, "open", new Promise((resolve, reject) => { socket.addEventListener("open", resolve); socket.addEventListener("error", () => reject(new Error("cannot connect"))) }))
  const next = (what) => within(10000, what, frames.length > 0 ? Promise.resolve(frames.shift()) : new Promise((resolve) => void waiting.push(resolve)))
  return { socket, next }
}
const ada = await open()
const grace = await open()
for (const member of [ada, grace]) {
  member.socket.send(JSON.stringify({ type: "JOIN", meta: { correlationId: "j" }, payload: { room: "lobby" } }))
  const joined = await member.next("JOINED")
  if (joined.type !== "JOINED") throw new Error("unexpected answer to JOIN: " + JSON.stringify(joined))
}
ada.socket.send(JSON.stringify({ type: "SAY", payload: { room: "lobby", text: "hello" } }))
for (const member of [ada, grace]) {
  const said = await member.next("SAID")
  if (said.type !== "SAID" || said.payload.text !== "hello" || typeof said.payload.from !== "string") throw new Error("unexpected: " + JSON.stringify(said))
}
ada.socket.close(1000)
grace.socket.close(1000)
console.log("SAID reached both members")
`

try {
  const blocks = await readmeBlocks()

  const tarball = await step("npm pack from a clean checkout", async () => {
    // The files git would check out (tracked, and new ones not ignored): no dist/, no .wrangler/.
    const { stdout } = await run("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: root })
    for (const file of stdout.split("\0").filter(Boolean)) {
      await cp(join(root, file), join(checkout, file), { recursive: true, errorOnExist: false }).catch((error) => {
        if (error.code !== "ENOENT") throw error // deleted in the working tree
      })
    }
    await symlink(join(root, "node_modules"), join(checkout, "node_modules"), "dir")
    await npm(["pack", "--pack-destination", work, "--loglevel", "warn"], { cwd: checkout })
    const name = (await readdir(work)).find((file) => file.endsWith(".tgz"))
    if (name === undefined) throw new Error("npm pack wrote no tarball")
    return join(work, name)
  })

  await step("a new Workers project: install the tarball, effect, wrangler, typescript, workers types", async () => {
    const pkg = {
      name: "durable-ws-consumer",
      private: true,
      type: "module",
      dependencies: {
        "durable-ws": `file:${tarball}`,
        effect: await versionOf("effect"),
        // The optional peers of durable-ws/zod and durable-ws/valibot: every entry is typechecked below.
        valibot: await versionOf("valibot"),
        zod: await versionOf("zod")
      },
      devDependencies: {
        "@cloudflare/workers-types": await versionOf("@cloudflare/workers-types"),
        typescript: await versionOf("typescript"),
        wrangler: await versionOf("wrangler")
      },
      // npm runs install scripts only for the packages a project approves.
      allowScripts: { esbuild: true, workerd: true }
    }
    await mkdir(join(app, "src"), { recursive: true })
    await writeFile(join(app, "package.json"), JSON.stringify(pkg, null, 2) + "\n")
    // The repository's own install filled npm's cache with these versions.
    await npm(["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel", "error"], { cwd: app })
  })

  await step("npm publish --dry-run: clean, with what a user needs and nothing else", async () => {
    const { stdout, stderr } = await npm(["publish", "--dry-run", "--json", "--loglevel", "warn"], { cwd: checkout })
    // The only complaint allowed is that nobody is logged in to the registry (a dry run needs no login).
    const complaints = stderr.split("\n").filter((line) => /\b(warn|error)\b/i.test(line) && !/logged in/.test(line))
    if (complaints.length > 0) throw new Error(`npm publish --dry-run complained:\n${complaints.join("\n")}`)
    const report = JSON.parse(stdout.slice(stdout.indexOf("{")))
    const packed = new Set((report.files ?? report["durable-ws"]?.files ?? []).map((file) => file.path))
    const { exports } = JSON.parse(await readFile(join(checkout, "package.json"), "utf8"))
    const needed = ["README.md", "CHANGELOG.md", "LICENSE", "package.json"]
    for (const target of Object.values(exports)) needed.push(target.types.slice(2), target.import.slice(2))
    const missing = needed.filter((file) => !packed.has(file))
    if (missing.length > 0) throw new Error(`the package would lack ${missing.join(", ")}`)
    const stray = [...packed].filter((file) => !/^(dist|src)\//.test(file) && !needed.includes(file))
    if (stray.length > 0) throw new Error(`the package would ship ${stray.join(", ")}`)
  })

  await step("the installed package: LICENSE, and maps that lead into its src/", async () => {
    const pkgDir = join(app, "node_modules/durable-ws")
    await readFile(join(pkgDir, "LICENSE"), "utf8")
    const files = await readdir(join(pkgDir, "dist"), { recursive: true })
    const declarations = files.filter((file) => file.endsWith(".d.ts"))
    const scripts = files.filter((file) => file.endsWith(".js"))
    if (declarations.length === 0 || scripts.length === 0) throw new Error("dist/ holds no declarations or scripts")
    for (const file of [...declarations, ...scripts]) {
      const map = JSON.parse(await readFile(join(pkgDir, "dist", `${file}.map`), "utf8").catch(() => {
        throw new Error(`dist/${file} has no source map`)
      }))
      for (const source of map.sources) {
        await readFile(join(pkgDir, "dist", dirname(file), source)).catch(() => {
          throw new Error(`dist/${file}.map points at ${source}, which the package does not hold`)
        })
      }
    }
  })

  await step("README blocks into the project, wrangler types", async () => {
    await writeFile(join(app, "wrangler.toml"), block(blocks, "wrangler.toml"))
    await writeFile(join(app, "src/index.ts"), block(blocks, "quick-start"))
    await writeFile(join(app, "src/effect-handlers.ts"), block(blocks, "effect-handlers"))
    await writeFile(join(app, "src/migrate-quick-start.ts"), block(blocks, "migrate-quick-start"))
    await writeFile(join(app, "src/migrate-chat.ts"), block(blocks, "migrate-chat"))
    await writeFile(join(app, "src/migrate-zod.ts"), block(blocks, "migrate-zod"))
    await writeFile(join(app, "src/effect-storage.d.ts"), block(blocks, "storage-shim"))
    // Every public entry, so that every published declaration file is checked.
    const { exports } = JSON.parse(await readFile(join(app, "node_modules/durable-ws/package.json"), "utf8"))
    const workerEntries = Object.keys(exports).filter((entry) => entry !== "./client")
    await writeFile(
      join(app, "src/entries.ts"),
      workerEntries.map((entry, i) => `import type * as E${i} from "${join("durable-ws", entry)}"`).join("\n") +
        `\nexport type Entries = [${workerEntries.map((_, i) => `typeof E${i}`).join(", ")}]\n`
    )
    await mkdir(join(app, "client"))
    await writeFile(join(app, "client/client.ts"), block(blocks, "client"))

    const wranglerCli = join(app, "node_modules/wrangler/bin/wrangler.js")
    const env = { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" }
    await node([wranglerCli, "types"], { cwd: app, env })
    await node([wranglerCli, "types", "--include-runtime=false", "env-only.d.ts"], { cwd: app, env })
  })

  await step("typecheck: strict, skipLibCheck false (wrangler types; @cloudflare/workers-types; client with DOM and nodenext)", async () => {
    const readme = JSON.parse(block(blocks, "tsconfig.json"))
    const stricter = {
      skipLibCheck: false,
      noUnusedLocals: true,
      noUnusedParameters: true,
      exactOptionalPropertyTypes: true,
      noUncheckedIndexedAccess: true
    }
    const configs = {
      "tsconfig.check.json": { ...readme, compilerOptions: { ...readme.compilerOptions, ...stricter } },
      "tsconfig.workers-types.json": {
        ...readme,
        compilerOptions: { ...readme.compilerOptions, ...stricter, types: ["@cloudflare/workers-types"] },
        include: [...readme.include, "env-only.d.ts"]
      },
      "tsconfig.client.json": {
        compilerOptions: {
          target: "ES2022",
          lib: ["ES2023", "DOM"],
          module: "nodenext",
          moduleResolution: "nodenext",
          types: [],
          strict: true,
          noEmit: true,
          ...stricter
        },
        include: ["client"]
      }
    }
    const tsc = join(app, "node_modules/typescript/bin/tsc")
    await Promise.all(Object.entries(configs).map(async ([file, config]) => {
      await writeFile(join(app, file), JSON.stringify(config, null, 2))
      await node([tsc, "-p", file], { cwd: app })
    }))
  })

  await step("browser bundles of durable-ws/Message, durable-ws/Protocol, durable-ws/client (both faces), durable-ws/CloseCodes, durable-ws/Errors and the client snippet", async () => {
    const entries = {
      "durable-ws/Message": `export * from "durable-ws/Message"`,
      "durable-ws/Protocol": `export * from "durable-ws/Protocol"`,
      "durable-ws/client": `export * from "durable-ws/client"`,
      "durable-ws/client/effect": `export * from "durable-ws/client/effect"`,
      "durable-ws/CloseCodes": `export * from "durable-ws/CloseCodes"`,
      "durable-ws/Errors": `export * from "durable-ws/Errors"`
    }
    const bundle = async (name, options) => {
      const result = await build({
        absWorkingDir: app,
        bundle: true,
        write: false,
        platform: "browser",
        format: "esm",
        target: "es2022",
        logLevel: "silent",
        // Left external so that they show up as imports below rather than as a resolution error.
        external: ["cloudflare:*", "node:*"],
        metafile: true,
        ...options
      }).catch((error) => {
        throw new Error(`${name} does not bundle for the browser:\n${error.message}`)
      })
      const runtimeImports = Object.values(result.metafile.outputs)
        .flatMap((output) => output.imports)
        .filter((imported) => imported.external)
        .map((imported) => imported.path)
      if (runtimeImports.length > 0) throw new Error(`${name} imports ${runtimeImports.join(", ")} in a browser bundle`)
    }
    for (const [name, contents] of Object.entries(entries)) {
      await bundle(name, { stdin: { contents, resolveDir: app, loader: "js" } })
    }
    await bundle("the README's client snippet", { entryPoints: ["client/client.ts"] })
  })

  await step("Node imports durable-ws/Message, durable-ws/client, durable-ws/Errors, durable-ws/Testing", async () => {
    const { stdout } = await node([
      "--input-type=module",
      "-e",
      `const m = await import("durable-ws/Message"); const c = await import("durable-ws/client"); await import("durable-ws/Errors")
       const t = await import("durable-ws/Testing"); const r = await import("durable-ws/Router")
       const Ping = m.message("PING"); const Pong = m.message("PONG")
       const runtime = t.make(r.createRouter().on(Ping, (ctx) => ctx.send(Pong)), {})
       const conn = await runtime.connect(); await conn.send({ type: "PING" })
       console.log(typeof m.message, typeof c.createClient, conn.frames[0]?.type)`
    ], { cwd: app })
    if (stdout.trim() !== "function function PONG") throw new Error(`unexpected exports: ${stdout}`)
  })

  await step("the Testing example in plain Node", async () => {
    await writeFile(join(app, "testing.ts"), block(blocks, "testing"))
    const { stdout } = await node(["--experimental-strip-types", "--no-warnings", "testing.ts"], { cwd: app, timeout: 30_000 })
    if (stdout.trim() !== "{ reply: 'Got: hi' }") throw new Error(`the Testing example printed ${JSON.stringify(stdout)}`)
  })

  await step("the Quick start under wrangler dev: PING/PONG, the rpc through durable-ws/client, and the Client section's example", async () => {
    await underWranglerDev("wrangler.toml", "/?room=lobby", async (base) => {
      await cp(join(root, "test/consumer/drive.mjs"), join(app, "drive.mjs"))
      const { stdout } = await node(["drive.mjs", `ws://${base}/?room=lobby`], { cwd: app, timeout: 30_000 })
      process.stdout.write(`(${stdout.trim()}) `)
      // The Client section's example, as printed but for the port: it talks to the Quick start and exits.
      const snippet = await readFile(join(app, "client/client.ts"), "utf8")
      if (!snippet.includes("ws://localhost:8787")) throw new Error("the client example no longer connects to ws://localhost:8787")
      await writeFile(join(app, "client/run.ts"), snippet.replaceAll("ws://localhost:8787", `ws://${base}`))
      const ran = await node(["--experimental-strip-types", "--no-warnings", "client/run.ts"], { cwd: app, timeout: 30_000 })
      const lines = ran.stdout.trim().split("\n")
      if (lines.join("|") !== "Got: hi|user: Ada") throw new Error(`the client example printed ${JSON.stringify(ran.stdout)}`)
    })
  })

  await step("the Effect example under wrangler dev: two members of a room hear what one says", async () => {
    await writeFile(join(app, "wrangler.effect.toml"), block(blocks, "effect-wrangler.toml"))
    await underWranglerDev("wrangler.effect.toml", "/?room=lobby", async (base) => {
      const { stdout } = await node(["--input-type=module", "-e", effectDrive, `ws://${base}/?room=lobby`], { cwd: app, timeout: 30_000 })
      process.stdout.write(`(${stdout.trim()}) `)
    })
  })

  console.log(`consumer: passed in ${seconds(started)}`)
} catch (error) {
  console.error(`\nconsumer: FAILED\n${error.stack ?? error}`)
  process.exitCode = 1
} finally {
  clearTimeout(watchdog)
  await cleanUp()
}
