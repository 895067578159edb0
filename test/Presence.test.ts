import { env, evictDurableObject } from "cloudflare:test"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Connection } from "../src/Connection"
import { Presence } from "../src/Presence"
import { describe, expect, it } from "vitest"
import { eventually, openOn, stubOf } from "./helpers/durable"
import type { Frame, TestSocket } from "./helpers/socket"
import { sleep } from "./helpers/socket"

let rooms = 0
const room = () => `presence-${Date.now()}-${rooms++}`

let calls = 0
const call = async (socket: TestSocket, type: string, payload: unknown): Promise<Frame> => {
  const correlationId = `c${calls++}`
  socket.send({ type, meta: { correlationId }, payload })
  return socket.next((f) => f.meta?.["correlationId"] === correlationId)
}

const isState = (topic: string) => (f: Frame) => f.type === "$presence" && f.payload?.topic === topic
const isDiff = (topic: string) => (f: Frame) => f.type === "$presence_diff" && f.payload?.topic === topic
const isPresence = (f: Frame) => f.type === "$presence" || f.type === "$presence_diff"

type Metas = Record<string, Array<{ ref: string; meta: unknown }>>

/** Opens a socket as `user`; with recovery its `$session` comes first and is returned. */
const open = async (ns: DurableObjectNamespace, name: string, user: string, query = "") => {
  const socket = await openOn(ns, name, { query: `?user=${user}${query}` })
  return socket
}

const join = async (socket: TestSocket, topic: string, meta?: unknown) => {
  const reply = await call(socket, "P_JOIN", meta === undefined ? { topic } : { topic, meta })
  expect(reply.payload).toEqual({ ok: true })
}

const watch = async (socket: TestSocket, topic: string): Promise<Metas> => {
  const reply = await call(socket, "P_WATCH", { topic })
  expect(reply.payload).toEqual({ ok: true })
  const state = await socket.next(isState(topic))
  return state.payload.members as Metas
}

const keysOf = (members: Metas) => Object.keys(members).sort()

/** The frames of `topic` that arrive within `ms`. */
const quiet = async (socket: TestSocket, ms: number) => (await socket.drain(ms)).filter(isPresence)

