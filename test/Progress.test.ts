/**
 * RPC progress: `ctx.progress(...)` frames go to the requesting connection
 * only, validated, before the one reply, and never after the reply or the
 * deadline; the client hands them to `onProgress` of the request they
 * belong to and to nobody else.
 */
import { env } from "cloudflare:workers"
import { afterEach, describe, expect, it } from "vitest"
import type { Client } from "../src/Client"
import { createClient, TimeoutError } from "../src/Client"
import { Report, ReportAsync, ReportInvalid, ReportLate } from "./fixtures/client"
import { eventually, ScriptedSocket, workerdSockets } from "./helpers/clientSocket"
import { captureConsole } from "./helpers/console"
import { openOn } from "./helpers/durable"

let n = 0
const room = () => `progress-${n++}`
const clients: Array<Client> = []

afterEach(() => {
  for (const client of clients.splice(0)) client.close()
})

const client = async (namespace: DurableObjectNamespace = env.CLIENT_ROOM) => {
  const c = createClient({ url: `ws://client.test/${room()}`, webSocket: workerdSockets(namespace).factory, heartbeat: false })
  clients.push(c)
  await c.connect()
  return c
}

describe("rpc progress on the wire", () => {
  it("sends $ws:rpc-progress frames (WS-Kit's shape) with the request's correlationId, then the reply", async () => {
    const socket = await openOn(env.CLIENT_ROOM, room())
    socket.send({ type: "REPORT", meta: { correlationId: "c1" }, payload: { steps: 3, delayMs: 1 } })
    const frames = (await socket.drain(60)).map(({ type, meta, payload }) => ({ type, correlationId: meta?.correlationId, payload }))
    expect(frames).toEqual([
      { type: "$ws:rpc-progress", correlationId: "c1", payload: { done: 1, of: 3 } },
      { type: "$ws:rpc-progress", correlationId: "c1", payload: { done: 2, of: 3 } },
      { type: "$ws:rpc-progress", correlationId: "c1", payload: { done: 3, of: 3 } },
      { type: "REPORTED", correlationId: "c1", payload: { steps: 3 } }
    ])
  })

  it("goes to the requesting connection only", async () => {
    const name = room()
    const asker = await openOn(env.CLIENT_ROOM, name)
    const neighbour = await openOn(env.CLIENT_ROOM, name)
    asker.send({ type: "REPORT", meta: { correlationId: "mine" }, payload: { steps: 2, delayMs: 1 } })
    await asker.next((f) => f.type === "REPORTED")
    expect(await neighbour.drain(50)).toEqual([])
  })

  it("sends nothing after the reply", async () => {
    const socket = await openOn(env.CLIENT_ROOM, room())
    socket.send({ type: "REPORT_LATE", meta: { correlationId: "late" } })
    const frames = await socket.drain(80)
    expect(frames.map((f) => f.type)).toEqual(["REPORTED_LATE"])
  })

  it("stops at the deadline: nothing follows DEADLINE_EXCEEDED", async () => {
    const socket = await openOn(env.DEADLINE_ROOM, room())
    // Ten steps 25 ms apart cannot finish within the 60 ms deadline.
    socket.send({ type: "REPORT", meta: { correlationId: "slow" }, payload: { steps: 10, delayMs: 25 } })
    const error = await socket.next((f) => f.type === "RPC_ERROR")
    expect(error.payload.code).toBe("DEADLINE_EXCEEDED")
    // What `next` skipped arrived before the error; whatever else arrives is after it.
    const before = socket.frames.length
    expect(before).toBeGreaterThanOrEqual(1)
    expect(before).toBeLessThan(10)
    const rest = await socket.drain(150)
    expect(rest.length).toBe(before)
    expect(rest.every((f) => f.type === "$ws:rpc-progress")).toBe(true)
  })

  it("validates progress outbound: an invalid payload fails the handler, nothing invalid is sent", async () => {
    const logged = captureConsole("error")
    const socket = await openOn(env.CLIENT_ROOM, room())
    socket.send({ type: "REPORT_INVALID", meta: { correlationId: "bad" } })
    const frames = await socket.drain(60)
    expect(frames.map((f) => [f.type, f.payload.code])).toEqual([["RPC_ERROR", "INTERNAL"]])
    expect(logged.lines()).toEqual([expect.stringContaining("outbound Invalid payload for \"$ws:rpc-progress\"")])
  })

  it("refuses a $ws:rpc-progress frame from a client: the type is reserved, no one else sees it", async () => {
    const name = room()
    const victim = await openOn(env.CLIENT_ROOM, name)
    const attacker = await openOn(env.CLIENT_ROOM, name)
    victim.send({ type: "REPORT", meta: { correlationId: "v1" }, payload: { steps: 1, delayMs: 50 } })
    attacker.send({ type: "$ws:rpc-progress", meta: { correlationId: "v1" }, payload: { done: 99, of: 99 } })
    const refused = await attacker.next((f) => f.type === "RPC_ERROR")
    expect(refused.payload.code).toBe("UNIMPLEMENTED")
    await victim.next((f) => f.type === "REPORTED")
    expect(victim.frames.filter((f) => f.type === "$ws:rpc-progress").map((f) => f.payload)).toEqual([{ done: 1, of: 1 }])
  })
})

