/**
 * Standard Schema validators (zod 4, valibot 1, arktype 2) beside Effect
 * Schema, in a real Durable Object: the same wire contract whichever
 * validator a message was defined with.
 */
import { env } from "cloudflare:workers"
import { afterEach, describe, expect, it } from "vitest"
import type { Client } from "../src/Client"
import { createClient } from "../src/Client"
import { ValidationError } from "../src/Errors"
import { AsyncOut, GetUser, Handled, Quick, SendBoth, shapes, SlowRpc, SlowZod, SyncOut } from "./fixtures/validators"
import { eventually, workerdSockets } from "./helpers/clientSocket"
import { openOn } from "./helpers/durable"
import type { Frame, TestSocket } from "./helpers/socket"
import { sleep } from "./helpers/socket"

let n = 0
const open = () => openOn(env.VALIDATORS, `validators-${n++}`)
const openTimed = () => openOn(env.VALIDATORS_TIMED, `timed-${n++}`)

const isError = (frame: Frame) => frame.type === "ERROR" || frame.type === "RPC_ERROR"

describe("inbound validation, whatever the validator", () => {
  it.each(shapes.map((shape) => shape.type))("%s: hands the handler the decoded payload", async (type) => {
    const socket = await open()
    socket.send({ type, payload: { name: "Ada", user: { age: 36 } } })
    const seen = await socket.next((frame) => frame.type === "SEEN")
    expect(seen.payload).toEqual({ type, payload: { name: "Ada", user: { age: 36 } }, keys: ["name", "user"], plain: true })
  })

  it.each(shapes.map((shape) => shape.type))("%s: one wrong field gives INVALID_ARGUMENT with its path", async (type) => {
    const socket = await open()
    socket.send({ type, payload: { name: "Ada", user: { age: "old" } } })
    const error = await socket.next(isError)
    expect(error.type).toBe("ERROR")
    expect(error.payload.code).toBe("INVALID_ARGUMENT")
    expect(error.payload.message).toBe(`Invalid payload for "${type}"`)
    expect(error.payload.details.issues).toEqual([{ path: ["user", "age"], message: expect.any(String) }])
    expect(error.payload.details.issues[0].message.length).toBeGreaterThan(0)
  })

  it.each(["ZOD_FIELDS", "VALIBOT_FIELDS", "ARK_FIELDS", "MIXED_FIELDS", "ZOD_WHOLE", "VALIBOT_WHOLE", "ARK_WHOLE"])(
    "%s: reports every wrong field, each with a path of keys",
    async (type) => {
      const socket = await open()
      socket.send({ type, payload: { name: 7, user: { age: "old" } } })
      const error = await socket.next(isError)
      const paths = (error.payload.details.issues as Array<{ path: Array<unknown> }>).map((issue) => issue.path)
      expect(paths).toEqual(expect.arrayContaining([["name"], ["user", "age"]]))
      expect(paths).toHaveLength(2)
    }
  )

  it.each(["ZOD_FIELDS", "VALIBOT_FIELDS", "ARK_FIELDS", "MIXED_FIELDS"])(
    "%s: a payload that is not an object is refused at its root",
    async (type) => {
      const socket = await open()
      for (const payload of ["Ada", [1, 2], null, undefined]) {
        socket.send(payload === undefined ? { type } : { type, payload })
        const error = await socket.next(isError)
        expect(error.payload.code).toBe("INVALID_ARGUMENT")
        expect(error.payload.details.issues).toEqual([{ path: [], message: "Expected an object" }])
      }
    }
  )

  it("an rpc with an invalid request gets RPC_ERROR INVALID_ARGUMENT with its correlationId", async () => {
    const socket = await open()
    socket.send({ type: "ZOD_GET_USER", meta: { correlationId: "c1" }, payload: { id: "" } })
    const error = await socket.next(isError)
    expect(error).toMatchObject({
      type: "RPC_ERROR",
      meta: { correlationId: "c1" },
      payload: { code: "INVALID_ARGUMENT", details: { issues: [{ path: ["id"] }] } }
    })
    socket.send({ type: "ZOD_GET_USER", meta: { correlationId: "c2" }, payload: { id: "7" } })
    const reply = await socket.next((frame) => frame.type === "ZOD_USER")
    expect(reply).toMatchObject({ meta: { correlationId: "c2" }, payload: { id: "7", name: "user 7" } })
  })

  it("drops unknown keys and never lets __proto__ reach a prototype", async () => {
    const socket = await open()
    for (const type of ["ZOD_FIELDS", "MIXED_FIELDS", "ZOD_WHOLE", "VALIBOT_FIELDS"]) {
      socket.sendRaw(`{"type":"${type}","payload":{"name":"Ada","user":{"age":1},"__proto__":{"polluted":true},"extra":1}}`)
      const seen = await socket.next((frame) => frame.type === "SEEN")
      expect(seen.payload.keys).toEqual(["name", "user"])
      expect(seen.payload.plain).toBe(true)
    }
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined()
  })

  it("keeps absent optional fields absent and fills in defaults", async () => {
    const socket = await open()
    socket.send({ type: "OPTIONAL", payload: {} })
    expect((await socket.next((frame) => frame.type === "SEEN")).payload).toMatchObject({
      payload: { lang: "en" },
      keys: ["lang"]
    })
    socket.send({ type: "OPTIONAL", payload: { zod: "z", valibot: "v", ark: "a", effect: "e", lang: "fr" } })
    expect((await socket.next((frame) => frame.type === "SEEN")).payload.payload).toEqual({
      zod: "z",
      valibot: "v",
      ark: "a",
      effect: "e",
      lang: "fr"
    })
    socket.send({ type: "OPTIONAL", payload: { valibot: 1 } })
    expect((await socket.next(isError)).payload.details.issues).toEqual([{ path: ["valibot"], message: expect.any(String) }])
  })

  it("runs transforms inbound; Effect fields of a mixed record are decoded and encoded", async () => {
    const socket = await open()
    socket.send({ type: "LENGTHS", payload: { word: "hello", n: "21" } })
    // zod turned "hello" into 5; Effect turned "21" into 21, and 42 back into "42" on the way out.
    expect((await socket.next((frame) => frame.type === "DOUBLED")).payload).toEqual({ word: 10, n: "42" })
  })

  it("a validator that throws is the server's fault: INTERNAL, onError sees it, the connection goes on", async () => {
    const socket = await open()
    socket.send({ type: "EXPLODE", payload: { x: "boom" } })
    const error = await socket.next(isError)
    expect(error.payload).toEqual({ code: "INTERNAL", message: "Internal server error" })
    expect((await socket.next((frame) => frame.type === "ERROR_SEEN")).payload).toEqual({ message: "validator bug" })
    socket.send({ type: "QUICK", payload: { n: 1 } })
    expect((await socket.next((frame) => frame.type === "HANDLED")).payload).toEqual({ type: "QUICK", n: 1 })
  })
})