describe("presence: members", () => {
  it("two tabs of one user are one member with two metas; it leaves with its last tab", async () => {
    const name = room()
    const watcher = await open(env.PRESENCE_ROOM, name, "watcher")
    expect(await watch(watcher, "lobby")).toEqual({})
    const tab1 = await open(env.PRESENCE_ROOM, name, "ann")
    const tab2 = await open(env.PRESENCE_ROOM, name, "ann")
    await join(tab1, "lobby", { device: "laptop" })
    await join(tab2, "lobby", { device: "phone" })
    const list = await call(watcher, "P_LIST", { topic: "lobby" })
    expect(keysOf(list.payload.members)).toEqual(["ann"])
    expect(list.payload.members.ann.map((m: { meta: unknown }) => m.meta)).toEqual([{ device: "laptop" }, { device: "phone" }])

    // One burst: both joins in one diff, or two; either way "ann" joined with both metas.
    await eventually(async () => watcher.frames.filter(isDiff("lobby")).flatMap((f) => f.payload.joins.ann ?? []).length, (n) => n === 2)

    tab1.close(1000)
    const leave = await watcher.next((f) => isDiff("lobby")(f) && Object.keys(f.payload.leaves).length > 0)
    expect(leave.payload.leaves.ann.map((m: { meta: unknown }) => m.meta)).toEqual([{ device: "laptop" }])
    expect(leave.payload.joins).toEqual({})
    expect(keysOf((await call(watcher, "P_LIST", { topic: "lobby" })).payload.members)).toEqual(["ann"])

    tab2.close(1000)
    const gone = await watcher.next((f) => isDiff("lobby")(f) && Object.keys(f.payload.leaves).length > 0)
    expect(gone.payload.leaves.ann.map((m: { meta: unknown }) => m.meta)).toEqual([{ device: "phone" }])
    expect((await call(watcher, "P_LIST", { topic: "lobby" })).payload.members).toEqual({})
  })

  it("a subscriber gets the whole state when it subscribes", async () => {
    const name = room()
    const ann = await open(env.PRESENCE_ROOM, name, "ann")
    const bob = await open(env.PRESENCE_ROOM, name, "bob")
    await join(ann, "lobby")
    await join(bob, "lobby")
    const late = await open(env.PRESENCE_ROOM, name, "carol")
    const members = await watch(late, "lobby")
    expect(keysOf(members)).toEqual(["ann", "bob"])
    expect(members.ann![0]!.meta).toEqual({ user: "ann" })
  })

  it("an update of a meta is a diff: it leaves and joins under one ref", async () => {
    const name = room()
    const watcher = await open(env.PRESENCE_ROOM, name, "watcher")
    await watch(watcher, "lobby")
    const ann = await open(env.PRESENCE_ROOM, name, "ann")
    await join(ann, "lobby", { status: "here" })
    await watcher.next(isDiff("lobby"))
    expect((await call(ann, "P_UPDATE", { topic: "lobby", meta: { status: "away" } })).payload).toEqual({ ok: true })
    const diff = await watcher.next(isDiff("lobby"))
    expect(diff.payload.leaves.ann[0].meta).toEqual({ status: "here" })
    expect(diff.payload.joins.ann[0].meta).toEqual({ status: "away" })
    expect(diff.payload.joins.ann[0].ref).toBe(diff.payload.leaves.ann[0].ref)
  })

  it("refuses a meta past 1 KiB and a bad key, with a clear error, and keeps the old entry", async () => {
    const name = room()
    const ann = await open(env.PRESENCE_ROOM, name, "ann")
    await join(ann, "lobby", { small: true })
    const big = await call(ann, "P_JOIN", { topic: "lobby", meta: { blob: "x".repeat(2000) } })
    expect(big.payload.ok).toBe(false)
    expect(big.payload.error).toMatch(/Presence meta is \d+ bytes serialized; the limit is 1024/)
    const list = await call(ann, "P_LIST", { topic: "lobby" })
    expect(list.payload.members.ann[0].meta).toEqual({ small: true })
  })

  it("coalesces a burst: 40 joins reach a subscriber in a few frames, not 40", async () => {
    const name = room()
    const watcher = await open(env.PRESENCE_ROOM, name, "watcher")
    await watch(watcher, "lobby")
    const sockets = await Promise.all(Array.from({ length: 40 }, (_, i) => open(env.PRESENCE_ROOM, name, `u${i}`)))
    await Promise.all(sockets.map((s) => join(s, "lobby")))
    const joined = await eventually(
      async () => new Set(watcher.frames.filter(isDiff("lobby")).flatMap((f) => Object.keys(f.payload.joins))),
      (keys) => keys.size === 40
    )
    expect(joined.size).toBe(40)
    const frames = watcher.frames.filter(isDiff("lobby")).length
    expect(frames).toBeLessThanOrEqual(6)
    // The joiners are subscribers too: none of them got one frame per join either.
    for (const socket of sockets.slice(-5)) expect(socket.frames.filter(isDiff("lobby")).length).toBeLessThanOrEqual(6)
  })

  it("counts-only mode: past the threshold subscribers get the count, not the members", async () => {
    const name = room()
    const watcher = await open(env.PRESENCE_COUNTED, name, "watcher")
    await watch(watcher, "big")
    for (const user of ["a", "b", "c"]) await join(await open(env.PRESENCE_COUNTED, name, user), "big")
    const counted = await watcher.next((f) => isDiff("big")(f) && f.payload.count === 3)
    expect(counted.payload).toEqual({ topic: "big", count: 3 })
    const late = await open(env.PRESENCE_COUNTED, name, "late")
    await call(late, "P_WATCH", { topic: "big" })
    expect((await late.next(isState("big"))).payload).toEqual({ topic: "big", count: 3 })
  })
})

