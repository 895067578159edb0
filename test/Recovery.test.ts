import { env, evictDurableObject, runInDurableObject } from "cloudflare:test"
import { describe, expect, it } from "vitest"
import { createDurableObjectHandler, createRouter, WebSocketDurableObject } from "../src/index"
import * as Testing from "../src/Testing"
import { RJoin, RSaid } from "./fixtures/recovery"
import { eventually, openOn, stubOf, upgradeOn } from "./helpers/durable"
import type { Session } from "./helpers/recovery"
import {
  control,
  isPublished,
  join,
  open,
  publish,
  resumeQuery,
  seqs,
  texts,
  untilResumed,
  whoAmI
} from "./helpers/recovery"
import type { Frame, TestSocket } from "./helpers/socket"
import { sleep } from "./helpers/socket"

let rooms = 0
const room = () => `recovery-${Date.now()}-${rooms++}`

/** Drops `socket` (4000, as a lost connection) and resumes its session from the start on a new socket of `RECOVERING`. */
const resumeAfterDrop = async (name: string, socket: TestSocket, session: Session) => {
  socket.close(4000)
  await socket.closed()
  const back = await openOn(env.RECOVERING, name, { query: resumeQuery(session, 0) })
  await back.next()
  await untilResumed(back)
  return back
}

describe("recovery: sessions", () => {
  it("sends $session first: the clientId, a token of at least 128 bits, the log position", async () => {
    const name = room()
    const { socket, session } = await open(env.RECOVERING, name)
    expect(session.sessionId).toMatch(/^[0-9a-f-]{36}$/)
    expect(session.token).toMatch(/^[A-Za-z0-9_-]{22,}$/)
    expect(session.seq).toBe(0)
    const who = await whoAmI(socket)
    expect(who.data.clientId).toBe(session.sessionId)
    const other = await open(env.RECOVERING, name)
    expect(other.session.token).not.toBe(session.token)
  })

  it("puts meta.topic and meta.seq on published frames: +1 per publish in the object, across evictions", async () => {
    const name = room()
    const { socket } = await open(env.RECOVERING, name)
    await join(socket, "a", "b")
    await publish(env.RECOVERING, name, "a", ["1"])
    await publish(env.RECOVERING, name, "b", ["2"])
    await evictDurableObject(stubOf(env.RECOVERING, name))
    await publish(env.RECOVERING, name, "a", ["3"])
    const got = [await socket.next(isPublished), await socket.next(isPublished), await socket.next(isPublished)]
    expect(got.map((f) => [f.meta!.topic, f.meta!.seq, f.payload.text])).toEqual([["a", 1, "1"], ["b", 2, "2"], ["a", 3, "3"]])
    // A new connection's watermark is the position it joined at.
    expect((await open(env.RECOVERING, name)).session.seq).toBe(3)
  })

  it("with recovery off, sends no $session and no seq", async () => {
    const name = room()
    const socket = await openOn(env.UNRECOVERED, name)
    expect((await socket.next()).type).toBe("R_OPENED")
    await join(socket, "a")
    await publish(env.UNRECOVERED, name, "a", ["plain"])
    const frame = await socket.next(isPublished)
    expect(frame).toEqual({ type: "R_SAID", payload: { text: "plain" } })
    const resumed = await openOn(env.UNRECOVERED, name, { query: "?dws_resume=x.y.1" })
    expect((await resumed.next()).type).toBe("R_OPENED")
  })
})