describe("outbound validation with the same schemas", () => {
  it("sends the validator's output: a default the handler left out is on the wire", async () => {
    const socket = await open()
    socket.send({ type: "GREET", payload: { text: "hi" } })
    expect((await socket.next((frame) => frame.type === "GREETING")).payload).toEqual({ text: "hi", lang: "en" })
  })

  it("an invalid outbound payload fails the handler (INTERNAL, onError) and sends nothing", async () => {
    const socket = await open()
    socket.send({ type: "SEND_INVALID" })
    expect((await socket.next(isError)).payload.code).toBe("INTERNAL")
    expect((await socket.next((frame) => frame.type === "ERROR_SEEN")).payload.message).toMatch(/outbound Invalid payload for "STRICT"/)
    expect((await socket.drain(50)).filter((frame) => frame.type === "STRICT")).toEqual([])
  })

  it("an invalid rpc reply is never sent: the caller gets RPC_ERROR INTERNAL", async () => {
    const socket = await open()
    socket.send({ type: "BAD_REPLY", meta: { correlationId: "r1" } })
    const error = await socket.next(isError)
    expect(error).toMatchObject({ type: "RPC_ERROR", meta: { correlationId: "r1" }, payload: { code: "INTERNAL" } })
    expect((await socket.drain(50)).filter((frame) => frame.type === "BAD_REPLY_RESULT")).toEqual([])
  })

  it("publish validates once: a valid payload reaches every subscriber, an invalid one nobody", async () => {
    const room = `validators-room-${n++}`
    const [a, b] = await Promise.all([openOn(env.VALIDATORS, room), openOn(env.VALIDATORS, room)])
    a.send({ type: "V_JOIN", payload: { topic: "news" } })
    b.send({ type: "V_JOIN", payload: { topic: "news" } })
    // Joins are handled in order per connection; a QUICK after each proves it is done.
    for (const socket of [a, b]) {
      socket.send({ type: "QUICK", payload: { n: 0 } })
      await socket.next((frame) => frame.type === "HANDLED")
    }
    a.send({ type: "V_SAY", payload: { topic: "news", text: "hello" } })
    expect((await a.next((frame) => frame.type === "PUBLISH_OUTCOME")).payload).toEqual({ ok: true })
    expect((await a.next((frame) => frame.type === "V_SAID")).payload).toEqual({ text: "hello" })
    expect((await b.next((frame) => frame.type === "V_SAID")).payload).toEqual({ text: "hello" })
    a.send({ type: "V_SAY", payload: { topic: "news", text: "x".repeat(21) } })
    expect((await a.next((frame) => frame.type === "PUBLISH_OUTCOME")).payload).toEqual({ ok: false, error: "INVALID_ARGUMENT" })
    expect([...(await a.drain(50)), ...(await b.drain(50))].filter((frame) => frame.type === "V_SAID")).toEqual([])
  })
})

