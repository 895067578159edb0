/**
 * Resumable delivery under attack (SPEC §11): nobody the server sent away
 * comes back through a resume, a resume is bound to who opened the
 * session, no request runs twice or is answered with another's reply, and
 * a resume costs the server a bounded amount.
 */
import { env } from "cloudflare:test"
import { describe, expect, it } from "vitest"
import { eventually, openOn, stubOf, upgradeOn } from "./helpers/durable"
import type { Session } from "./helpers/recovery"
import { control, isPublished, join, open, publish, resume, resumeQuery, whoAmI } from "./helpers/recovery"
import type { Frame, TestSocket } from "./helpers/socket"
import { sleep } from "./helpers/socket"

let rooms = 0
const room = () => `recovery-security-${Date.now()}-${rooms++}`

const unknown = { recovered: false, reason: "UNKNOWN_SESSION" }

const tables = (namespace: DurableObjectNamespace, name: string) =>
  control<{ log: number; sessions: number; replies: number }>(namespace, name, "tables")

/** Closes from the client side with a transient code: the session stays resumable. */
const drop = async (socket: TestSocket) => {
  socket.close(4000, "network gone")
  await socket.closed()
}

const rpcOf = (socket: TestSocket, correlationId: string) => (f: Frame) => f.meta?.correlationId === correlationId

describe("recovery: a server close with a terminal code ends the session", () => {
  it("a member kicked with 4403 through Connections.close cannot resume (nor keep its reply cache)", async () => {
    const name = room()
    const victim = await open(env.RECOVERING, name, "?user=eve")
    await join(victim.socket, "t")
    const admin = await open(env.RECOVERING, name, "?user=ada")
    admin.socket.send({ type: "R_KICK", payload: { clientId: victim.session.sessionId, code: 4403 } })
    expect((await victim.socket.closed()).code).toBe(4403)
    await publish(env.RECOVERING, name, "t", ["said after the kick"])
    const back = await resume(env.RECOVERING, name, victim.session, 0, "&user=eve")
    expect(back.session.sessionId).not.toBe(victim.session.sessionId)
    expect(back.outcome).toEqual(unknown)
    expect(back.frames.filter(isPublished)).toEqual([])
    // The rows of the ended session are gone: only the two live sessions remain.
    await eventually(() => tables(env.RECOVERING, name), (t) => t.sessions === 2 && t.replies <= 2)
  })

  it("a member signed out with 4401 by its own handler cannot resume with its old role", async () => {
    const name = room()
    const { socket, session } = await open(env.RECOVERING, name, "?user=ada&role=admin")
    await join(socket, "t")
    socket.send({ type: "R_CLOSE_ME", payload: { code: 4401 } })
    expect((await socket.closed()).code).toBe(4401)
    await publish(env.RECOVERING, name, "t", ["1", "2", "3"])
    const back = await resume(env.RECOVERING, name, session, 0, "&user=ada&role=admin")
    expect(back.outcome).toEqual(unknown)
    expect(back.frames.filter(isPublished)).toEqual([])
    expect((await whoAmI(back.socket)).topics).toEqual([])
  })

  it("a flooder cut off with 1008 by the rate limit cannot come back with a full bucket", async () => {
    const name = room()
    const { socket, session } = await open(env.CUTOFF, name)
    let closed: { code: number } | undefined
    void socket.closed(5000).then((event) => closed = event, () => undefined)
    const deadline = Date.now() + 3000
    while (closed === undefined && Date.now() < deadline) {
      for (let i = 0; i < 20; i++) socket.send({ type: "R_JOIN", payload: { topic: "flood" } })
      await sleep(10)
    }
    expect(closed?.code).toBe(1008)
    const back = await resume(env.CUTOFF, name, session)
    expect(back.outcome).toEqual(unknown)
  })

  it("Connections.close with a terminal code ends the session of a client that is away", async () => {
    const name = room()
    const victim = await open(env.RECOVERING, name)
    const spared = await open(env.RECOVERING, name)
    await drop(victim.socket)
    await drop(spared.socket)
    const admin = await open(env.RECOVERING, name)
    admin.socket.send({ type: "R_KICK", payload: { clientId: victim.session.sessionId, code: 4403 } })
    // Ending a session nobody has is a no-op, and a transient code ends nothing.
    admin.socket.send({ type: "R_KICK", payload: { clientId: "no-such-session", code: 4403 } })
    admin.socket.send({ type: "R_KICK", payload: { clientId: spared.session.sessionId, code: 4000 } })
    await whoAmI(admin.socket)
    expect((await resume(env.RECOVERING, name, victim.session)).outcome).toEqual(unknown)
    expect((await resume(env.RECOVERING, name, spared.session)).outcome).toMatchObject({ recovered: true })
  })

  it("4409 (replaced) ends nothing: the session lives on in the newer socket", async () => {
    const name = room()
    const { socket, session } = await open(env.RECOVERING, name)
    const second = await resume(env.RECOVERING, name, session)
    expect((await socket.closed()).code).toBe(4409)
    expect(second.outcome).toMatchObject({ recovered: true })
    await drop(second.socket)
    expect((await resume(env.RECOVERING, name, second.session)).outcome).toMatchObject({ recovered: true })
  })
})