describe("presence: hibernation and restarts", () => {
  it("survives eviction: the members are read back from the sockets, and a close after the wake is a leave", async () => {
    const name = room()
    const watcher = await open(env.PRESENCE_ROOM, name, "watcher")
    await watch(watcher, "lobby")
    const ann = await open(env.PRESENCE_ROOM, name, "ann")
    await join(ann, "lobby")
    await watcher.next(isDiff("lobby"))
    await evictDurableObject(stubOf(env.PRESENCE_ROOM, name))
    const late = await open(env.PRESENCE_ROOM, name, "late")
    expect(keysOf(await watch(late, "lobby"))).toEqual(["ann"])
    ann.close(1000)
    const leave = await watcher.next((f) => isDiff("lobby")(f) && Object.keys(f.payload.leaves).length > 0)
    expect(Object.keys(leave.payload.leaves)).toEqual(["ann"])
  })

  it("after eviction, a close or a track as the first event is still a diff", async () => {
    const name = room()
    const watcher = await open(env.PRESENCE_ROOM, name, "watcher")
    await watch(watcher, "lobby")
    const ann = await open(env.PRESENCE_ROOM, name, "ann")
    await join(ann, "lobby")
    await watcher.next(isDiff("lobby"))
    await evictDurableObject(stubOf(env.PRESENCE_ROOM, name))
    ann.close(1000)
    const leave = await watcher.next(isDiff("lobby"))
    expect(leave.payload).toEqual({ topic: "lobby", joins: {}, leaves: { ann: [expect.objectContaining({ meta: { user: "ann" } })] } })
    const bob = await open(env.PRESENCE_ROOM, name, "bob")
    await watch(bob, "lobby")
    await evictDurableObject(stubOf(env.PRESENCE_ROOM, name))
    // Already subscribed: the track is the first thing presence hears after the wake.
    await join(bob, "lobby")
    const joined = await watcher.next(isDiff("lobby"))
    expect(Object.keys(joined.payload.joins)).toEqual(["bob"])
  })

  it("after a restart without webSocketClose no member is left behind (no ghost)", async () => {
    const name = room()
    const ann = await open(env.PRESENCE_ROOM, name, "ann")
    await join(ann, "lobby")
    await evictDurableObject(stubOf(env.PRESENCE_ROOM, name), { webSockets: "close" })
    await ann.closed(5000)
    const late = await open(env.PRESENCE_ROOM, name, "late")
    expect(await watch(late, "lobby")).toEqual({})
  })

  it("with recovery, after a restart a member that does not come back is gone within awayMs", async () => {
    const name = room()
    const ann = await open(env.PRESENCE_RECOVERING, name, "ann")
    await join(ann, "lobby")
    await evictDurableObject(stubOf(env.PRESENCE_RECOVERING, name), { webSockets: "close" })
    await ann.closed(5000)
    const late = await open(env.PRESENCE_RECOVERING, name, "late")
    // Held: ann's session may still be resumed.
    expect(keysOf(await watch(late, "lobby"))).toEqual(["ann"])
    const leave = await late.next((f) => isDiff("lobby")(f) && Object.keys(f.payload.leaves).length > 0, 3000)
    expect(Object.keys(leave.payload.leaves)).toEqual(["ann"])
    expect((await call(late, "P_LIST", { topic: "lobby" })).payload.members).toEqual({})
    expect((await (await stubOf(env.PRESENCE_RECOVERING, name).fetch("http://test.local/held")).json<{ rows: number }>()).rows).toBe(0)
  })
})

