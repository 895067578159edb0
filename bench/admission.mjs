// Admission and memory: a reconnect storm against each contender, each in
// its own fresh `wrangler dev` (bench/wrangler.toml), as after a deploy
// every client of a room comes back at once.
//
//   node bench/admission.mjs            (part of `npm run bench`)
//   BENCH_QUICK=1 node bench/admission.mjs
//
// Per contender: a warm-up storm opens and closes again; one socket opens the room; then `storm` sockets open and
// subscribe (`?topic=news`, `SUBSCRIBE` → `SUBSCRIBED`), `inFlight` at a
// time, and the rate is sockets ÷ elapsed. The isolate's heap is read
// through the inspector (two heap snapshots, each after a full GC, then
// `Runtime.getHeapUsage`)
// before and after the storm: ÷ sockets is the heap per awake connection.
// Then the room is left idle until workerd evicts the object (its sockets
// hibernate), one publish wakes it and reaches every socket, and the heap
// is read again: the heap per connection after a wake. Runs in Node 24
// (global WebSocket and fetch) and talks only to 127.0.0.1.
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { freePort } from "../test/browser/devServer.ts"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"

const root = resolve(import.meta.dirname, "..")
const quick = process.env.BENCH_QUICK === "1"
const storm = quick ? 200 : 3000
const inFlight = 100
const warmUp = quick ? 50 : 300
const contenders = [
  { key: "raw", name: "raw Hibernation API" },
  { key: "promise", name: "durable-ws" },
  { key: "party", name: "partyserver" }
]
const timeoutMs = 120_000
const idleForEvictionMs = 30_000
const progress = (line) => process.stderr.write(`admission: ${line}\n`)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))


const startDev = async () => {
  const port = await freePort()
  const inspectorPort = await freePort()
  const persistTo = mkdtempSync(join(tmpdir(), "durable-ws-admission-"))
  const child = spawn(
    process.execPath,
    [
      join(root, "node_modules/wrangler/bin/wrangler.js"),
      "dev",
      "--config", "bench/wrangler.toml",
      "--ip", "127.0.0.1",
      "--port", String(port),
      "--inspector-port", String(inspectorPort),
      "--persist-to", persistTo,
      "--show-interactive-dev-session=false",
      "--live-reload=false"
    ],
    {
      cwd: root,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        PATH: `${join(root, "node_modules/.bin")}:${process.env.PATH ?? ""}`,
        WRANGLER_SEND_METRICS: "false",
        WRANGLER_HIDE_BANNER: "true",
        CLOUDFLARE_CF_FETCH_ENABLED: "false"
      }
    }
  )
  let output = ""
  child.stdout.on("data", (c) => void (output += c))
  child.stderr.on("data", (c) => void (output += c))
  const stop = async () => {
    try {
      process.kill(-child.pid, "SIGTERM")
    } catch {
      // already gone
    }
    await Promise.race([new Promise((r) => child.once("exit", r)), sleep(5000)])
    rmSync(persistTo, { recursive: true, force: true })
  }
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 90_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited with ${child.exitCode}\n${output}`)
    try {
      const res = await fetch(`${url}/raw/ready/__stats`, { signal: AbortSignal.timeout(2000) })
      if (res.ok) break
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`wrangler dev was not ready after 90 s\n${output}`)
    }
    await sleep(250)
  }
  return { url, inspectorPort, stop }
}

/** The worker isolate's inspector: forced GCs and the heap in use. */
const inspect = async (inspectorPort) => {
  const deadline = Date.now() + 30_000
  let target
  while (target === undefined) {
    try {
      const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json()
      target = targets.find((t) => t.webSocketDebuggerUrl !== undefined)
    } catch {
      // not listening yet
    }
    if (target === undefined) {
      if (Date.now() > deadline) throw new Error("no inspector target within 30 s")
      await sleep(250)
    }
  }
  // wrangler's inspector proxy refuses a connection without an Origin it knows.
  const ws = new WebSocket(target.webSocketDebuggerUrl, { headers: { Origin: `http://127.0.0.1:${inspectorPort}` } })
  await new Promise((ok, fail) => {
    ws.addEventListener("open", ok, { once: true })
    ws.addEventListener("error", fail, { once: true })
  })
  let id = 0
  const pending = new Map()
  ws.addEventListener("message", (event) => {
    const message = JSON.parse(event.data)
    pending.get(message.id)?.(message)
    pending.delete(message.id)
  })
  const call = (method, params = {}) =>
    new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`${method}: no answer in 60 s`)), 60_000)
      pending.set(++id, (message) => {
        clearTimeout(timer)
        if (message.error !== undefined) fail(new Error(`${method}: ${message.error.message}`))
        else ok(message.result)
      })
      ws.send(JSON.stringify({ id, method, params }))
    })
  // workerd does not answer HeapProfiler.collectGarbage; a heap snapshot collects garbage first.
  await call("HeapProfiler.enable")
  const heap = async () => {
    for (let i = 0; i < 2; i++) await call("HeapProfiler.takeHeapSnapshot", { reportProgress: false })
    return (await call("Runtime.getHeapUsage")).usedSize
  }
  return { heap, close: () => ws.close() }
}

const subscribeFrame = JSON.stringify({ type: "SUBSCRIBE", payload: { topic: "news" } })
const publishFrame = JSON.stringify({ type: "PUBLISH", payload: { topic: "news", n: 0, text: "wake up" } })

