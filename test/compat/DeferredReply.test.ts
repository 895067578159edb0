/**
 * One answer per request: an rpc handler may reply after it returned (from a
 * callback), until the deadline; a request nobody answers gets one
 * RPC_ERROR after the deadline, and a reply after that is dropped.
 */
import { describe, expect, it } from "vitest"
import { createRouter, message, rpc, z } from "../../src/Zod"
import * as Testing from "../../src/Testing"
import { frameOf, pause } from "../helpers/testing"

const Lookup = rpc("LOOKUP", { id: z.string() }, "FOUND", { name: z.string() })
const Ping = message("PING")
const Pong = message("PONG")

const request = (id: string, correlationId: string) => ({
  type: "LOOKUP",
  meta: { correlationId, timestamp: Date.now() },
  payload: { id }
})

const answersTo = (frames: ReadonlyArray<{ type: string; meta?: Readonly<Record<string, unknown>> }>, correlationId: string) =>
  frames.filter((frame) => frame.meta?.["correlationId"] === correlationId).map((frame) => frame.type)

describe("deferred rpc replies", () => {
  it("delivers a reply sent from a callback after the handler returned, as the only answer", async () => {
    const router = createRouter()
    router.rpc(Lookup, (ctx) => {
      setTimeout(() => ctx.reply({ name: `user-${ctx.payload.id}` }), 40)
    })
    const client = await Testing.make(router, {}).connect()
    await client.send(request("7", "c1"))
    expect(answersTo(client.frames, "c1")).toEqual([])
    const reply = await frameOf(client, (frame) => frame.meta?.["correlationId"] === "c1")
    expect(reply).toMatchObject({ type: "FOUND", meta: { correlationId: "c1" }, payload: { name: "user-7" } })
    await pause(60)
    expect(answersTo(client.frames, "c1")).toEqual(["FOUND"])
  })

  it("does not hold the connection's next message behind a request waiting for its reply", async () => {
    const router = createRouter()
    router.rpc(Lookup, (ctx) => {
      setTimeout(() => ctx.reply({ name: "late" }), 80)
    })
    router.on(Ping, (ctx) => ctx.send(Pong))
    const client = await Testing.make(router, {}).connect()
    await client.send(request("1", "c2"))
    await client.send({ type: "PING" })
    expect(client.frames.map((frame) => frame.type)).toEqual(["PONG"])
    await frameOf(client, (frame) => frame.type === "FOUND")
    expect(client.frames.map((frame) => frame.type)).toEqual(["PONG", "FOUND"])
  })

  it("answers a request nobody replies to with one RPC_ERROR DEADLINE_EXCEEDED at handlerTimeoutMs, and drops a later reply", async () => {
    let late: (() => void) | undefined
    const router = createRouter()
    router.rpc(Lookup, (ctx) => {
      late = () => ctx.reply({ name: "too late" })
    })
    const client = await Testing.make(router, { handlerTimeoutMs: 60 }).connect()
    const sentAt = Date.now()
    await client.send(request("1", "c3"))
    const error = await frameOf(client, (frame) => frame.type === "RPC_ERROR")
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(55)
    expect(error).toEqual({
      type: "RPC_ERROR",
      meta: { correlationId: "c3" },
      payload: { code: "DEADLINE_EXCEEDED", message: "No reply to \"LOOKUP\" within 60 ms" }
    })
    late!()
    await pause(30)
    expect(answersTo(client.frames, "c3")).toEqual(["RPC_ERROR"])
  })

  it("takes a deferred ctx.error as the one answer, with no deadline error after it", async () => {
    const router = createRouter()
    router.rpc(Lookup, (ctx) => {
      setTimeout(() => ctx.error("NOT_FOUND", "no such user"), 10)
    })
    const client = await Testing.make(router, { handlerTimeoutMs: 60 }).connect()
    await client.send(request("404", "c4"))
    await pause(120)
    expect(client.frames).toEqual([
      { type: "RPC_ERROR", meta: { correlationId: "c4" }, payload: { code: "NOT_FOUND", message: "no such user" } }
    ])
  })

  it("without handlerTimeoutMs, a request waiting for its reply gets no error meanwhile", async () => {
    const router = createRouter()
    router.rpc(Lookup, () => {})
    router.on(Ping, (ctx) => ctx.send(Pong))
    const client = await Testing.make(router, {}).connect()
    await client.send(request("1", "c5"))
    await pause(100)
    await client.send({ type: "PING" })
    expect(client.frames.map((frame) => frame.type)).toEqual(["PONG"])
  })
})