describe("recovery: resume", () => {
  it("replays what was published while away, in order, then goes on live with no hole and no duplicate", async () => {
    const name = room()
    const { socket, session } = await open(env.RECOVERING, name, "?user=ada&role=admin")
    await join(socket, "news", "chat")
    await publish(env.RECOVERING, name, "news", ["seen"])
    const seen = await socket.next(isPublished)
    socket.close(4000, "network gone")
    await socket.closed()
    await publish(env.RECOVERING, name, "news", ["n1", "n2"])
    await publish(env.RECOVERING, name, "other", ["not subscribed"])
    await publish(env.RECOVERING, name, "chat", ["c1"])

    // The same user comes back (a resume is bound to the identity `authenticate` returned).
    const back = await openOn(env.RECOVERING, name, { query: resumeQuery(session, seen.meta!.seq as number, "&user=ada&role=admin") })
    const fresh = await back.next()
    expect(fresh.type).toBe("$session")
    expect(fresh.payload.sessionId).toBe(session.sessionId)
    expect(fresh.payload.token).not.toBe(session.token)
    const frames = await untilResumed(back)
    expect(texts(frames)).toEqual(["n1", "n2", "c1"])
    expect(seqs(frames)).toEqual([2, 3, 5])
    expect(frames.at(-1)!.payload).toEqual({ recovered: true, replayed: 3, gaps: [], truncated: false })
    expect((await back.next()).payload).toEqual({ recovered: true })

    const who = await whoAmI(back)
    expect(who.data).toMatchObject({ clientId: session.sessionId, userId: "ada", role: "admin" })
    expect(who.topics.sort()).toEqual(["chat", "news"])
    await publish(env.RECOVERING, name, "news", ["live"])
    const live = await back.next(isPublished)
    expect([live.payload.text, live.meta!.seq]).toEqual(["live", 6])
    expect(texts(await back.drain())).toEqual([])

    const events = await control<{ closed: Array<{ code: number; resumable: boolean }> }>(env.RECOVERING, name, "events")
    expect(events.closed).toEqual([{ clientId: session.sessionId, code: 4000, resumable: true }])
  })

  it("resumes again with the new token; the used one no longer works", async () => {
    const name = room()
    const { socket, session } = await open(env.RECOVERING, name)
    socket.close(4000)
    await socket.closed()
    const second = await openOn(env.RECOVERING, name, { query: resumeQuery(session, 0) })
    const renewed = (await second.next()).payload as Session
    expect((await untilResumed(second)).at(-1)!.payload.recovered).toBe(true)
    second.close(4000)
    await second.closed()
    const stale = await openOn(env.RECOVERING, name, { query: resumeQuery(session, 0) })
    expect((await stale.next()).payload.sessionId).not.toBe(session.sessionId)
    expect((await stale.next()).payload).toEqual({ recovered: false, reason: "UNKNOWN_SESSION" })
    const third = await openOn(env.RECOVERING, name, { query: resumeQuery(renewed, 0) })
    expect((await third.next()).payload.sessionId).toBe(session.sessionId)
    expect((await untilResumed(third)).at(-1)!.payload.recovered).toBe(true)
  })

  it("a close with 1000 from the client ends the session", async () => {
    const name = room()
    const { socket, session } = await open(env.RECOVERING, name)
    socket.close(1000, "done")
    await socket.closed()
    const back = await openOn(env.RECOVERING, name, { query: resumeQuery(session, 0) })
    expect((await back.next()).payload.sessionId).not.toBe(session.sessionId)
    expect((await back.next()).payload).toEqual({ recovered: false, reason: "UNKNOWN_SESSION" })
    expect((await back.next()).payload).toEqual({ recovered: false })
    const events = await control<{ closed: Array<{ resumable: boolean }> }>(env.RECOVERING, name, "events")
    expect(events.closed).toEqual([{ clientId: session.sessionId, code: 1000, resumable: false }])
  })

  it("resumes across evictDurableObject (the socket hibernated, then dropped)", async () => {
    const name = room()
    const { socket, session } = await open(env.RECOVERING, name)
    await join(socket, "t")
    await evictDurableObject(stubOf(env.RECOVERING, name))
    socket.close(4000)
    await socket.closed()
    await evictDurableObject(stubOf(env.RECOVERING, name))
    await publish(env.RECOVERING, name, "t", ["after eviction"])
    const back = await openOn(env.RECOVERING, name, { query: resumeQuery(session, 0) })
    await back.next()
    const frames = await untilResumed(back)
    expect(texts(frames)).toEqual(["after eviction"])
  })

  it("resumes after a restart that never delivered webSocketClose", async () => {
    const name = room()
    const { socket, session } = await open(env.RECOVERING, name)
    await join(socket, "t")
    await publish(env.RECOVERING, name, "t", ["before"])
    const before = await socket.next(isPublished)
    await evictDurableObject(stubOf(env.RECOVERING, name), { webSockets: "close" })
    await socket.closed(5000)
    await publish(env.RECOVERING, name, "t", ["during", "restart"])
    const back = await openOn(env.RECOVERING, name, { query: resumeQuery(session, before.meta!.seq as number) })
    expect((await back.next()).payload.sessionId).toBe(session.sessionId)
    const frames = await untilResumed(back)
    expect(texts(frames)).toEqual(["during", "restart"])
    expect(frames.at(-1)!.payload).toEqual({ recovered: true, replayed: 2, gaps: [], truncated: false })
  })

  it("closes an older socket still open on the session", async () => {
    const name = room()
    const { socket, session } = await open(env.RECOVERING, name)
    await join(socket, "t")
    const back = await openOn(env.RECOVERING, name, { query: resumeQuery(session, 0) })
    expect((await socket.closed()).code).toBe(4409)
    await back.next()
    expect((await untilResumed(back)).at(-1)!.payload.recovered).toBe(true)
    await publish(env.RECOVERING, name, "t", ["once"])
    expect((await back.next(isPublished)).payload.text).toBe("once")
    const events = await control<{ closed: Array<{ resumable: boolean; code: number }> }>(env.RECOVERING, name, "events")
    expect(events.closed).toEqual([{ clientId: session.sessionId, code: 4409, resumable: true }])
  })

  it("does not replay the publisher's own excludeSelf publishes", async () => {
    const name = room()
    const { socket, session } = await open(env.RECOVERING, name)
    await join(socket, "t")
    socket.send({ type: "R_SAY", payload: { topic: "t", text: "mine", excludeSelf: true } })
    socket.send({ type: "R_SAY", payload: { topic: "t", text: "echoed" } })
    const echoed = await socket.next(isPublished)
    expect(echoed.payload.text).toBe("echoed")
    socket.close(4000)
    await socket.closed()
    const back = await openOn(env.RECOVERING, name, { query: resumeQuery(session, 0) })
    await back.next()
    expect(texts(await untilResumed(back))).toEqual(["echoed"])
  })

  it("replays 100 topics in one resume, in seq order, each once", async () => {
    const name = room()
    const topics = Array.from({ length: 100 }, (_, i) => `topic-${i}`)
    const { socket, session } = await open(env.RECOVERING, name)
    await join(socket, ...topics)
    socket.close(4000)
    await socket.closed()
    for (const topic of [...topics].reverse()) await publish(env.RECOVERING, name, topic, [topic])
    const back = await openOn(env.RECOVERING, name, { query: resumeQuery(session, 0) })
    await back.next()
    const frames = await untilResumed(back)
    expect(texts(frames)).toEqual([...topics].reverse())
    expect(seqs(frames)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1))
    expect(frames.at(-1)!.payload).toEqual({ recovered: true, replayed: 100, gaps: [], truncated: false })
  })

  it("never hands a topic what was published before the session subscribed to it", async () => {
    const name = room()
    const { socket, session } = await open(env.RECOVERING, name)
    await publish(env.RECOVERING, name, "late", ["before joining"])
    await join(socket, "late")
    await publish(env.RECOVERING, name, "late", ["after joining"])
    expect((await socket.next(isPublished)).payload.text).toBe("after joining")
    socket.close(4000)
    await socket.closed()
    const back = await openOn(env.RECOVERING, name, { query: resumeQuery(session, 0) })
    await back.next()
    expect(texts(await untilResumed(back))).toEqual(["after joining"])
  })

  it("races live publishes: every publish reaches the session once, in order", async () => {
    const name = room()
    const { socket, session } = await open(env.RECOVERING, name)
    await join(socket, "race")
    const publisher = (await open(env.RECOVERING, name)).socket
    const total = 300
    const sending = (async () => {
      for (let i = 0; i < total; i++) {
        publisher.send({ type: "R_SAY", payload: { topic: "race", text: String(i) } })
        if (i % 10 === 0) await sleep(1)
      }
    })()
    const firstPart: Array<Frame> = []
    while (firstPart.length < 40) firstPart.push(await socket.next(isPublished, 5000))
    socket.close(4000)
    await socket.closed()
    const received = firstPart.filter(isPublished)
    const back = await openOn(env.RECOVERING, name, {
      query: resumeQuery(session, received.at(-1)!.meta!.seq as number)
    })
    await sending
    const rest: Array<Frame> = []
    while (received.length + rest.length < total) {
      const frame = await back.next((f) => isPublished(f) || f.type === "$resumed", 5000)
      if (isPublished(frame)) rest.push(frame)
    }
    expect(texts(await back.drain())).toEqual([])
    const all = [...received, ...rest].map((f) => Number(f.payload.text))
    expect(all).toEqual(Array.from({ length: total }, (_, i) => i))
    const allSeqs = seqs([...received, ...rest])
    expect(allSeqs.every((seq, i) => i === 0 || seq === allSeqs[i - 1]! + 1)).toBe(true)
  })
})

