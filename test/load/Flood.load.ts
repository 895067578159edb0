import { env } from "cloudflare:test"
import { expect, it } from "vitest"
import { upgradeOn } from "../helpers/durable"

/**
 * One connection floods a rate-limited object (`Dam`: 20 frames at once,
 * then 10 a second, cut off after the default 10 s) with up to 200,000
 * frames while a neighbour sends an rpc every 100 ms. The flooder gets a
 * notice per token interval, not one per frame, and is closed with 1008;
 * the neighbour is answered throughout. The figures are printed.
 * (Sender and object share one isolate here, so far fewer than 200,000
 * frames fit in the 10 s; `npm run bench:flood` sends all of them through
 * `wrangler dev` and reads workerd's memory.)
 */

const frames = 200_000
const room = "flood"

const open = async () => {
  const res = await upgradeOn(env.DAM, room)
  if (res.status !== 101 || res.webSocket === null) throw new Error(`upgrade answered ${res.status}`)
  res.webSocket.accept()
  return res.webSocket
}

it("answers a flood with one notice per token interval, cuts it off, and keeps serving a neighbour", async () => {
  const flooder = await open()
  const neighbour = await open()
  let bytesBack = 0
  let framesBack = 0
  let notices = 0
  let noticeBytes = 0
  let closed: { code: number; reason: string; afterMs: number } | undefined
  const started = Date.now()
  flooder.addEventListener("message", (event) => {
    const size = new TextEncoder().encode(event.data as string).length
    bytesBack += size
    framesBack++
    if ((event.data as string).startsWith("{\"type\":\"ERROR\"")) {
      notices++
      noticeBytes += size
    }
  })
  flooder.addEventListener("close", (event) => {
    closed = { code: event.code, reason: event.reason, afterMs: Date.now() - started }
  })
  const latencies: Array<number> = []
  const pending = new Map<string, number>()
  neighbour.addEventListener("message", (event) => {
    const frame = JSON.parse(event.data as string)
    const sentAt = pending.get(frame.meta?.correlationId)
    if (frame.type === "H_ECHOED" && sentAt !== undefined) latencies.push(Date.now() - sentAt)
  })
  let pings = 0
  const ping = () => {
    const id = `p${pings++}`
    pending.set(id, Date.now())
    neighbour.send(JSON.stringify({ type: "H_ECHO", meta: { correlationId: id }, payload: { text: id } }))
  }
  const pinger = setInterval(ping, 100)

  let bytesIn = 0
  let sent = 0
  // Sent in slices so the object (same isolate) gets to run between them.
  while (sent < frames && closed === undefined) {
    for (let i = 0; i < 500 && sent < frames; i++, sent++) {
      const frame = `{"type":"H_ORDER","payload":{"n":${sent}}}`
      bytesIn += frame.length
      flooder.send(frame)
    }
    await new Promise((r) => setTimeout(r, 1))
  }
  const sentInMs = Date.now() - started
  // Keep trickling (faster than the refill) until the cut-off, at most 30 s in all.
  while (closed === undefined && Date.now() - started < 30_000) {
    try {
      flooder.send("{\"type\":\"H_ORDER\",\"payload\":{\"n\":-1}}")
    } catch {
      break
    }
    await new Promise((r) => setTimeout(r, 20))
  }
  for (let i = 0; i < 100 && closed === undefined; i++) await new Promise((r) => setTimeout(r, 50))
  clearInterval(pinger)
  await new Promise((r) => setTimeout(r, 300))
  neighbour.close()

  latencies.sort((a, b) => a - b)
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]
  const figures = {
    framesSent: sent,
    sentInMs,
    bytesIn,
    framesBack,
    bytesBack,
    notices,
    noticeBytes,
    noticeBytesPerByteIn: Number((noticeBytes / bytesIn).toFixed(5)),
    closed,
    neighbour: { pings, answered: latencies.length, p50Ms: pct(0.5), p99Ms: pct(0.99), maxMs: latencies.at(-1) }
  }
  console.log(`flood figures: ${JSON.stringify(figures)}`)

  // Admitted frames are answered (the burst, then 10 a second); refused ones share a notice per 100 ms.
  const elapsedMs = Date.now() - started
  expect(framesBack).toBeLessThanOrEqual(20 + (elapsedMs / 1000) * 10 + elapsedMs / 100 + 5)
  expect(framesBack).toBeLessThan(sent / 10)
  expect(notices).toBeGreaterThanOrEqual(1)
  expect(notices).toBeLessThanOrEqual(elapsedMs / 100 + 2)
  expect(noticeBytes / bytesIn).toBeLessThan(0.05)
  expect(closed).toMatchObject({ code: 1008, reason: "Rate limit exceeded" })
  expect(closed!.afterMs).toBeGreaterThanOrEqual(10_000)
  // The neighbour had every rpc answered (all but those still in flight when it closed).
  expect(latencies.length).toBeGreaterThanOrEqual(pings - 3)
}, 120_000)
