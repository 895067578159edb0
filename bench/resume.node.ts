// What a resume can cost the server, measured through `wrangler dev` (test/load/restart: the
// recovery fixture at its defaults, and `Lingering` whose sessions expire after 20 s):
//
//   npm run bench:resume
//
// 1. A resume loop: one session subscribed to 100 topics, with 100 KB logged per topic, resumed
//    from seq 0 as fast as the server answers for 10 s (raw sockets, so every byte each way is
//    counted). Reports bytes out per byte in, and the resumes granted and refused (429).
// 2. Meanwhile a neighbour sends an rpc every 10 ms: its round trips, p50 and p99, before and during.
// 3. 20,000 connect-and-drop cycles on a `Lingering` object (the sessions of the last 20 s are still
//    there at the end), then, once they have all expired, the round trip of the first publish to a
//    subscriber, and the session rows before and after.
//
// Everything stays on 127.0.0.1; the run is bounded (a few minutes at most).
import { randomBytes } from "node:crypto"
import { connect } from "node:net"
import type { Socket } from "node:net"
import { freePort, startDevServer } from "../test/browser/devServer.ts"

const loopMs = Number(process.env["RESUME_LOOP_MS"] ?? 10_000)
const cycles = Number(process.env["DROP_CYCLES"] ?? 20_000)
const topics = 100
const perTopic = 100
const line = "x".repeat(1000)

const port = await freePort()
const server = await startDevServer({ port, config: "test/load/restart/wrangler.toml" })
const base = `http://127.0.0.1:${port}`
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Every wait is bounded: a dev server that reset the object shows up as a timeout, not a hang. */
const withTimeout = <A>(promise: Promise<A>, what: string, ms = 15_000): Promise<A> =>
  Promise.race([
    promise,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms))
  ])

/** One upgrade on a raw socket: every byte each way counted, server frames parsed (they are unmasked). */
interface RawResult {
  readonly status: number
  readonly bytesIn: number
  readonly bytesOut: number
  readonly frames: ReadonlyArray<{ readonly type: string; readonly payload?: Record<string, unknown> }>
}

const rawUpgrade = (path: string, until: (type: string) => boolean): Promise<RawResult> =>
  new Promise((resolve, reject) => {
    const request = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`
    const socket: Socket = connect(port, "127.0.0.1")
    let received = Buffer.alloc(0)
    let bytesIn = 0
    let status = 0
    let body = -1
    const frames: Array<{ type: string; payload?: Record<string, unknown> }> = []
    const done = () => {
      socket.destroy()
      resolve({ status, bytesIn, bytesOut: Buffer.byteLength(request), frames })
    }
    socket.setTimeout(15_000, () => socket.destroy(new Error(`no answer to ${path}`)))
    socket.on("connect", () => socket.write(request))
    socket.on("error", reject)
    socket.on("close", () => resolve({ status, bytesIn, bytesOut: Buffer.byteLength(request), frames }))
    socket.on("data", (chunk: Buffer) => {
      bytesIn += chunk.length
      received = Buffer.concat([received, chunk])
      if (body < 0) {
        const end = received.indexOf("\r\n\r\n")
        if (end < 0) return
        status = Number(received.subarray(9, 12).toString())
        body = end + 4
        if (status !== 101) return done()
        received = received.subarray(body)
      }
      for (;;) {
        if (received.length < 2) return
        let length = received[1]! & 0x7f
        let offset = 2
        if (length === 126) {
          if (received.length < 4) return
          length = received.readUInt16BE(2)
          offset = 4
        } else if (length === 127) {
          if (received.length < 10) return
          length = Number(received.readBigUInt64BE(2))
          offset = 10
        }
        if (received.length < offset + length) return
        const text = received.subarray(offset, offset + length).toString()
        received = received.subarray(offset + length)
        const frame = JSON.parse(text) as { type: string; payload?: Record<string, unknown> }
        frames.push(frame)
        if (until(frame.type)) return done()
      }
    })
  })

const post = async (path: string, body: unknown) => {
  const res = await fetch(`${base}${path}`, { method: "POST", body: JSON.stringify(body) })
  if (!res.ok) throw new Error(`${path} answered ${res.status}`)
  return res.json()
}

const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
}

/** A well-behaved client: an rpc every 10 ms, each round trip recorded in `into` while it is set. */
const neighbour = async (room: string) => {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/room/${room}`)
  await new Promise((resolve, reject) => {
    ws.addEventListener("open", resolve)
    ws.addEventListener("error", reject)
  })
  const sent = new Map<string, number>()
  let into: Array<number> | undefined
  ws.addEventListener("message", (event) => {
    const frame = JSON.parse(String(event.data)) as { meta?: { correlationId?: string } }
    const at = sent.get(frame.meta?.correlationId ?? "")
    if (at !== undefined) into?.push(performance.now() - at)
  })
  let n = 0
  const timer = setInterval(() => {
    const correlationId = `n${n++}`
    sent.set(correlationId, performance.now())
    ws.send(JSON.stringify({ type: "R_WHO_AM_I", meta: { correlationId } }))
  }, 10)
  return {
    record: (samples: Array<number> | undefined) => void (into = samples),
    stop: () => {
      clearInterval(timer)
      ws.close(1000)
    }
  }
}