describe("recovery: limits", () => {
  it("expires a session sessionTtlMs after its socket closed", async () => {
    const name = room()
    const { socket, session } = await open(env.FORGETFUL, name)
    socket.close(4000)
    await socket.closed()
    await sleep(600)
    const back = await openOn(env.FORGETFUL, name, { query: resumeQuery(session, 0) })
    expect((await back.next()).payload.sessionId).not.toBe(session.sessionId)
    expect((await back.next()).payload).toEqual({ recovered: false, reason: "UNKNOWN_SESSION" })
  })

  it("keeps the newest maxMessages per topic and reports the topic that lost entries as a gap", async () => {
    const name = room()
    const { socket, session } = await open(env.FORGETFUL, name)
    await join(socket, "busy", "quiet")
    socket.close(4000)
    await socket.closed()
    await publish(env.FORGETFUL, name, "quiet", ["q"])
    await publish(env.FORGETFUL, name, "busy", ["1", "2", "3", "4", "5", "6", "7", "8"])
    const back = await openOn(env.FORGETFUL, name, { query: resumeQuery(session, 0) })
    await back.next()
    const frames = await untilResumed(back)
    expect(texts(frames)).toEqual(["q", "4", "5", "6", "7", "8"])
    expect(frames.at(-1)!.payload).toEqual({ recovered: true, replayed: 6, gaps: ["busy"], truncated: false })
  })

  it("prunes entries older than maxAgeMs", async () => {
    const name = room()
    const { socket, session } = await open(env.FORGETFUL, name)
    await join(socket, "t")
    await publish(env.FORGETFUL, name, "t", ["old"])
    const old = await socket.next(isPublished)
    socket.close(4000)
    await socket.closed()
    await publish(env.FORGETFUL, name, "t", ["stale"])
    await sleep(1100)
    await publish(env.FORGETFUL, name, "t", ["new"])
    const tables = await control<{ log: number }>(env.FORGETFUL, name, "tables")
    expect(tables.log).toBe(1)
    // The session itself has expired by now (its ttl is 400 ms): a fresh object keeps going.
    const back = await openOn(env.FORGETFUL, name, { query: resumeQuery(session, old.meta!.seq as number) })
    expect((await back.next()).payload.seq).toBe(3)
  })

  /** Sends `request`, takes its answer, resumes the session on a new socket and sends it again: both answers. */
  const sendAgainAfterResume = async (name: string, request: Frame, answer: (frame: Frame) => boolean) => {
    const { socket, session } = await open(env.RECOVERING, name)
    await socket.next((f) => f.type === "R_OPENED")
    socket.send(request)
    const first = await socket.next(answer)
    const back = await resumeAfterDrop(name, socket, session)
    back.send(request)
    return { first, again: await back.next(answer) }
  }

  it("answers an rpc resent on a resumed socket once from the reply cache: the handler runs once", async () => {
    const name = room()
    const request = { type: "R_WORK", meta: { correlationId: "work-1" }, payload: { text: "hi" } }
    const { first, again } = await sendAgainAfterResume(name, request, (f) => f.type === "R_WORKED")
    expect(again).toEqual(first)
    expect(first.payload).toEqual({ text: "hi", run: 1 })
    expect((await control<{ runs: number }>(env.RECOVERING, name, "events")).runs).toBe(1)
  })

  it("knows a resent rpc by the payload that was sent, even after its handler changed ctx.payload in place", async () => {
    const name = room()
    const request = { type: "R_SHOUT", meta: { correlationId: "shout-1" }, payload: { text: "hi" } }
    const { first, again } = await sendAgainAfterResume(name, request, (f) => f.type === "R_SHOUTED" || f.type === "RPC_ERROR")
    expect(first.payload).toEqual({ text: "HI", run: 1 })
    expect(again).toEqual(first)
    expect((await control<{ runs: number }>(env.RECOVERING, name, "events")).runs).toBe(1)
  })

  it("remembers the newest replyCacheSize answers per session", async () => {
    const name = room()
    const { socket, session } = await open(env.FORGETFUL, name)
    const other = await open(env.FORGETFUL, name)
    const work = async (on: TestSocket, correlationId: string) => {
      on.send({ type: "R_WORK", meta: { correlationId }, payload: { text: correlationId } })
      return (await on.next((f) => f.type === "R_WORKED" && f.meta?.correlationId === correlationId)).payload.run as number
    }
    expect([await work(socket, "c1"), await work(socket, "c2"), await work(socket, "c3")]).toEqual([1, 2, 3])
    // Another session's answers do not push this one's out.
    expect([await work(other.socket, "o1"), await work(other.socket, "o2")]).toEqual([4, 5])
    socket.close(4000)
    await socket.closed()
    const back = await openOn(env.FORGETFUL, name, { query: resumeQuery(session, 0) })
    await back.next()
    await untilResumed(back)
    expect(await work(back, "c3")).toBe(3)
    expect(await work(back, "c2")).toBe(2)
    // c1 fell out of the cache (size 2): the request runs again.
    expect(await work(back, "c1")).toBe(6)
    // A correlationId is per session: the same one from another session is another request.
    expect(await work(other.socket, "c3")).toBe(7)
  })

  it("answers a request resent after a resume with the one reply of the handler still running", async () => {
    const name = room()
    const { socket, session } = await open(env.RECOVERING, name)
    const request = { type: "R_WORK", meta: { correlationId: "slow-1" }, payload: { text: "slow", delayMs: 300 } }
    socket.send(request)
    await sleep(50)
    socket.close(4000)
    await socket.closed()
    const back = await openOn(env.RECOVERING, name, { query: resumeQuery(session, 0) })
    await back.next()
    await untilResumed(back)
    back.send(request)
    const reply = await back.next((f) => f.type === "R_WORKED", 3000)
    expect(reply.payload).toEqual({ text: "slow", run: 1 })
    expect((await back.drain(400)).filter((f) => f.type === "R_WORKED")).toEqual([])
    expect((await control<{ runs: number }>(env.RECOVERING, name, "events")).runs).toBe(1)
    // Answered on this socket, the same request again is a new one.
    back.send(request)
    expect((await back.next((f) => f.type === "R_WORKED")).payload).toEqual({ text: "slow", run: 2 })
  })

  it("a request reusing the correlationId of one still running is a record of its own: the first's late answer is not cached for it", async () => {
    const name = room()
    const { socket, session } = await open(env.RECOVERING, name)
    await socket.next((f) => f.type === "R_OPENED")
    // R_LATER answers from a timer after its handler returned, so the socket's next request runs meanwhile.
    socket.send({ type: "R_LATER", meta: { correlationId: "dup" }, payload: { delayMs: 200 } })
    const whoAmI = { type: "R_WHO_AM_I", meta: { correlationId: "dup" } }
    socket.send(whoAmI)
    expect((await socket.next((f) => f.type === "R_YOU_ARE", 3000)).payload.data).toMatchObject({ userId: "anonymous" })
    await socket.next((f) => f.type === "R_LATER_DONE", 3000)
    const back = await resumeAfterDrop(name, socket, session)
    // Resent on the resumed socket, the second request is answered from the cache with its own answer.
    back.send(whoAmI)
    const again = await back.next((f) => f.meta?.correlationId === "dup", 3000)
    expect(again.type).toBe("R_YOU_ARE")
  })
})