describe("recovery: a session is bound to who opened it", () => {
  it("a resume whose authenticate returns another user is refused, and keeps nothing of the old session", async () => {
    const name = room()
    const { socket, session } = await open(env.RECOVERING, name, "?user=ada&role=admin")
    await join(socket, "admins")
    await drop(socket)
    const back = await resume(env.RECOVERING, name, session, 0, "&user=mallory")
    expect(back.outcome).toEqual(unknown)
    const who = await whoAmI(back.socket)
    expect(who.data["role"]).toBeUndefined()
    expect(who.data["clientId"]).not.toBe(session.sessionId)
    expect(who.topics).toEqual([])
    // The refused attempt spent nothing: the rightful user still resumes with the same token.
    expect((await resume(env.RECOVERING, name, session, 0, "&user=ada&role=admin")).outcome).toMatchObject({ recovered: true })
  })
})

describe("recovery: requests run at most once, and only a true resend is answered from the cache", () => {
  it("a correlationId reused on the same socket for another request runs that request", async () => {
    const name = room()
    const { socket } = await open(env.RECOVERING, name)
    socket.send({ type: "R_WHO_AM_I", meta: { correlationId: "1" } })
    expect((await socket.next(rpcOf(socket, "1"))).type).toBe("R_YOU_ARE")
    socket.send({ type: "R_WORK", meta: { correlationId: "1" }, payload: { text: "work" } })
    const reply = await socket.next(rpcOf(socket, "1"))
    expect(reply.type).toBe("R_WORKED")
    expect(reply.payload.text).toBe("work")
  })

  it("the same request again on the same socket after its reply runs again", async () => {
    const name = room()
    const { socket } = await open(env.RECOVERING, name)
    const key = `same-${Math.random()}`
    for (const expected of [1, 2]) {
      socket.send({ type: "R_COUNT", meta: { correlationId: "c" }, payload: { key } })
      expect((await socket.next(rpcOf(socket, "c"))).payload).toEqual({ runs: expected })
    }
  })

  it("on a resumed socket, a correlationId reused with another payload is a new request; the same one is a resend", async () => {
    const name = room()
    const { socket, session } = await open(env.RECOVERING, name)
    socket.send({ type: "R_WORK", meta: { correlationId: "w" }, payload: { text: "a" } })
    expect((await socket.next(rpcOf(socket, "w"))).payload).toMatchObject({ text: "a", run: 1 })
    await drop(socket)
    const back = await resume(env.RECOVERING, name, session)
    back.socket.send({ type: "R_WORK", meta: { correlationId: "w" }, payload: { text: "a" } })
    expect((await back.socket.next(rpcOf(back.socket, "w"))).payload).toMatchObject({ text: "a", run: 1 })
    back.socket.send({ type: "R_WORK", meta: { correlationId: "w" }, payload: { text: "b" } })
    expect((await back.socket.next(rpcOf(back.socket, "w"))).payload).toMatchObject({ text: "b", run: 2 })
    // A resend is answered once: the same request again on this socket is new.
    back.socket.send({ type: "R_WORK", meta: { correlationId: "w" }, payload: { text: "b" } })
    expect((await back.socket.next(rpcOf(back.socket, "w"))).payload).toMatchObject({ text: "b", run: 3 })
  })

  it("a deferred reply still pending when the socket dropped answers the resend on the resumed socket", async () => {
    const name = room()
    const { socket, session } = await open(env.RECOVERING, name)
    socket.send({ type: "R_LATER", meta: { correlationId: "later" }, payload: { delayMs: 300 } })
    await sleep(50)
    await drop(socket)
    const back = await resume(env.RECOVERING, name, session)
    back.socket.send({ type: "R_LATER", meta: { correlationId: "later" }, payload: { delayMs: 300 } })
    expect(await back.socket.next(rpcOf(back.socket, "later"), 3000)).toMatchObject({ type: "R_LATER_DONE", payload: { ok: true } })
  })

  const cutOff = async (type: string) => {
    const name = room()
    const key = `cut-${Math.random()}`
    const { socket, session } = await open(env.RECOVERING, name)
    socket.send({ type, meta: { correlationId: "long" }, payload: { key, hangMs: 10_000 } })
    await eventually(() => control<{ runs: number }>(env.RECOVERING, name, `count?key=${key}`), (c) => c.runs === 1)
    // The object is reset mid-handler, as in a restart: the handler never replies.
    await stubOf(env.RECOVERING, name).fetch("http://test.local/abort").catch(() => undefined)
    await socket.closed(5000)
    const back = await resume(env.RECOVERING, name, session)
    expect(back.outcome).toMatchObject({ recovered: true })
    back.socket.send({ type, meta: { correlationId: "long" }, payload: { key, hangMs: 10_000 } })
    const answer = await back.socket.next(rpcOf(back.socket, "long"), 5000)
    const runs = (await control<{ runs: number }>(env.RECOVERING, name, `count?key=${key}`)).runs
    return { answer, runs }
  }

  it("a resend of a request cut off by a restart gets ABORTED INTERRUPTED, and its handler does not run again", async () => {
    const { answer, runs } = await cutOff("R_COUNT")
    expect(answer.type).toBe("RPC_ERROR")
    expect(answer.payload).toMatchObject({ code: "ABORTED", details: { reason: "INTERRUPTED" } })
    expect(runs).toBe(1)
  })

  it("an idempotent rpc cut off by a restart runs again on its resend", async () => {
    const { answer, runs } = await cutOff("R_COUNT_AGAIN")
    expect(answer).toMatchObject({ type: "R_COUNTED_AGAIN", payload: { runs: 2 } })
    expect(runs).toBe(2)
  })
})