describe("presence: recovery", () => {
  const sessionOf = async (socket: TestSocket) => {
    const frame = await socket.next((f) => f.type === "$session")
    return frame.payload as { sessionId: string; token: string; seq: number }
  }

  /** A watcher of "lobby", and ann, who joined it and then dropped (4000), her session still resumable. */
  const annAway = async (name: string) => {
    const watcher = await open(env.PRESENCE_RECOVERING, name, "watcher")
    await watch(watcher, "lobby")
    const ann = await open(env.PRESENCE_RECOVERING, name, "ann")
    const session = await sessionOf(ann)
    await join(ann, "lobby")
    await watcher.next(isDiff("lobby"))
    ann.close(4000, "network gone")
    await ann.closed()
    return { watcher, session }
  }

  it("a resumed connection keeps its place: no leave, no join", async () => {
    const name = room()
    const { watcher, session } = await annAway(name)
    const back = await open(env.PRESENCE_RECOVERING, name, "ann", `&dws_resume=${session.sessionId}.${session.token}.${session.seq}`)
    const state = await back.next(isState("lobby"))
    expect(keysOf(state.payload.members)).toEqual(["ann"])
    await back.next((f) => f.type === "$resumed")
    // Past awayMs (600 ms) nothing was said about ann.
    expect(await quiet(watcher, 900)).toEqual([])
    expect(keysOf((await call(watcher, "P_LIST", { topic: "lobby" })).payload.members)).toEqual(["ann"])
    back.close(1000)
    const leave = await watcher.next((f) => isDiff("lobby")(f) && Object.keys(f.payload.leaves).length > 0)
    expect(Object.keys(leave.payload.leaves)).toEqual(["ann"])
  })

  it("a resume that loses a topic to authorizeSubscribe leaves that topic's presence", async () => {
    const name = room()
    const { watcher, session } = await annAway(name)
    await stubOf(env.PRESENCE_RECOVERING, name).fetch("http://test.local/deny?topic=lobby")
    const back = await open(env.PRESENCE_RECOVERING, name, "ann", `&dws_resume=${session.sessionId}.${session.token}.${session.seq}`)
    expect((await back.next((f) => f.type === "$resumed")).payload.recovered).toBe(true)
    const leave = await watcher.next((f) => isDiff("lobby")(f) && Object.keys(f.payload.leaves).length > 0)
    expect(Object.keys(leave.payload.leaves)).toEqual(["ann"])
    expect((await call(watcher, "P_LIST", { topic: "lobby" })).payload.members).toEqual({})
  })

  it("after a restart, a member that resumes keeps its place while one that does not leaves", async () => {
    const name = room()
    const ann = await open(env.PRESENCE_RECOVERING, name, "ann")
    const session = await sessionOf(ann)
    await join(ann, "lobby")
    await join(await open(env.PRESENCE_RECOVERING, name, "bob"), "lobby")
    await evictDurableObject(stubOf(env.PRESENCE_RECOVERING, name), { webSockets: "close" })
    await ann.closed(5000)
    const back = await open(env.PRESENCE_RECOVERING, name, "ann", `&dws_resume=${session.sessionId}.${session.token}.${session.seq}`)
    expect(keysOf((await back.next(isState("lobby"))).payload.members)).toEqual(["ann", "bob"])
    await back.next((f) => f.type === "$resumed")
    const leave = await back.next((f) => isDiff("lobby")(f), 3000)
    expect(leave.payload).toEqual({ topic: "lobby", joins: {}, leaves: { bob: [expect.objectContaining({ meta: { user: "bob" } })] } })
    expect(keysOf((await call(back, "P_LIST", { topic: "lobby" })).payload.members)).toEqual(["ann"])
  })

  it("a dropped connection that does not resume leaves after awayMs", async () => {
    const name = room()
    const watcher = await open(env.PRESENCE_RECOVERING, name, "watcher")
    await watch(watcher, "lobby")
    const ann = await open(env.PRESENCE_RECOVERING, name, "ann")
    await join(ann, "lobby")
    await watcher.next(isDiff("lobby"))
    const closedAt = Date.now()
    ann.close(4000, "network gone")
    const leave = await watcher.next((f) => isDiff("lobby")(f) && Object.keys(f.payload.leaves).length > 0, 3000)
    expect(Object.keys(leave.payload.leaves)).toEqual(["ann"])
    expect(Date.now() - closedAt).toBeGreaterThanOrEqual(500)
  })

  it("a kicked connection leaves at once, even with a resumable session", async () => {
    const name = room()
    const watcher = await open(env.PRESENCE_RECOVERING, name, "watcher")
    await watch(watcher, "lobby")
    const ann = await open(env.PRESENCE_RECOVERING, name, "ann")
    await join(ann, "lobby")
    await watcher.next(isDiff("lobby"))
    watcher.send({ type: "P_KICK", payload: { user: "ann" } })
    expect((await ann.closed()).code).toBe(4403)
    const started = Date.now()
    const leave = await watcher.next((f) => isDiff("lobby")(f) && Object.keys(f.payload.leaves).length > 0, 3000)
    expect(Object.keys(leave.payload.leaves)).toEqual(["ann"])
    // Well before the 600 ms hold.
    expect(Date.now() - started).toBeLessThan(400)
  })
})

describe("presence: ending an away session", () => {
  it("signing out a client that is away ends its session, and its held place leaves at once", async () => {
    const name = room()
    const watcher = await open(env.PRESENCE_RECOVERING, name, "watcher")
    await watch(watcher, "lobby")
    const ann = await open(env.PRESENCE_RECOVERING, name, "ann")
    const session = (await ann.next((f) => f.type === "$session")).payload as { sessionId: string; token: string; seq: number }
    await join(ann, "lobby")
    await watcher.next(isDiff("lobby"))
    ann.close(4000, "network gone")
    await ann.closed()
    // Held: nothing yet.
    expect(await quiet(watcher, 150)).toEqual([])
    const started = Date.now()
    watcher.send({ type: "P_SIGN_OUT", payload: { clientId: session.sessionId } })
    const leave = await watcher.next(isDiff("lobby"), 3000)
    expect(Object.keys(leave.payload.leaves)).toEqual(["ann"])
    expect(Date.now() - started).toBeLessThan(400)
    // And the session is gone: a resume is refused.
    const back = await open(env.PRESENCE_RECOVERING, name, "ann", `&dws_resume=${session.sessionId}.${session.token}.${session.seq}`)
    expect((await back.next((f) => f.type === "$resumed")).payload.recovered).toBe(false)
  })
})