describe("recovery: hostile resumes", () => {
  const refused = async (query: string, name: string, sessionId: string) => {
    const socket = await openOn(env.RECOVERING, name, { query })
    const first = await socket.next()
    expect(first.type).toBe("$session")
    expect(first.payload.sessionId).not.toBe(sessionId)
    expect((await socket.next()).payload).toEqual({ recovered: false, reason: "UNKNOWN_SESSION" })
    expect((await socket.next()).payload).toEqual({ recovered: false })
    expect(texts(await socket.drain(30))).toEqual([])
    socket.close(1000)
  }

  it("answers a wrong token, another session's token, an unknown session and malformed values alike", async () => {
    const name = room()
    const a = await open(env.RECOVERING, name)
    const b = await open(env.RECOVERING, name)
    await join(a.socket, "secret")
    await publish(env.RECOVERING, name, "secret", ["for a only"])
    a.socket.close(4000)
    b.socket.close(4000)
    await a.socket.closed()
    await b.socket.closed()
    const guessed = "A".repeat(32)
    for (
      const value of [
        `${a.session.sessionId}.${guessed}.0`,
        `${a.session.sessionId}.${b.session.token}.0`,
        `${b.session.sessionId}.${a.session.token}.0`,
        `01890000-0000-7000-8000-000000000000.${a.session.token}.0`,
        `${a.session.sessionId}.${a.session.token}.999999`,
        `${a.session.sessionId}.${a.session.token}`,
        `${a.session.sessionId}.${a.session.token}.-1`,
        `${a.session.sessionId}..0`,
        "garbage",
        ""
      ]
    ) {
      await refused(`?dws_resume=${encodeURIComponent(value)}`, name, a.session.sessionId)
    }
    // None of it spent the real credentials.
    const back = await openOn(env.RECOVERING, name, { query: resumeQuery(a.session, 0) })
    expect((await back.next()).payload.sessionId).toBe(a.session.sessionId)
    expect(texts(await untilResumed(back))).toEqual(["for a only"])
  })

  it("recovers nothing from 1,000 wrong tokens, and each still goes through authenticate", async () => {
    const name = room()
    const { socket, session } = await open(env.RECOVERING, name)
    await join(socket, "t")
    socket.close(4000)
    await socket.closed()
    await publish(env.RECOVERING, name, "t", ["secret"])
    let recovered = 0
    let replayed = 0
    for (let batch = 0; batch < 20; batch++) {
      await Promise.all(Array.from({ length: 50 }, async (_, i) => {
        const token = btoa(String(batch * 50 + i)).padEnd(32, "x").replace(/[^A-Za-z0-9_-]/g, "y")
        const socket = await openOn(env.RECOVERING, name, { query: `?dws_resume=${session.sessionId}.${token}.0` })
        await socket.next()
        const resumed = await socket.next()
        if (resumed.payload.recovered !== false) recovered++
        await socket.next()
        replayed += socket.frames.filter(isPublished).length
        socket.close(1000)
      }))
    }
    expect({ recovered, replayed }).toEqual({ recovered: 0, replayed: 0 })
    // Each attempt became a session of its own, ended by its close with 1000: nothing is left behind.
    await eventually(() => control<{ sessions: number }>(env.RECOVERING, name, "tables"), (t) => t.sessions === 1)
    const refusedAuth = await upgradeOn(env.RECOVERING, name, { query: resumeQuery(session, 0, "&user=none") })
    expect(refusedAuth.status).toBe(401)
    const back = await openOn(env.RECOVERING, name, { query: resumeQuery(session, 0) })
    expect((await back.next()).payload.sessionId).toBe(session.sessionId)
    expect(texts(await untilResumed(back))).toEqual(["secret"])
  })

  it("drops, and never replays, a topic the user has since been denied", async () => {
    const name = room()
    const { socket, session } = await open(env.RECOVERING, name)
    await join(socket, "open", "vip")
    socket.close(4000)
    await socket.closed()
    await publish(env.RECOVERING, name, "vip", ["vip only"])
    await publish(env.RECOVERING, name, "open", ["for all"])
    await control(env.RECOVERING, name, "deny", { topic: "vip" })
    const back = await openOn(env.RECOVERING, name, { query: resumeQuery(session, 0) })
    await back.next()
    const frames = await untilResumed(back)
    expect(texts(frames)).toEqual(["for all"])
    expect((await whoAmI(back)).topics).toEqual(["open"])
    await publish(env.RECOVERING, name, "vip", ["still vip"])
    await publish(env.RECOVERING, name, "open", ["still open"])
    expect((await back.next(isPublished)).payload.text).toBe("still open")
    expect(texts(await back.drain())).toEqual([])
  })
})