describe("asynchronous validators", () => {
  it.each(["SLOW_ZOD", "SLOW_VALIBOT"])("%s: are awaited, and the connection's next frames wait for them", async (type) => {
    const socket = await open()
    // Pipelined: a slow valid frame, a quick one, a fast invalid one, a quick one.
    socket.send({ type, payload: { n: 1, ms: 80 } })
    socket.send({ type: "QUICK", payload: { n: 2 } })
    socket.send({ type, payload: { n: -1, ms: 10 } })
    socket.send({ type: "QUICK", payload: { n: 3 } })
    const frames: Array<Frame> = []
    for (let i = 0; i < 4; i++) frames.push(await socket.next())
    expect(frames.map((frame) => isError(frame) ? frame.payload.code : `${frame.payload.type}:${frame.payload.n}`)).toEqual([
      `${type}:1`,
      "QUICK:2",
      "INVALID_ARGUMENT",
      "QUICK:3"
    ])
    expect(frames[2]!.payload.details.issues).toEqual([{ path: type === "SLOW_ZOD" ? ["n"] : [], message: "n must not be negative" }])
  })

  it("an async rpc validator answers the request with its correlationId", async () => {
    const socket = await open()
    socket.send({ type: "SLOW_RPC", meta: { correlationId: "s1" }, payload: { n: -1, ms: 20 } })
    socket.send({ type: "SLOW_RPC", meta: { correlationId: "s2" }, payload: { n: 4, ms: 20 } })
    expect(await socket.next()).toMatchObject({ type: "RPC_ERROR", meta: { correlationId: "s1" }, payload: { code: "INVALID_ARGUMENT" } })
    expect(await socket.next()).toMatchObject({ type: "SLOW_RPC_DONE", meta: { correlationId: "s2" }, payload: { n: 4 } })
    // The refused request got its one answer: no "completed without replying" after it.
    expect(await socket.drain(50)).toEqual([])
  })

  it("handlerTimeoutMs covers validation: a validator slower than the deadline is DEADLINE_EXCEEDED", async () => {
    const socket = await openTimed()
    socket.send({ type: "SLOW_ZOD", payload: { n: 1, ms: 300 } })
    socket.send({ type: "SLOW_RPC", meta: { correlationId: "t1" }, payload: { n: 1, ms: 300 } })
    socket.send({ type: "SLOW_ZOD", payload: { n: 5, ms: 10 } })
    socket.send({ type: "QUICK", payload: { n: 6 } })
    const answer = (frame: Frame) => frame.type !== "ERROR_SEEN"
    expect(await socket.next(answer)).toMatchObject({ type: "ERROR", payload: { code: "DEADLINE_EXCEEDED" } })
    expect(await socket.next(answer)).toMatchObject({
      type: "RPC_ERROR",
      meta: { correlationId: "t1" },
      payload: { code: "DEADLINE_EXCEEDED" }
    })
    // Within the deadline, async validation and the handler behave as without one.
    expect((await socket.next(answer)).payload).toEqual({ type: "SLOW_ZOD", n: 5 })
    expect((await socket.next(answer)).payload).toEqual({ type: "QUICK", n: 6 })
    // The timed-out validations finish later; their handlers never run. onError saw both timeouts.
    const rest = await socket.drain(400)
    expect(rest.map((frame) => frame.type)).toEqual(["ERROR_SEEN", "ERROR_SEEN"])
    expect(rest.map((frame) => frame.payload.message)).toEqual([
      "Handler for \"SLOW_ZOD\" ran past 100 ms",
      "Handler for \"SLOW_RPC\" ran past 100 ms"
    ])
  })

  it.each(["ctx", "effect"] as const)(
    "handlerTimeoutMs covers a send still waiting for its validator (%s): past the deadline it is DEADLINE_EXCEEDED and never sent",
    async (via) => {
      const socket = await openTimed()
      socket.send({ type: "SEND_SLOW", payload: { ms: 300, via } })
      expect(await socket.next((frame) => frame.type !== "ERROR_SEEN")).toMatchObject({
        type: "ERROR",
        payload: { code: "DEADLINE_EXCEEDED", message: "Handler for \"SEND_SLOW\" ran past 100 ms" }
      })
      // Once its validator is done (frames leave in order, so later sends wait for it), a send within
      // its deadline arrives as without one; the timed-out one never does.
      await sleep(300)
      socket.send({ type: "SEND_SLOW", payload: { ms: 10, via } })
      const rest = await socket.drain(300)
      expect(rest.map((frame) => frame.type)).toEqual(["ERROR_SEEN", "SLOW_OUT"])
      expect(rest[1]!.payload).toEqual({ ms: 10 })
    }
  )

  it("with recovery, an rpc answered after async validation is answered once; a resend gets the same answer", async () => {
    const name = `recovering-${n++}`
    const socket = await openOn(env.VALIDATORS_RECOVERING, name)
    const session = (await socket.next((frame) => frame.type === "$session")).payload
    const answerOn = (on: TestSocket, correlationId: string) => on.next((frame) => frame.meta?.correlationId === correlationId)
    socket.send({ type: "SLOW_RPC", meta: { correlationId: "ok-1" }, payload: { n: 1, ms: 20 } })
    const first = await answerOn(socket, "ok-1")
    expect(first).toMatchObject({ type: "SLOW_RPC_DONE", payload: { n: 1 } })
    // A refused request is answered too, so its resend is not left waiting for an answer that never comes.
    socket.send({ type: "SLOW_RPC", meta: { correlationId: "bad-1" }, payload: { n: -1, ms: 20 } })
    const refused = await answerOn(socket, "bad-1")
    expect(refused).toMatchObject({ type: "RPC_ERROR", payload: { code: "INVALID_ARGUMENT" } })
    socket.close(4000)
    await socket.closed()
    // Resent on the resumed session: from the reply cache, the very same frames, timestamps included.
    const back = await openOn(env.VALIDATORS_RECOVERING, name, {
      query: `?dws_resume=${session.sessionId}.${session.token}.0`
    })
    await back.next((frame) => frame.type === "$resumed")
    back.send({ type: "SLOW_RPC", meta: { correlationId: "ok-1" }, payload: { n: 1, ms: 20 } })
    expect(await answerOn(back, "ok-1")).toEqual(first)
    back.send({ type: "SLOW_RPC", meta: { correlationId: "bad-1" }, payload: { n: -1, ms: 20 } })
    expect(await answerOn(back, "bad-1")).toEqual(refused)
  })

  it.each(["ctx", "effect"])("outbound (%s): a frame behind an async validator keeps its place", async (via) => {
    const socket = await open()
    socket.send({ type: "SEND_BOTH", payload: { n: 1, via } })
    socket.send({ type: "QUICK", payload: { n: 9 } })
    const frames = [await socket.next(), await socket.next(), await socket.next()]
    expect(frames.map((frame) => frame.type)).toEqual(["ASYNC_OUT", "SYNC_OUT", "HANDLED"])
    expect(frames.map((frame) => frame.payload.n)).toEqual([1, 2, 9])
  })

  it("outbound: an async validator that refuses fails the handler; later frames still go out", async () => {
    const socket = await open()
    socket.send({ type: "SEND_BOTH", payload: { n: -1, via: "ctx" } })
    const frames = [await socket.next(), await socket.next(), await socket.next()]
    expect(frames.map((frame) => frame.type)).toEqual(["SYNC_OUT", "ERROR", "ERROR_SEEN"])
    expect(frames[1]!.payload.code).toBe("INTERNAL")
    expect(frames[2]!.payload.message).toMatch(/outbound Invalid payload for "ASYNC_OUT"/)
  })

  it("publish awaits an async validator before fanning out", async () => {
    const socket = await open()
    socket.send({ type: "PUBLISH_ASYNC", payload: { n: 3 } })
    expect((await socket.next((frame) => frame.type === "ASYNC_OUT")).payload).toEqual({ n: 3 })
    expect((await socket.next((frame) => frame.type === "PUBLISH_OUTCOME")).payload).toEqual({ ok: true })
    socket.send({ type: "PUBLISH_ASYNC", payload: { n: -3 } })
    expect((await socket.next((frame) => frame.type === "PUBLISH_OUTCOME")).payload).toEqual({ ok: false, error: "INVALID_ARGUMENT" })
  })
})