/** Opens a socket to the room and resolves once it is subscribed. */
const subscriber = (url, contender) =>
  new Promise((ok, fail) => {
    const ws = new WebSocket(`${url.replace("http", "ws")}/${contender}/storm?topic=news`)
    const timer = setTimeout(() => fail(new Error(`${contender}: no SUBSCRIBED within ${timeoutMs} ms`)), timeoutMs)
    const socket = { ws, onNews: () => {} }
    ws.addEventListener("open", () => ws.send(subscribeFrame), { once: true })
    ws.addEventListener("error", () => fail(new Error(`${contender}: socket error`)), { once: true })
    ws.addEventListener("message", (event) => {
      const data = String(event.data)
      if (data.startsWith("{\"type\":\"SUBSCRIBED\"")) {
        clearTimeout(timer)
        ok(socket)
      } else if (data.startsWith("{\"type\":\"NEWS\"")) {
        socket.onNews()
      }
    })
  })

/** Opens `count` subscribers, `inFlight` at a time. */
const stormOf = async (url, contender, count) => {
  const sockets = []
  let next = 0
  const worker = async () => {
    while (next < count) {
      next++
      sockets.push(await subscriber(url, contender))
    }
  }
  await Promise.all(Array.from({ length: inFlight }, worker))
  return sockets
}

/** Closes a socket and resolves once its close is acknowledged (or after 10 s). */
const closed = (socket) =>
  new Promise((ok) => {
    const timer = setTimeout(ok, 10_000)
    socket.ws.addEventListener("close", () => {
      clearTimeout(timer)
      ok()
    }, { once: true })
    socket.ws.close(1000)
  })

const stats = async (url, contender) => (await fetch(`${url}/${contender}/storm/__stats`)).json()

const measure = async ({ key }) => {
  const dev = await startDev()
  try {
    const inspector = await inspect(dev.inspectorPort)
    try {
      // A warm-up storm, closed again, so that no contender is timed on a cold isolate.
      const warm = await stormOf(dev.url, key, warmUp)
      await Promise.all(warm.map((socket) => closed(socket)))
      const first = await subscriber(dev.url, key)
      const before = await inspector.heap()
      const start = performance.now()
      const sockets = await stormOf(dev.url, key, storm)
      const seconds = (performance.now() - start) / 1000
      const awake = await inspector.heap()
      progress(`${key}: ${storm} sockets in ${seconds.toFixed(1)} s, heap read; idle for ${idleForEvictionMs / 1000} s`)
      // Idle: workerd evicts the object once nothing has happened for a while (its sockets hibernate).
      const { born } = await stats(dev.url, key)
      await sleep(idleForEvictionMs)
      const everyone = [first, ...sockets]
      // partyserver's broadcast leaves the publisher out.
      const expected = key === "party" ? everyone.length - 1 : everyone.length
      let delivered = true
      await new Promise((ok, fail) => {
        let news = 0
        const timer = setTimeout(() => fail(new Error(`${key}: ${news} of ${expected} NEWS after the wake`)), timeoutMs)
        for (const socket of everyone) {
          socket.onNews = () => {
            if (++news === expected) {
              clearTimeout(timer)
              ok()
            }
          }
        }
        first.ws.send(publishFrame)
      }).catch((error) => {
        delivered = false
        progress(String(error))
      })
      const woken = (await stats(dev.url, key)).born !== born
      const afterWake = await inspector.heap()
      progress(`${key}: woken ${woken}, heap after the wake read`)
      for (const socket of everyone) socket.ws.close(1000)
      return {
        rate: storm / seconds,
        seconds,
        awakeKiB: (awake - before) / storm / 1024,
        wakeKiB: woken && delivered ? (afterWake - before) / storm / 1024 : undefined
      }
    } finally {
      inspector.close()
    }
  } finally {
    await dev.stop()
  }
}

const results = new Map()
for (const contender of contenders) results.set(contender.key, await measure(contender))

const raw = results.get("raw")
const dws = results.get("promise")
const party = results.get("party")
const fmt = (n, digits = 2) => n === undefined ? "–" : n.toFixed(digits)
const rows = contenders.map(({ key, name }) => {
  const r = results.get(key)
  return [name, fmt(r.seconds, 1), fmt(r.rate, 0), fmt(r.rate / raw.rate), fmt(r.awakeKiB), fmt(r.wakeKiB)]
})
const header = ["contender", "storm (s)", "sockets/s", "÷ raw rate", "heap per awake connection (KiB)", "after a wake (KiB)"]
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
const line = (cells) => "| " + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ") + " |"
const rule = "|" + widths.map((w, i) => (i === 0 ? "-".repeat(w + 2) : "-".repeat(w + 1) + ":")).join("|") + "|"
const verdict = (ok) => (ok ? "met" : "MISSED")
console.log(`\nAdmission: ${storm} sockets open and subscribe, ${inFlight} at a time, each contender in its own fresh wrangler dev`)
console.log(["", line(header), rule, ...rows.map(line), ""].join("\n"))
console.log("Targets:")
console.log(`- admission ≥ 0.8× raw's rate: durable-ws ${fmt(dws.rate / raw.rate)}× ${verdict(dws.rate / raw.rate >= 0.8)}`)
console.log(`- heap per awake connection ≤ 0.6 KiB: durable-ws ${fmt(dws.awakeKiB)} KiB ${verdict(dws.awakeKiB <= 0.6)} (partyserver ${fmt(party.awakeKiB)})`)
const gap = dws.wakeKiB === undefined ? undefined : dws.awakeKiB - dws.wakeKiB
console.log(
  `- heap per connection the same after an upgrade as after a wake (within 0.1 KiB): durable-ws ${fmt(dws.awakeKiB)} vs ${fmt(dws.wakeKiB)} KiB ${
    gap === undefined ? "MISSED (the object was not evicted)" : verdict(Math.abs(gap) <= 0.1)
  }`
)
