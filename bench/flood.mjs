// Floods a rate-limited object under `wrangler dev` with 200,000 frames from
// one connection and reports what the limit costs the server: the bytes it
// sends back, workerd's resident memory, when the flooder is cut off, and the
// round-trip latency a second, well-behaved client sees meanwhile.
//
//   npm run bench:flood
//
// Everything stays on 127.0.0.1; the run is bounded (under a minute).
import { spawn } from "node:child_process"
import { readFileSync, readdirSync } from "node:fs"
import { freePort } from "../test/browser/devServer.ts"
import { join, resolve } from "node:path"

const root = resolve(import.meta.dirname, "..")
const frames = Number(process.env.FLOOD_FRAMES ?? 200_000)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))


const port = await freePort()
const child = spawn(
  process.execPath,
  [
    join(root, "node_modules/wrangler/bin/wrangler.js"), "dev", "--config", "bench/flood/wrangler.toml",
    "--ip", "127.0.0.1", "--port", String(port), "--inspector-port", String(await freePort()),
    "--show-interactive-dev-session=false", "--live-reload=false"
  ],
  { cwd: root, detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false" } }
)
let output = ""
child.stdout.on("data", (d) => void (output += d))
child.stderr.on("data", (d) => void (output += d))
const stop = () => {
  try {
    process.kill(-child.pid, "SIGTERM")
  } catch {
    // already gone
  }
}
process.on("exit", stop)

const deadline = Date.now() + 60_000
for (;;) {
  try {
    if ((await fetch(`http://127.0.0.1:${port}/`)).status === 426) break
  } catch {
    // not listening yet
  }
  if (Date.now() > deadline) throw new Error(`wrangler dev did not start:\n${output}`)
  await sleep(200)
}

// workerd is a child of wrangler's process group: find it to read its memory.
const workerdPid = () => {
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
      const pgrp = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2])
      if (pgrp === child.pid && readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("workerd")) return pid
    } catch {
      // gone meanwhile
    }
  }
  return undefined
}
const rssMiB = (pid) => {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"))
  return Number(line.split(/\s+/)[1]) / 1024
}

const open = () =>
  new Promise((resolveSocket, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`)
    ws.addEventListener("open", () => resolveSocket(ws), { once: true })
    ws.addEventListener("error", () => reject(new Error("upgrade failed")), { once: true })
  })

const pid = workerdPid()
const flooder = await open()
const neighbour = await open()
// Warm up both paths before measuring.
for (let i = 0; i < 5; i++) neighbour.send(JSON.stringify({ type: "PING", meta: { correlationId: `w${i}` }, payload: { at: 0 } }))
await sleep(500)

const rssBefore = pid === undefined ? Number.NaN : rssMiB(pid)
let rssPeak = rssBefore
let bytesBack = 0
let notices = 0
let closed
flooder.addEventListener("message", (event) => {
  bytesBack += Buffer.byteLength(event.data)
  notices++
})
const started = Date.now()
flooder.addEventListener("close", (event) => void (closed = { code: event.code, reason: event.reason, afterMs: Date.now() - started }))

const latencies = []
neighbour.addEventListener("message", (event) => {
  const frame = JSON.parse(event.data)
  if (frame.type === "PONG" && frame.payload.at > 0) latencies.push(performance.now() - frame.payload.at)
})
const pinger = setInterval(() => {
  neighbour.send(JSON.stringify({ type: "PING", meta: { correlationId: `p${latencies.length}` }, payload: { at: performance.now() } }))
  if (pid !== undefined) rssPeak = Math.max(rssPeak, rssMiB(pid))
}, 100)

let bytesIn = 0
let framesSent = 0
for (let n = 0; n < frames && flooder.readyState === WebSocket.OPEN && Date.now() - started < 30_000; n++) {
  const frame = `{"type":"SPAM","payload":{"n":${n}}}`
  bytesIn += frame.length
  framesSent++
  flooder.send(frame)
  // Keep the client's own buffer bounded; the server sees the frames as fast as the socket carries them.
  if (n % 1000 === 999) while (flooder.bufferedAmount > 1 << 20) await sleep(1)
}
const sentMs = Date.now() - started
// Go on flooding at a trickle until cut off (at most 45 s), so the close is observed.
while (closed === undefined && Date.now() - started < 45_000) {
  if (flooder.readyState === WebSocket.OPEN) flooder.send("{\"type\":\"SPAM\",\"payload\":{\"n\":-1}}")
  await sleep(5)
}
await sleep(300)
clearInterval(pinger)
neighbour.close()
const objectSaw = await (await fetch(`http://127.0.0.1:${port}/stats`)).json()
stop()
// What workerd said about the object meanwhile (an overloaded or reset object shows here).
const warnings = output.split("\n").filter((line) => /overload|reset|exceeded|error/i.test(line) && !/Request\.cf/.test(line)).slice(0, 5)

latencies.sort((a, b) => a - b)
const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]?.toFixed(1)
console.log(JSON.stringify({
  framesSent,
  sentInMs: sentMs,
  bytesIn,
  bytesBack,
  framesBack: notices,
  bytesBackPerByteIn: Number((bytesBack / bytesIn).toFixed(5)),
  closed: closed ?? "not closed",
  objectSaw,
  warnings,
  workerdRssMiB: { before: Number(rssBefore.toFixed(1)), peak: Number(rssPeak.toFixed(1)) },
  neighbourRoundTripMs: { samples: latencies.length, p50: pct(0.5), p99: pct(0.99), max: latencies.at(-1)?.toFixed(1) }
}, null, 2))
process.exit(0)