describe("recovery: a resume costs a bounded amount", () => {
  it("replays at most maxReplayBytes, then reports truncated and the topic cut short", async () => {
    const name = room()
    const { socket, session } = await open(env.BOUNDED, name)
    await join(socket, "big", "small")
    await drop(socket)
    const line = "x".repeat(1000)
    await publish(env.BOUNDED, name, "small", ["s"])
    await publish(env.BOUNDED, name, "big", Array.from({ length: 40 }, (_, i) => `${i}:${line}`))
    const back = await resume(env.BOUNDED, name, session)
    const replayed = back.frames.filter(isPublished)
    const bytes = replayed.reduce((sum, f) => sum + JSON.stringify(f).length, 0)
    expect(bytes).toBeLessThanOrEqual(16 * 1024)
    expect(replayed.length).toBeGreaterThan(5)
    expect(replayed[0]!.payload.text).toBe("s")
    expect(back.outcome).toEqual({ recovered: true, replayed: replayed.length, gaps: ["big"], truncated: true })
    // Live publishes follow.
    await publish(env.BOUNDED, name, "big", ["live"])
    expect((await back.socket.next(isPublished)).payload.text).toBe("live")
  })

  it("rate limits the resumes of one session with 429 and Retry-After, and keeps the token", async () => {
    const name = room()
    let { session } = await open(env.RECOVERING, name)
    for (let i = 0; i < 5; i++) {
      const next = await resume(env.RECOVERING, name, session)
      expect(next.outcome).toMatchObject({ recovered: true })
      session = next.session
    }
    const refused = await upgradeOn(env.RECOVERING, name, { query: resumeQuery(session, 0) })
    expect(refused.status).toBe(429)
    expect(Number(refused.headers.get("Retry-After"))).toBeGreaterThanOrEqual(1)
    await sleep(2100)
    expect((await resume(env.RECOVERING, name, session)).outcome).toMatchObject({ recovered: true })
  })

  it("keeps at most maxSessions sessions, evicting the longest closed", async () => {
    const name = room()
    const sessions: Array<Session> = []
    for (let i = 0; i < 30; i++) {
      const { socket, session } = await open(env.BOUNDED, name)
      sessions.push(session)
      await drop(socket)
    }
    expect((await tables(env.BOUNDED, name)).sessions).toBeLessThanOrEqual(20)
    expect((await resume(env.BOUNDED, name, sessions[0]!)).outcome).toEqual(unknown)
    expect((await resume(env.BOUNDED, name, sessions.at(-1)!)).outcome).toMatchObject({ recovered: true })
  })

  it("deletes expired sessions on upgrades, without a publish", async () => {
    const name = room()
    // Those that expire meanwhile may already go on later upgrades and closes: only the end state is certain.
    for (let i = 0; i < 30; i++) await drop((await open(env.FORGETFUL, name)).socket)
    await sleep(600)
    await open(env.FORGETFUL, name)
    expect((await tables(env.FORGETFUL, name)).sessions).toBe(1)
  })

  it("a failed resume writes no row beyond its own fresh session", async () => {
    const name = room()
    await open(env.RECOVERING, name)
    const before = await tables(env.RECOVERING, name)
    const socket = await openOn(env.RECOVERING, name, { query: "?dws_resume=nobody.AAAAAAAAAAAAAAAAAAAAAA.0" })
    await socket.next()
    expect((await socket.next()).payload).toEqual(unknown)
    expect(await tables(env.RECOVERING, name)).toEqual({ ...before, sessions: before.sessions + 1 })
  })
})

