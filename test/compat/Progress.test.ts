/**
 * Progress as WS-Kit has it: `ctx.progress(update)` on any rpc, sent as
 * `{"type":"$ws:rpc-progress","meta":{"correlationId",...},"payload"}` before the
 * one reply — the frame WS-Kit's client takes as progress.
 */
import { describe, expect, it } from "vitest"
import * as Testing from "../../src/Testing"
import { createRouter, rpc, z } from "../../src/Zod"

const Export = rpc("EXPORT", { room: z.string() }, "EXPORTED", { url: z.string() })

describe("ctx.progress on an rpc that declares no progress schema", () => {
  it("sends $ws:rpc-progress frames with the request's correlationId, then the reply", async () => {
    const router = createRouter()
    router.rpc(Export, async (ctx) => {
      for (let done = 1; done <= 2; done++) ctx.progress({ done, total: 2 })
      ctx.reply({ url: `https://files/${ctx.payload.room}` })
      ctx.progress({ done: 3, total: 2 }) // after the reply: dropped
    })
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "EXPORT", meta: { timestamp: 1, correlationId: "x1" }, payload: { room: "lobby" } })
    expect(client.frames).toEqual([
      { type: "$ws:rpc-progress", meta: { timestamp: expect.any(Number), correlationId: "x1" }, payload: { done: 1, total: 2 } },
      { type: "$ws:rpc-progress", meta: { timestamp: expect.any(Number), correlationId: "x1" }, payload: { done: 2, total: 2 } },
      { type: "EXPORTED", meta: { timestamp: expect.any(Number), correlationId: "x1" }, payload: { url: "https://files/lobby" } }
    ])
  })

  it("takes WS-Kit's progress options: throttleMs, signal, meta", async () => {
    const router = createRouter()
    router.rpc(Export, (ctx) => {
      ctx.progress(1, { throttleMs: 10_000, meta: { stage: "a" } })
      ctx.progress(2, { throttleMs: 10_000 }) // within the throttle: skipped
      const aborted = new AbortController()
      aborted.abort()
      ctx.progress(3, { signal: aborted.signal })
      ctx.reply({ url: "u" })
    })
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "EXPORT", meta: { correlationId: "x2" }, payload: { room: "r" } })
    expect(client.frames.map((frame) => [frame.type, frame.payload, frame.meta?.["stage"]])).toEqual([
      ["$ws:rpc-progress", 1, "a"],
      ["EXPORTED", { url: "u" }, undefined]
    ])
  })

  it("is refused from a client: the type is reserved", async () => {
    const router = createRouter()
    router.rpc(Export, (ctx) => ctx.reply({ url: "u" }))
    const client = await Testing.make(router, {}).connect()
    await client.send({ type: "$ws:rpc-progress", meta: { correlationId: "x3" }, payload: 1 })
    expect(client.frames).toMatchObject([{ type: "RPC_ERROR", meta: { correlationId: "x3" }, payload: { code: "UNIMPLEMENTED" } }])
  })
})