describe("rpc progress in the client", () => {
  it("hands each progress to onProgress, decoded and typed, before the reply resolves", async () => {
    const c = await client()
    const events: Array<string> = []
    const reply = await c.request(Report, { steps: 3, delayMs: 2 }, {
      onProgress: (progress) => void events.push(`${progress.done}/${progress.of}`)
    }).then((r) => (events.push("reply"), r))
    expect(reply).toEqual({ steps: 3 })
    expect(events).toEqual(["1/3", "2/3", "3/3", "reply"])
  })

  it("validates progress with any validator, asynchronous ones too, keeping progress before the reply", async () => {
    const c = await client()
    const events: Array<string> = []
    const reply = await c.request(ReportAsync, { steps: 3 }, {
      onProgress: (progress) => void events.push(String(progress.done))
    }).then((r) => (events.push("reply"), r))
    expect(reply).toEqual({ steps: 3 })
    expect(events).toEqual(["1", "2", "3", "reply"])
  })

  it("keeps concurrent requests' progress apart", async () => {
    const c = await client()
    const a: Array<number> = []
    const b: Array<number> = []
    await Promise.all([
      c.request(Report, { steps: 3, delayMs: 3 }, { onProgress: (p) => void a.push(p.of) }),
      c.request(Report, { steps: 2, delayMs: 3 }, { onProgress: (p) => void b.push(p.of) })
    ])
    expect(a).toEqual([3, 3, 3])
    expect(b).toEqual([2, 2])
  })

  it("stops calling onProgress once the request timed out", async () => {
    const c = await client()
    const seen: Array<number> = []
    const error = await c.request(Report, { steps: 6, delayMs: 20 }, {
      timeoutMs: 50,
      onProgress: (p) => void seen.push(p.done)
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(TimeoutError)
    const atTimeout = seen.length
    expect(atTimeout).toBeGreaterThanOrEqual(1)
    await new Promise((resolve) => setTimeout(resolve, 150))
    expect(seen.length).toBe(atTimeout)
  })

  it("ignores progress for a correlationId it did not send, and progress it was not asked to hear", async () => {
    const socket = new ScriptedSocket()
    const c = createClient({ url: "ws://scripted.test/", webSocket: () => socket, heartbeat: false, reconnect: false })
    clients.push(c)
    const errors: Array<unknown> = []
    c.onError((e) => void errors.push(e))
    const connected = c.connect()
    socket.accept()
    await connected
    const seen: Array<unknown> = []
    const reply = c.request(Report, { steps: 1, delayMs: 0 }, { onProgress: (p) => void seen.push(p) })
    const silent = c.request(Report, { steps: 1, delayMs: 0 })
    await eventually(() => socket.sent.length === 2, "two requests")
    const [mine, other] = socket.sent.map((f) => JSON.parse(f).meta.correlationId as string)
    socket.deliver(JSON.stringify({ type: "$progress", meta: { correlationId: "someone-else" }, payload: { done: 7, of: 7 } }))
    socket.deliver(JSON.stringify({ type: "$progress", meta: { correlationId: other }, payload: { done: 8, of: 8 } }))
    // The type an older durable-ws server sent is still understood.
    socket.deliver(JSON.stringify({ type: "$progress", meta: { correlationId: mine }, payload: { done: 1, of: 1 } }))
    // A malformed progress payload is a decode error, not progress.
    socket.deliver(JSON.stringify({ type: "$ws:rpc-progress", meta: { correlationId: mine }, payload: { done: "x" } }))
    socket.deliver(JSON.stringify({ type: "REPORTED", meta: { correlationId: mine }, payload: { steps: 1 } }))
    socket.deliver(JSON.stringify({ type: "REPORTED", meta: { correlationId: other }, payload: { steps: 1 } }))
    expect(await reply).toEqual({ steps: 1 })
    expect(await silent).toEqual({ steps: 1 })
    expect(seen).toEqual([{ done: 1, of: 1 }])
    expect(errors.length).toBe(1)
    expect((errors[0] as Error).message).toContain("$ws:rpc-progress")
  })

  it("sends nothing to onProgress after the reply (REPORT_LATE)", async () => {
    const c = await client()
    const seen: Array<number> = []
    await c.request(ReportLate, undefined, { onProgress: (p) => void seen.push(p.done) })
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(seen).toEqual([])
  })

  it("rejects the request when the handler's progress is invalid", async () => {
    captureConsole("error")
    const c = await client()
    await expect(c.request(ReportInvalid)).rejects.toMatchObject({ _tag: "ServerError", code: "INTERNAL" })
  })
})