describe("the client decodes and validates with the same schemas", () => {
  const clients: Array<Client> = []
  afterEach(() => {
    for (const client of clients.splice(0)) client.close()
  })
  const setup = async () => {
    const client = createClient({
      url: `ws://validators.test/client-${n++}`,
      webSocket: workerdSockets(env.VALIDATORS).factory,
      heartbeat: false
    })
    clients.push(client)
    const errors: Array<unknown> = []
    const log: Array<string> = []
    client.onError((error) => void errors.push(error))
    client.on(Handled, (payload) => void log.push(`${payload.type}:${payload.n}`))
    await client.connect()
    return { client, errors, log }
  }

  it("sends, receives and requests with zod and valibot schemas", async () => {
    const { client, log } = await setup()
    expect(client.send(Quick, { n: 1 })).toBe(true)
    await eventually(() => log.length === 1, "HANDLED")
    expect(log).toEqual(["QUICK:1"])
    expect(await client.request(GetUser, { id: "7" })).toEqual({ id: "7", name: "user 7" })
  })

  it("refuses an invalid outbound payload with the same issues the server would give", async () => {
    const { client } = await setup()
    let thrown: unknown
    try {
      client.send(Quick, { n: "one" as unknown as number })
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(ValidationError)
    expect((thrown as ValidationError).issues).toEqual([{ path: ["n"], message: expect.any(String) }])
    await expect(client.request(GetUser, { id: "" })).rejects.toBeInstanceOf(ValidationError)
  })

  it("keeps handlers in arrival order when an inbound payload is validated asynchronously", async () => {
    const { client, log } = await setup()
    client.on(AsyncOut, (payload) => void log.push(`ASYNC_OUT:${payload.n}`))
    client.on(SyncOut, (payload) => void log.push(`SYNC_OUT:${payload.n}`))
    client.send(SendBoth, { n: 1, via: "ctx" })
    client.send(Quick, { n: 3 })
    await eventually(() => log.length === 3, "three frames")
    expect(log).toEqual(["ASYNC_OUT:1", "SYNC_OUT:2", "QUICK:3"])
  })

  it("sends frames in order when an outbound payload is validated asynchronously", async () => {
    const { client, log, errors } = await setup()
    expect(client.send(SlowZod, { n: 1, ms: 60 })).toBe(true)
    // Refused by the client's own validator, after a wait: reported to onError, never sent.
    expect(client.send(SlowZod, { n: -1, ms: 10 })).toBe(true)
    client.send(Quick, { n: 2 })
    await eventually(() => log.length === 2, "two HANDLED")
    expect(log).toEqual(["SLOW_ZOD:1", "QUICK:2"])
    expect(errors).toHaveLength(1)
    expect(errors[0]).toBeInstanceOf(ValidationError)
    expect((errors[0] as ValidationError).issues).toEqual([{ path: ["n"], message: "n must not be negative" }])
  })

  it("requests through an asynchronous validator", async () => {
    const { client } = await setup()
    expect(await client.request(SlowRpc, { n: 4, ms: 10 })).toEqual({ n: 4 })
    await expect(client.request(SlowRpc, { n: -4, ms: 10 })).rejects.toBeInstanceOf(ValidationError)
  })
})