describe("presence: ACL", () => {
  it("a connection that may not subscribe sees nothing and cannot enter", async () => {
    const name = room()
    const insider = await open(env.PRESENCE_ROOM, name, "insider")
    await join(insider, "lobby")
    const hostile = await open(env.PRESENCE_ROOM, name, "mallory")
    // Asking for presence of a topic it is not subscribed to.
    hostile.send({ type: "$presence", payload: { topic: "lobby" } })
    const refused = await hostile.next((f) => f.type === "ERROR")
    expect(refused.payload.code).toBe("PERMISSION_DENIED")
    // Entering a topic it may not subscribe to.
    const denied = await call(hostile, "P_JOIN", { topic: "secret-room" })
    expect(denied.payload.ok).toBe(false)
    // Forging a diff or a state: reserved types are refused.
    hostile.send({ type: "$presence_diff", payload: { topic: "lobby", joins: { ghost: [{ ref: "x", meta: {} }] }, leaves: {} } })
    expect((await hostile.next((f) => f.type === "ERROR")).payload.code).toBe("UNIMPLEMENTED")
    hostile.send({ type: "$presence", payload: { topic: "lobby", members: { ghost: [{ ref: "x", meta: {} }] } } })
    expect((await hostile.next((f) => f.type === "ERROR")).payload.code).toBe("PERMISSION_DENIED")
    // Meanwhile the topic changes: the hostile socket hears none of it.
    await join(await open(env.PRESENCE_ROOM, name, "bob"), "lobby")
    await sleep(200)
    expect(hostile.frames.filter(isPresence)).toEqual([])
    expect(keysOf((await call(insider, "P_LIST", { topic: "lobby" })).payload.members)).toEqual(["bob", "insider"])
    expect((await call(insider, "P_LIST", { topic: "secret-room" })).payload.members).toEqual({})
  })

  it("a subscriber asking for the state over and over gets one answer a second, not an amplifier", async () => {
    const name = room()
    const asker = await open(env.PRESENCE_ROOM, name, "asker")
    await join(asker, "lobby", { blob: "x".repeat(900) })
    await asker.next(isState("lobby"))
    await asker.next(isDiff("lobby"))
    for (let i = 0; i < 20; i++) asker.send({ type: "$presence", payload: { topic: "lobby" } })
    const frames = await asker.drain(300)
    expect(frames.filter(isState("lobby")).length).toBe(1)
    const refusals = frames.filter((f) => f.type === "ERROR")
    expect(refusals.length).toBe(19)
    expect(refusals[0]!.payload.code).toBe("RESOURCE_EXHAUSTED")
    await sleep(1000)
    asker.send({ type: "$presence", payload: { topic: "lobby" } })
    expect(keysOf((await asker.next(isState("lobby"))).payload.members)).toEqual(["asker"])
  })
})

describe("Presence.layerTest", () => {
  it("tracks, updates, lists and untracks per connection, for unit tests of Effect code", async () => {
    const program = Effect.gen(function*() {
      const presence = yield* Presence
      yield* presence.track("lobby", "ann", { device: "laptop" })
      yield* presence.update("lobby", { device: "phone" })
      const listed = yield* presence.list("lobby")
      const bad = yield* Effect.flip(presence.track("", "ann"))
      yield* presence.untrack("lobby")
      return { listed, bad, after: yield* presence.list("lobby") }
    })
    const { listed, bad, after } = await Effect.runPromise(
      program.pipe(Effect.provide(Layer.merge(Presence.layerTest, Connection.layerTest({ clientId: "c1" }))))
    )
    expect(listed).toEqual({ ann: [{ ref: "c1", meta: { device: "phone" } }] })
    expect(bad.code).toBe("INVALID_ARGUMENT")
    expect(after).toEqual({})
  })
})
