// CPU profile of one bench scenario: runs `vitest --config bench/vitest.config.ts`
// with workerd's inspector on and BENCH_PROFILE=<scenario>, attaches to the
// isolate that holds the clients and the Durable Objects, samples it for the
// whole scenario and prints where the time went (self time by function and
// by file).
//
//   npm run bench:profile -- ["echo" | "handler" | "publish fan-out to 1000" | "first publish" …]
//
// workerd serves its inspector only while the isolate is idle: the scenario
// runs between two idle pauses, the profiler starts before it and stops in
// the second pause, when the scenario has flagged itself done. Runs in Node 24 (global WebSocket and fetch); talks only to the
// inspector on 127.0.0.1.
import { spawn } from "node:child_process"
import { join, resolve } from "node:path"

const root = resolve(import.meta.dirname, "..")
const scenario = process.argv[2] ?? "echo"
const port = 9229
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

const child = spawn(
  join(root, "node_modules", ".bin", "vitest"),
  ["run", "--config", "bench/vitest.config.ts", "bench/contenders.measure.ts", `--inspect=127.0.0.1:${port}`, "--no-file-parallelism"],
  { cwd: root, stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, BENCH_PROFILE: scenario, BENCH_KEEP_NAMES: "0" }, detached: true }
)
// The run's own process group: vitest and the workerd it started.
const stop = () => {
  try {
    process.kill(-child.pid, "SIGTERM")
  } catch {
    // already gone
  }
}

const findTarget = async () => {
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    try {
      const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json()
      const runner = targets.find((t) => String(t.title).includes("vitest-plugin-runner"))
      if (runner !== undefined) return runner
    } catch {
      // inspector not listening yet
    }
    await sleep(250)
  }
  throw new Error("no vitest-plugin runner isolate on the inspector within 60 s")
}

const connect = async (url) => {
  const ws = new WebSocket(url)
  await new Promise((resolve, reject) => {
    ws.addEventListener("open", resolve, { once: true })
    ws.addEventListener("error", reject, { once: true })
  })
  let id = 0
  const pending = new Map()
  const contexts = []
  ws.addEventListener("message", (event) => {
    const message = JSON.parse(event.data)
    if (message.method === "Runtime.executionContextCreated") contexts.push(message.params.context.id)
    pending.get(message.id)?.(message)
    pending.delete(message.id)
  })
  const call = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${method}: no answer in 300 s`)), 300_000)
      pending.set(++id, (message) => {
        clearTimeout(timer)
        if (message.error !== undefined) reject(new Error(`${method}: ${message.error.message}`))
        else resolve(message.result)
      })
      ws.send(JSON.stringify({ id, method, params }))
    })
  return { call, contexts, close: () => ws.close() }
}

const report = (profile) => {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]))
  const byFunction = new Map()
  const byFile = new Map()
  const add = (map, key, n) => map.set(key, (map.get(key) ?? 0) + n)
  for (const sample of profile.samples) {
    const { functionName, url, lineNumber } = nodes.get(sample).callFrame
    const file = url === "" ? "(native)" : url.replace(/^file:\/\//, "").replace(`${root}/`, "")
    add(byFunction, `${functionName || "(anonymous)"}  ${file}${url === "" ? "" : `:${lineNumber + 1}`}`, 1)
    add(byFile, functionName.startsWith("(") && url === "" ? functionName : file, 1)
  }
  const total = profile.samples.length
  const print = (title, map, rows) => {
    console.log(`\n${title} (${total} samples)`)
    for (const [key, n] of [...map].sort((a, b) => b[1] - a[1]).slice(0, rows)) {
      console.log(`${((100 * n) / total).toFixed(1).padStart(6)} %  ${key}`)
    }
  }
  print("Self time by function", byFunction, 40)
  print("Self time by file", byFile, 25)
}

try {
  const target = await findTarget()
  const inspector = await connect(target.webSocketDebuggerUrl)
  await inspector.call("Profiler.enable")
  await inspector.call("Runtime.enable")
  await inspector.call("Profiler.setSamplingInterval", { interval: 100 })
  await inspector.call("Profiler.start")
  // Each evaluation is answered at the isolate's next idle moment: the first
  // pause (not done yet), then the second one (done).
  const expression = "globalThis.benchScenarioDone === true"
  const done = async () => {
    for (const contextId of inspector.contexts) {
      const { result } = await inspector.call("Runtime.evaluate", { expression, contextId })
      if (result.value === true) return true
    }
    return false
  }
  while (!(await done())) await sleep(500)
  const { profile } = await inspector.call("Profiler.stop")
  inspector.close()
  report(profile)
} finally {
  stop()
}