try {
  // -- 1 and 2: the resume loop and its neighbour ------------------------------------------
  const room = "resume-loop"
  const first = await rawUpgrade(`/room/${room}`, (type) => type === "$session")
  let credentials = first.frames[0]!.payload as { sessionId: string; token: string }
  // Join the topics on a real socket of that session (the raw one is gone), confirmed by an rpc.
  const joiner = new WebSocket(`ws://127.0.0.1:${port}/room/${room}?dws_resume=${credentials.sessionId}.${credentials.token}.0`)
  await withTimeout(new Promise<void>((resolve, reject) => {
    joiner.addEventListener("error", reject)
    joiner.addEventListener("message", (event) => {
      const frame = JSON.parse(String(event.data)) as { type: string; payload?: { token?: string } }
      if (frame.type === "$session") credentials = { ...credentials, token: frame.payload!.token! }
      if (frame.type === "$resumed") {
        for (let t = 0; t < topics; t++) joiner.send(JSON.stringify({ type: "R_JOIN", payload: { topic: `t${t}` } }))
        joiner.send(JSON.stringify({ type: "R_WHO_AM_I", meta: { correlationId: "joined" } }))
      }
      if (frame.type === "R_YOU_ARE") resolve()
    })
  }), "the joins")
  joiner.close(4000, "away")
  await sleep(200)
  for (let t = 0; t < topics; t++) {
    await post(`/room/${room}/publish`, { topic: `t${t}`, texts: Array.from({ length: perTopic }, (_, i) => `${i}:${line}`) })
  }
  const near = await neighbour(room)
  const before: Array<number> = []
  near.record(before)
  await sleep(3000)
  const during: Array<number> = []
  near.record(during)
  let bytesIn = 0
  let bytesOut = 0
  let granted = 0
  let refused = 0
  let truncated = 0
  let replayedBytes = 0
  let grantedIn = 0
  let grantedOut = 0
  const end = Date.now() + loopMs
  while (Date.now() < end) {
    const result = await rawUpgrade(
      `/room/${room}?dws_resume=${credentials.sessionId}.${credentials.token}.0`,
      (type) => type === "$resumed"
    )
    bytesOut += result.bytesOut
    bytesIn += result.bytesIn
    if (result.status === 429) {
      refused++
      continue
    }
    if (result.status !== 101) throw new Error(`resume answered ${result.status}`)
    granted++
    grantedIn += result.bytesIn
    grantedOut += result.bytesOut
    credentials = { ...credentials, token: String(result.frames[0]!.payload!["token"]) }
    const resumed = result.frames.at(-1)!.payload!
    if (resumed["truncated"] === true) truncated++
    replayedBytes += result.frames.filter((f) => f.type === "R_SAID").reduce((sum, f) => sum + JSON.stringify(f).length, 0)
  }
  near.record(undefined)
  near.stop()
  console.log(`resume loop, ${loopMs / 1000} s, one session on ${topics} topics with ${perTopic} × 1 KB logged on each:`)
  console.log(`  resumes granted ${granted} (truncated ${truncated}), refused with 429 ${refused}`)
  console.log(`  bytes in ${bytesIn} for ${bytesOut} bytes of requests: ${(bytesIn / bytesOut).toFixed(0)} bytes out per byte in`)
  console.log(`  granted resumes alone: ${(grantedIn / Math.max(1, grantedOut)).toFixed(0)} bytes out per byte in`)
  console.log(`  replayed per granted resume: ${(replayedBytes / Math.max(1, granted) / 1024).toFixed(0)} KiB`)
  console.log(
    `  neighbour rpc round trip before: p50 ${percentile(before, 50).toFixed(1)} ms, p99 ${percentile(before, 99).toFixed(1)} ms (${before.length})`
  )
  console.log(
    `  neighbour rpc round trip during: p50 ${percentile(during, 50).toFixed(1)} ms, p99 ${percentile(during, 99).toFixed(1)} ms (${during.length})`
  )

  // -- 3: connect-and-drop, then the first publish ---------------------------------------
  const dropRoom = "drop"
  const started = Date.now()
  let next = 0
  await Promise.all(Array.from({ length: 50 }, async () => {
    while (next < cycles) {
      next++
      await rawUpgrade(`/linger/${dropRoom}`, (type) => type === "$session")
    }
  }))
  const tables = async () => (await (await fetch(`${base}/linger/${dropRoom}/tables`)).json()) as { sessions: number }
  const rowsAfterCycles = (await tables()).sessions
  await sleep(21_000)
  // The subscriber joins once the sessions have expired (its upgrade deletes one batch of them).
  const subscriber = new WebSocket(`ws://127.0.0.1:${port}/linger/${dropRoom}`)
  let published: (() => void) | undefined
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      subscriber.addEventListener("error", reject)
      subscriber.addEventListener("message", (event) => {
        const frame = JSON.parse(String(event.data)) as { type: string }
        if (frame.type === "$session") {
          subscriber.send(JSON.stringify({ type: "R_JOIN", payload: { topic: "after" } }))
          subscriber.send(JSON.stringify({ type: "R_WHO_AM_I", meta: { correlationId: "joined" } }))
        }
        if (frame.type === "R_YOU_ARE") resolve()
        if (frame.type === "R_SAID") published?.()
      })
    }),
    "the subscriber"
  )
  const rowsBeforePublish = (await tables()).sessions
  const start = performance.now()
  const arrived = new Promise<void>((resolve) => published = resolve)
  await post(`/linger/${dropRoom}/publish`, { topic: "after", texts: ["first"] })
  await withTimeout(arrived, "the first publish")
  const firstPublishMs = performance.now() - start
  console.log(`connect-and-drop: ${cycles} cycles in ${((Date.now() - started) / 1000).toFixed(0)} s`)
  console.log(
    `  session rows right after: ${rowsAfterCycles}; expired, when the subscriber joined: ${rowsBeforePublish}; ` +
      `after the first publish: ${(await tables()).sessions}`
  )
  console.log(`  first publish after the sessions expired, round trip to a subscriber: ${firstPublishMs.toFixed(1)} ms`)
  subscriber.close(1000)
} finally {
  await server.stop()
}