describe("recovery: options and Testing.make", () => {
  const router = createRouter()
    .on(RJoin, (ctx) => ctx.topics.subscribe(ctx.payload.topic))

  it("needs the object's SQLite, and says so", () => {
    expect(() => Testing.make(router, { recovery: true })).toThrow(/recovery keeps its sessions and log in the object's SQLite/)
    expect(() => createDurableObjectHandler(router, { recovery: true })).toThrow(/pass `state`/)
    expect(() => WebSocketDurableObject(router, { recovery: { maxMessages: 0 } })).toThrow(/recovery.maxMessages must be a positive integer/)
    expect(() => WebSocketDurableObject(router, { recovery: { sessionTtlMs: -1 } })).toThrow(RangeError)
    expect(() => WebSocketDurableObject(router, { recovery: "yes" as never })).toThrow(TypeError)
    // A class is defined before any object exists: the state comes later, so this is fine.
    expect(() => WebSocketDurableObject(router, { recovery: true })).not.toThrow()
  })

  it("drops sessions and reply caches of an older storage format instead of failing on them", async () => {
    await runInDurableObject(stubOf(env.UNRECOVERED, room()), async (_instance, state) => {
      // The shape these tables had before sessions were bound to an identity.
      state.storage.sql.exec(
        `CREATE TABLE _dws_sessions (id TEXT PRIMARY KEY, token TEXT NOT NULL, data TEXT NOT NULL, topics TEXT NOT NULL, closed_at INTEGER);
         CREATE TABLE _dws_replies (session TEXT NOT NULL, correlation TEXT NOT NULL, frame TEXT NOT NULL, PRIMARY KEY (session, correlation));
         INSERT INTO _dws_sessions VALUES ('old', 'x', '{}', '{}', NULL);`
      )
      const runtime = Testing.make(router, { storage: state.storage, recovery: true })
      const first = await runtime.connect()
      expect(first.frames[0]).toMatchObject({ type: "$session", payload: { sessionId: first.clientId } })
      const ids = state.storage.sql.exec<{ id: string }>("SELECT id FROM _dws_sessions").toArray().map((row) => row.id)
      expect(ids).toEqual([first.clientId])
      const columns = state.storage.sql.exec<{ sql: string }>("SELECT sql FROM sqlite_master WHERE name = '_dws_replies'").one().sql
      expect(columns).toMatch(/\bdigest\b/)
      await runtime.dispose()
    })
  })

  it("runs in Testing.make with `storage`: $session, sequenced publishes and a resume", async () => {
    await runInDurableObject(stubOf(env.UNRECOVERED, room()), async (_instance, state) => {
      const runtime = Testing.make(router, { storage: state.storage, recovery: true })
      const first = await runtime.connect()
      expect(first.frames[0]).toMatchObject({ type: "$session", payload: { sessionId: first.clientId, seq: 0 } })
      await first.send({ type: "R_JOIN", payload: { topic: "t" } })
      await runtime.publish("t", RSaid, { text: "live" })
      expect(first.frames[1]).toEqual({ type: "R_SAID", meta: { topic: "t", seq: 1 }, payload: { text: "live" } })
      const { token } = first.frames[0]!.payload as Session
      await first.close(4000)
      await runtime.publish("t", RSaid, { text: "missed" })
      const back = await runtime.connect(undefined, undefined, { resume: `${first.clientId}.${token}.1` })
      expect(back.clientId).toBe(first.clientId)
      expect(back.frames.map((f) => f.type)).toEqual(["$session", "R_SAID", "$resumed"])
      expect(back.frames[1]!.payload).toEqual({ text: "missed" })
      expect(back.frames[2]!.payload).toEqual({ recovered: true, replayed: 1, gaps: [], truncated: false })
      await runtime.dispose()
    })
  })
})