describe("recovery: a resume is admitted like any connection, but not counted twice", () => {
  it("a full room does not refuse a resume whose older socket it replaces", async () => {
    const name = room()
    const first = await open(env.BOUNDED, name)
    await open(env.BOUNDED, name)
    expect((await upgradeOn(env.BOUNDED, name)).status).toBe(503)
    const back = await resume(env.BOUNDED, name, first.session)
    expect(back.outcome).toMatchObject({ recovered: true })
    expect((await first.socket.closed()).code).toBe(4409)
  })

  it("checks the 16 KiB limit on data plus subscriptions on resume", async () => {
    const name = room()
    // Bounded's identity is the userId alone: the same user may come back with other data.
    const { socket, session } = await open(env.BOUNDED, name)
    const topics = Array.from({ length: 60 }, (_, i) => `${i}-${"t".repeat(200)}`)
    await join(socket, ...topics)
    expect((await whoAmI(socket)).topics.length).toBe(60)
    await drop(socket)
    const refused = await upgradeOn(env.BOUNDED, name, { query: resumeQuery(session, 0, "&pad=6000") })
    expect(refused.status).toBe(500)
    // The session is untouched: without the oversized data it resumes, with its topics.
    const back = await resume(env.BOUNDED, name, session, 0, "&pad=100")
    expect(back.outcome).toMatchObject({ recovered: true })
    expect((await whoAmI(back.socket)).topics.length).toBe(60)
  })

  it("carries the rate-limit bucket across a resume (a resume never refills it)", async () => {
    const name = room()
    const { socket, session } = await open(env.CUTOFF, name)
    for (let i = 0; i < 6; i++) socket.send({ type: "R_WHO_AM_I", meta: { correlationId: `drain-${i}` } })
    expect((await socket.next((f) => f.type === "RPC_ERROR")).payload.code).toBe("RESOURCE_EXHAUSTED")
    await drop(socket)
    const back = await resume(env.CUTOFF, name, session)
    for (let i = 0; i < 3; i++) back.socket.send({ type: "R_WHO_AM_I", meta: { correlationId: `after-${i}` } })
    const answers = [0, 1, 2].map((i) => back.socket.next(rpcOf(back.socket, `after-${i}`)))
    const types = (await Promise.all(answers)).map((f) => f.type)
    expect(types.filter((t) => t === "RPC_ERROR").length).toBeGreaterThanOrEqual(2)
  })
})
