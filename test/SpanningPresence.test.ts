import { env, evictDurableObject, runInDurableObject, SELF } from "cloudflare:test"
import { describe, expect, it, vi } from "vitest"
import type { PresenceChange } from "../src/Client"
import { createClient } from "../src/Client"
import type { PresencePart } from "../src/index"
import { TopicMembers } from "../src/internal/server/presence"
import { HJoin, HWatch } from "./fixtures/spanPresence"
import { workerdSockets } from "./helpers/clientSocket"
import { captureConsole } from "./helpers/console"
import { eventually, openOn, stubOf } from "./helpers/durable"
import type { Frame, TestSocket } from "./helpers/socket"
import { sleep } from "./helpers/socket"

let fresh = 0
/** A topic no other test used, so each test has a home of its own. */
const newTopic = (label: string) => `hall:${label}-${fresh++}-${Date.now()}`
const edgeName = (label: string, i: number) => `hall-${label}-${fresh}-${i}`

let correlation = 0
const call = async (socket: TestSocket, type: string, payload: unknown, timeoutMs = 5000): Promise<Frame> => {
  const correlationId = `c${correlation++}`
  socket.send({ type, meta: { correlationId }, payload })
  return socket.next((frame) => frame.meta?.correlationId === correlationId, timeoutMs)
}

const open = (name: string, user: string, namespace: DurableObjectNamespace = env.SPAN_PRESENCE_ROOM) =>
  openOn(namespace, name, { query: `?user=${user}` })

const join = async (socket: TestSocket, topic: string, meta?: unknown) => {
  const reply = await call(socket, "H_JOIN", meta === undefined ? { topic } : { topic, meta })
  expect(reply.payload).toEqual({ ok: true })
}

type Metas = Record<string, Array<{ ref: string; meta: unknown }>>

const isState = (topic: string) => (f: Frame) => f.type === "$presence" && f.payload?.topic === topic
const isDiff = (topic: string) => (f: Frame) => f.type === "$presence_diff" && f.payload?.topic === topic
const isPresence = (topic: string) => (f: Frame) => isState(topic)(f) || isDiff(topic)(f)

/** Subscribes and returns the whole presence the subscriber is sent. */
const watch = async (socket: TestSocket, topic: string) => {
  const reply = await call(socket, "H_WATCH", { topic })
  expect(reply.payload).toEqual({ ok: true })
  return (await socket.next(isState(topic), 5000)).payload
}

/** What a client would show: the last whole state with every later diff applied (leaves, then joins). */
const shown = (socket: TestSocket, topic: string): Metas => {
  let members = new Map<string, Map<string, unknown>>()
  for (const frame of socket.frames.filter(isPresence(topic))) {
    if (frame.type === "$presence") {
      members = new Map(Object.entries(frame.payload.members as Metas).map(([k, ms]) => [k, new Map(ms.map((m) => [m.ref, m.meta]))]))
      continue
    }
    for (const [key, metas] of Object.entries(frame.payload.leaves as Metas)) {
      for (const { ref } of metas) members.get(key)?.delete(ref)
      if (members.get(key)?.size === 0) members.delete(key)
    }
    for (const [key, metas] of Object.entries(frame.payload.joins as Metas)) {
      if (!members.has(key)) members.set(key, new Map())
      for (const { ref, meta } of metas) members.get(key)!.set(ref, meta)
    }
  }
  return Object.fromEntries(Array.from(members, ([key, metas]) => [key, Array.from(metas, ([ref, meta]) => ({ ref, meta }))]))
}

const keysShown = (socket: TestSocket, topic: string) => Object.keys(shown(socket, topic)).sort()

/** The keys the client saw leave, frame after frame (a key leaves when its last meta does). */
const keysLeft = (socket: TestSocket, topic: string) => {
  const frames = socket.frames.filter(isPresence(topic))
  const left: Array<string> = []
  let before = new Set<string>()
  for (let i = 1; i <= frames.length; i++) {
    const now = new Set(Object.keys(shown({ ...socket, frames: frames.slice(0, i) }, topic)))
    for (const key of before) if (!now.has(key)) left.push(key)
    before = now
  }
  return left
}

const home = (topic: string) => env.PRESENCE_HOME.get(env.PRESENCE_HOME.idFromName(topic))
const edgeId = (name: string, namespace: DurableObjectNamespace = env.SPAN_PRESENCE_ROOM) => namespace.idFromName(name).toString()

describe("presence across objects", () => {
  it("members on three edges are one list for subscribers on each edge", async () => {
    const topic = newTopic("three")
    const watchers = await Promise.all([0, 1, 2].map((i) => open(edgeName("three", i), `watcher${i}`)))
    for (const socket of watchers) expect((await watch(socket, topic)).members).toEqual({})
    const members = await Promise.all([0, 1, 2].map((i) => open(edgeName("three", i), `user${i}`)))
    for (const [i, socket] of members.entries()) await join(socket, topic, { edge: i })
    for (const watcher of watchers) {
      await eventually(async () => keysShown(watcher, topic), (keys) => keys.length === 3)
      expect(keysShown(watcher, topic)).toEqual(["user0", "user1", "user2"])
    }
    // The handler's own list is the same union.
    const listed = await call(watchers[0]!, "H_LIST", { topic })
    expect(Object.keys(listed.payload.members).sort()).toEqual(["user0", "user1", "user2"])
    // A late subscriber on a fourth edge gets the whole list at once.
    const late = await open(edgeName("three", 3), "late")
    expect(Object.keys((await watch(late, topic)).members).sort()).toEqual(["user0", "user1", "user2"])
    expect(await home(topic).presenceStatus(topic)).toMatchObject({ members: 3 })
  })

  it("two tabs of one user on two edges are one member; closing one tab is no leave, closing both is", async () => {
    const topic = newTopic("tabs")
    const watcher = await open(edgeName("tabs", 2), "watcher")
    await watch(watcher, topic)
    const tab1 = await open(edgeName("tabs", 0), "ann")
    const tab2 = await open(edgeName("tabs", 1), "ann")
    await join(tab1, topic, { device: "laptop" })
    await join(tab2, topic, { device: "phone" })
    await eventually(async () => shown(watcher, topic)["ann"]?.length ?? 0, (n) => n === 2)
    expect(keysShown(watcher, topic)).toEqual(["ann"])
    tab1.close(1000)
    await eventually(async () => shown(watcher, topic)["ann"]?.length ?? 0, (n) => n === 1)
    expect(shown(watcher, topic)["ann"]!.map((m) => m.meta)).toEqual([{ device: "phone" }])
    expect(keysLeft(watcher, topic)).toEqual([])
    tab2.close(1000)
    await eventually(async () => keysShown(watcher, topic), (keys) => keys.length === 0)
    expect(keysLeft(watcher, topic)).toEqual(["ann"])
  })

  it("coalesces across objects: 30 joins on three edges reach a subscriber in a few frames", async () => {
    const topic = newTopic("burst")
    const watcher = await open(edgeName("burst", 9), "watcher")
    await watch(watcher, topic)
    const sockets = await Promise.all(Array.from({ length: 30 }, (_, i) => open(edgeName("burst", i % 3), `u${i}`)))
    await Promise.all(sockets.map((socket) => join(socket, topic)))
    await eventually(async () => keysShown(watcher, topic).length, (n) => n === 30)
    const frames = watcher.frames.filter(isPresence(topic)).length
    // One state on subscribe, then diffs: far fewer than one per join.
    expect(frames).toBeLessThanOrEqual(8)
    for (const socket of sockets.slice(-3)) expect(socket.frames.filter(isDiff(topic)).length).toBeLessThanOrEqual(8)
  })

  it("counts-only works across objects", async () => {
    const topic = newTopic("counted")
    const watcher = await open(edgeName("counted", 0), "watcher", env.SPAN_PRESENCE_COUNTED)
    await watch(watcher, topic)
    for (const [i, user] of ["a", "b", "c"].entries()) {
      await join(await open(edgeName("counted", i), user, env.SPAN_PRESENCE_COUNTED), topic)
    }
    const counted = await watcher.next((f) => isDiff(topic)(f) && f.payload.count === 3, 5000)
    expect(counted.payload).toEqual({ topic, count: 3 })
    const late = await open(edgeName("counted", 4), "late", env.SPAN_PRESENCE_COUNTED)
    expect(await watch(late, topic)).toEqual({ topic, count: 3 })
  })

  it("a kicked connection leaves at once on every edge", async () => {
    const topic = newTopic("kick")
    const watcher = await open(edgeName("kick", 1), "watcher")
    await watch(watcher, topic)
    const admin = await open(edgeName("kick", 0), "admin")
    const mallory = await open(edgeName("kick", 0), "mallory")
    await join(mallory, topic)
    await eventually(async () => keysShown(watcher, topic), (keys) => keys.includes("mallory"))
    const started = Date.now()
    admin.send({ type: "H_KICK", payload: { user: "mallory" } })
    expect((await mallory.closed()).code).toBe(4403)
    await eventually(async () => keysShown(watcher, topic), (keys) => !keys.includes("mallory"), 3000)
    expect(Date.now() - started).toBeLessThan(1000)
  })
})

describe("presence across objects: the client", () => {
  const person = (edge: string, user: string) => {
    const client = createClient({
      url: `ws://hall.test/${edge}?user=${user}`,
      webSocket: workerdSockets(env.SPAN_PRESENCE_ROOM).factory,
      heartbeat: false,
      reconnect: false
    })
    void client.connect()
    return client
  }

  it("needs nothing new: its view shows one list, and a user leaves when the last tab on any edge closes", async () => {
    const topic = newTopic("client")
    const watcher = person(edgeName("client", 2), "watcher")
    const view = watcher.presence(topic)
    const changes: Array<PresenceChange> = []
    view.onChange((change) => void changes.push(change))
    expect(await watcher.request(HWatch, { topic })).toEqual({ ok: true })
    await eventually(async () => view.known, (known) => known)
    const laptop = person(edgeName("client", 0), "ann")
    const phone = person(edgeName("client", 1), "ann")
    expect(await laptop.request(HJoin, { topic, meta: { device: "laptop" } })).toEqual({ ok: true })
    expect(await phone.request(HJoin, { topic, meta: { device: "phone" } })).toEqual({ ok: true })
    await eventually(async () => view.members["ann"]?.length ?? 0, (metas) => metas === 2)
    laptop.close()
    await eventually(async () => view.members["ann"]?.length ?? 0, (metas) => metas === 1)
    expect(changes.flatMap((change) => change.left)).toEqual([])
    phone.close()
    await eventually(async () => view.count, (count) => count === 0)
    expect(changes.flatMap((change) => change.left)).toEqual(["ann"])
    expect(changes.flatMap((change) => change.joined)).toEqual(["ann"])
    watcher.close()
  })
})

describe("presence across objects: evictions, restarts, dead edges", () => {
  it("an edge's eviction changes nothing anyone sees; its subscribers get the list again, with no flap", async () => {
    const topic = newTopic("evict-edge")
    const [a, b] = [edgeName("evict-edge", 0), edgeName("evict-edge", 1)]
    const watcherB = await open(b, "watcherB")
    await watch(watcherB, topic)
    const watcherA = await open(a, "watcherA")
    await watch(watcherA, topic)
    await join(await open(a, "ann"), topic)
    await join(await open(b, "bob"), topic)
    for (const w of [watcherA, watcherB]) await eventually(async () => keysShown(w, topic), (keys) => keys.length === 2)
    await evictDurableObject(stubOf(env.SPAN_PRESENCE_ROOM, a))
    // Past several of the home's checks: the evicted edge answers with its part, unchanged.
    await sleep(900)
    expect(keysShown(watcherB, topic)).toEqual(["ann", "bob"])
    expect(keysLeft(watcherB, topic)).toEqual([])
    // A change after the wake reaches both edges; the woken one first gets the whole list.
    await join(await open(b, "carol"), topic)
    for (const w of [watcherA, watcherB]) {
      await eventually(async () => keysShown(w, topic), (keys) => keys.length === 3)
      expect(keysLeft(w, topic)).toEqual([])
    }
  })

  it("the home's eviction is rebuilt from the edges: no flap, no ghost", async () => {
    const topic = newTopic("evict-home")
    const watcher = await open(edgeName("evict-home", 2), "watcher")
    await watch(watcher, topic)
    const ann = await open(edgeName("evict-home", 0), "ann")
    await join(ann, topic)
    await join(await open(edgeName("evict-home", 1), "bob"), topic)
    await eventually(async () => keysShown(watcher, topic), (keys) => keys.length === 2)
    await evictDurableObject(home(topic))
    // The restarted home asks the edges it knew for their parts (from its alarm, or on first use).
    await eventually(async () => (await home(topic).presenceStatus(topic)).members, (n) => n === 2)
    ann.close(1000)
    await join(await open(edgeName("evict-home", 1), "carol"), topic)
    await eventually(async () => keysShown(watcher, topic), (keys) => keys.join() === "bob,carol")
    // bob never left and came back; ann left once, for real.
    expect(keysLeft(watcher, topic)).toEqual(["ann"])
  })

  it("after an edge restarts without webSocketClose, its members leave everywhere within the check interval", async () => {
    captureConsole("warn")
    const topic = newTopic("restart")
    const watcher = await open(edgeName("restart", 1), "watcher")
    await watch(watcher, topic)
    const ann = await open(edgeName("restart", 0), "ann")
    await join(ann, topic)
    await eventually(async () => keysShown(watcher, topic), (keys) => keys.includes("ann"))
    await evictDurableObject(stubOf(env.SPAN_PRESENCE_ROOM, edgeName("restart", 0)), { webSockets: "close" })
    await ann.closed(5000)
    const started = Date.now()
    await eventually(async () => keysShown(watcher, topic), (keys) => !keys.includes("ann"), 5000)
    // presenceCheckMs is 300 ms here (60 s by default).
    expect(Date.now() - started).toBeLessThan(2000)
    expect((await home(topic).presenceStatus(topic)).edges).toEqual([])
  })

  it("with no periodic check due, a restarted edge's members leave at the next change delivered to it", async () => {
    captureConsole("warn")
    const topic = newTopic("restart-change")
    // Checks every 60 s here: only the delivery can reveal the restart within this test.
    await home(topic).slowChecks()
    const a = edgeName("restart-change", 0)
    const watcher = await open(edgeName("restart-change", 1), "watcher")
    await watch(watcher, topic)
    const ann = await open(a, "ann")
    await join(ann, topic)
    await eventually(async () => keysShown(watcher, topic), (keys) => keys.includes("ann"))
    await evictDurableObject(stubOf(env.SPAN_PRESENCE_ROOM, a), { webSockets: "close" })
    await ann.closed(5000)
    await sleep(500)
    // Nothing has told the home yet.
    expect(keysShown(watcher, topic)).toContain("ann")
    // A change anywhere is delivered to the restarted edge (still registered), which answers from a new process.
    await join(await open(edgeName("restart-change", 1), "bob"), topic)
    await eventually(async () => keysShown(watcher, topic), (keys) => keys.join() === "bob", 3000)
  })

  it("a dead edge's members are dropped within presenceDropMs and come back when it answers again", async () => {
    const warnings = captureConsole("warn")
    const topic = newTopic("dead")
    const dead = edgeName("dead", 0)
    const watcher = await open(edgeName("dead", 1), "watcher")
    await watch(watcher, topic)
    const ann = await open(dead, "ann")
    await join(ann, topic)
    await eventually(async () => keysShown(watcher, topic), (keys) => keys.includes("ann"))
    await home(topic).failEdge(edgeId(dead))
    const started = Date.now()
    await eventually(async () => keysShown(watcher, topic), (keys) => !keys.includes("ann"), 5000)
    // presenceDropMs is 1 000 ms and the check runs every 300 ms.
    expect(Date.now() - started).toBeLessThan(2500)
    expect(Date.now() - started).toBeGreaterThanOrEqual(400)
    expect(warnings.lines().some((line) => line.includes("did not answer for 1000 ms"))).toBe(true)
    await home(topic).failEdge(null)
    // The edge's next update carries its whole part: nothing is lost for good.
    await join(await open(dead, "bob"), topic)
    await eventually(async () => keysShown(watcher, topic), (keys) => keys.join() === "ann,bob")
  })
})

describe("presence across objects: failed calls", () => {
  it("an edge's update that fails is sent again, whole, until the home takes it", async () => {
    const warnings = captureConsole("warn")
    const topic = newTopic("retry-out")
    const watcher = await open(edgeName("retry-out", 1), "watcher")
    await watch(watcher, topic)
    await home(topic).failUpdates(2)
    await join(await open(edgeName("retry-out", 0), "ann"), topic)
    await eventually(async () => keysShown(watcher, topic), (keys) => keys.includes("ann"), 5000)
    expect(warnings.lines().some((line) => line.includes("could not reach its home; retrying"))).toBe(true)
    // The home now holds this edge's part: a failed change is sent again whole, and not taken for a stale one.
    await home(topic).failUpdates(1)
    await join(await open(edgeName("retry-out", 0), "bob"), topic)
    await eventually(async () => keysShown(watcher, topic), (keys) => keys.join() === "ann,bob", 5000)
  })

  it("a delivery to an edge that fails is retried, and the edge catches up on what it missed", async () => {
    const warnings = captureConsole("warn")
    const topic = newTopic("retry-in")
    const b = edgeName("retry-in", 1)
    const watcher = await open(b, "watcher")
    await watch(watcher, topic)
    await home(topic).failEdge(edgeId(b))
    const a = edgeName("retry-in", 0)
    await join(await open(a, "ann"), topic)
    const bob = await open(a, "bob")
    await join(bob, topic)
    bob.close(1000)
    await sleep(300)
    expect(keysShown(watcher, topic)).toEqual([])
    expect(warnings.lines().some((line) => line.includes("presence delivery to edge"))).toBe(true)
    await home(topic).failEdge(null)
    await eventually(async () => keysShown(watcher, topic), (keys) => keys.join() === "ann", 5000)
  })
})

describe("presence across objects: recovery", () => {
  const sessionOf = async (socket: TestSocket) =>
    (await socket.next((f) => f.type === "$session")).payload as { sessionId: string; token: string; seq: number }

  it("a connection that resumes on its edge keeps its place on every edge: no leave, no join", async () => {
    const topic = newTopic("resume")
    const name = edgeName("resume", 0)
    const watcher = await open(edgeName("resume", 1), "watcher", env.SPAN_PRESENCE_RECOVERING)
    await watch(watcher, topic)
    const ann = await open(name, "ann", env.SPAN_PRESENCE_RECOVERING)
    const session = await sessionOf(ann)
    await join(ann, topic)
    await eventually(async () => keysShown(watcher, topic), (keys) => keys.includes("ann"))
    const framesBefore = watcher.frames.filter(isPresence(topic)).length
    ann.close(4000, "network gone")
    await ann.closed()
    const back = await openOn(env.SPAN_PRESENCE_RECOVERING, name, {
      query: `?user=ann&dws_resume=${session.sessionId}.${session.token}.${session.seq}`
    })
    await back.next((f) => f.type === "$resumed")
    // Past awayMs (400 ms) and the home's check: nothing was said about ann anywhere.
    await sleep(800)
    expect(watcher.frames.filter(isPresence(topic)).length).toBe(framesBefore)
    expect(keysShown(watcher, topic)).toContain("ann")
    back.close(1000)
    await eventually(async () => keysShown(watcher, topic), (keys) => !keys.includes("ann"))
  })

  it("after an edge restart, a member that does not resume leaves everywhere once awayMs is over", async () => {
    captureConsole("warn")
    const topic = newTopic("held")
    const name = edgeName("held", 0)
    const watcher = await open(edgeName("held", 1), "watcher", env.SPAN_PRESENCE_RECOVERING)
    await watch(watcher, topic)
    const ann = await open(name, "ann", env.SPAN_PRESENCE_RECOVERING)
    await join(ann, topic)
    await eventually(async () => keysShown(watcher, topic), (keys) => keys.includes("ann"))
    await evictDurableObject(stubOf(env.SPAN_PRESENCE_RECOVERING, name), { webSockets: "close" })
    await ann.closed(5000)
    const started = Date.now()
    await eventually(async () => keysShown(watcher, topic), (keys) => !keys.includes("ann"), 5000)
    // Held while the session may resume (awayMs 400 ms after the home's check woke the edge), then gone.
    expect(Date.now() - started).toBeGreaterThanOrEqual(350)
    expect(Date.now() - started).toBeLessThan(2500)
    expect((await home(topic).presenceStatus(topic)).edges).toEqual([])
  })
})

describe("presence across objects: ACL and forged calls", () => {
  it("is visible only to connections allowed to subscribe", async () => {
    const staffTopic = "hall:staff"
    const name = edgeName("acl", 0)
    const staff = await open(name, "staff")
    await join(staff, staffTopic)
    const reader = await open(edgeName("acl", 1), "reader")
    expect((await call(reader, "H_WATCH", { topic: staffTopic })).payload).toEqual({ ok: false, error: "PERMISSION_DENIED" })
    expect((await call(reader, "H_JOIN", { topic: staffTopic })).payload).toEqual({ ok: false, error: "PERMISSION_DENIED" })
    reader.send({ type: "$presence", payload: { topic: staffTopic } })
    expect((await reader.next((f) => f.type === "ERROR")).payload.code).toBe("PERMISSION_DENIED")
    // A client's forged diff is refused, and changes nothing anywhere.
    reader.send({ type: "$presence_diff", payload: { topic: staffTopic, joins: { ghost: [{ ref: "0123456789abcdef", meta: {} }] }, leaves: {} } })
    expect((await reader.next((f) => f.type === "ERROR")).payload.code).toBe("UNIMPLEMENTED")
    await join(await open(edgeName("acl", 1), "staff"), staffTopic)
    await sleep(200)
    expect(reader.frames.filter(isPresence(staffTopic))).toEqual([])
    expect(Object.keys((await call(staff, "H_LIST", { topic: staffTopic })).payload.members)).toEqual(["staff"])
  })

  it("the home takes presence only through object calls, from a real edge address, within its bounds", async () => {
    captureConsole("error")
    const topic = newTopic("forged")
    const watcher = await open(edgeName("forged", 0), "watcher")
    await watch(watcher, topic)
    const ann = await open(edgeName("forged", 1), "ann")
    await join(ann, topic)
    await eventually(async () => keysShown(watcher, topic), (keys) => keys.includes("ann"))
    const annRef = shown(watcher, topic)["ann"]![0]!.ref
    // A public request routed to the home reaches nothing.
    for (const path of [`/presence-home/${encodeURIComponent(topic)}`, `/presence-home/${encodeURIComponent(topic)}/presenceUpdate`]) {
      const response = await SELF.fetch(`http://test.local${path}`)
      expect(response.status).toBe(404)
      await response.text()
    }
    const h = home(topic)
    const ghost = { epoch: "e", counter: 1, members: { ghost: [{ ref: "00000000000000aa", meta: {} }] } }
    // An address that names no edge: no such binding, or an id of another namespace.
    expect(await h.presenceUpdate(topic, { id: edgeId("x"), binding: "NO_SUCH" }, ghost))
      .toEqual({ ok: false, refused: expect.stringMatching(/no Durable Object binding/) })
    expect(await h.presenceUpdate(topic, { id: "not-an-id", binding: "SPAN_PRESENCE_ROOM" }, ghost))
      .toEqual({ ok: false, refused: expect.stringMatching(/no object of/) })
    const other = { id: edgeId(edgeName("forged", 7)), binding: "SPAN_PRESENCE_ROOM" }
    // Another edge cannot take over, or remove, a ref of ann's edge.
    const steal = { epoch: "e", counter: 1, members: { mallory: [{ ref: annRef, meta: {} }] } }
    expect(await h.presenceUpdate(topic, other, steal)).toEqual({ ok: false, refused: expect.stringMatching(/another edge/) })
    // Bounds: members per edge (50 here), the meta's size, the ref's shape.
    const many = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, [{ ref: i.toString(16).padStart(16, "0"), meta: {} }]]))
    expect(await h.presenceUpdate(topic, other, { epoch: "e", counter: 1, members: many })).toMatchObject({ ok: false, refused: expect.stringMatching(/more than 50/) })
    const big = { epoch: "e", counter: 1, members: { big: [{ ref: "00000000000000bb", meta: "x".repeat(2000) }] } }
    expect(await h.presenceUpdate(topic, other, big)).toMatchObject({ ok: false, refused: expect.stringMatching(/1024 bytes/) })
    const badRef = { epoch: "e", counter: 1, members: { bad: [{ ref: "<script>", meta: {} }] } }
    expect(await h.presenceUpdate(topic, other, badRef)).toMatchObject({ ok: false, refused: "malformed ref" })
    // A change with no whole part first is asked to resync, not applied.
    const diffOnly = { epoch: "e", counter: 5, changes: { joins: { ghost: [{ ref: "00000000000000cc", meta: {} }] }, leaves: {} } }
    expect(await h.presenceUpdate(topic, other, diffOnly)).toEqual({ ok: false, resync: true })
    await sleep(200)
    expect(keysShown(watcher, topic)).toEqual(["ann"])
    expect((await h.presenceStatus(topic)).members).toBe(1)
    // An edge refuses presence calls for a topic that does not span objects.
    const edge = env.SPAN_PRESENCE_ROOM.get(env.SPAN_PRESENCE_ROOM.idFromName(edgeName("forged", 0)))
    expect(await edge.deliverPresence("lobby", { epoch: "e", version: 1, members: { ghost: [] } })).toMatchObject({ epoch: "", version: 0 })
    expect(await edge.checkPresence("lobby", "e", 0)).toMatchObject({ same: false, part: { members: {} } })
  })
})

describe("presence across objects: an edge's change at the home", () => {
  /** The home's union of `topic` (the object it calls `TopicMembers` methods on), read inside the home. */
  const unionAt = (topic: string) =>
    runInDurableObject(home(topic), (instance) => {
      const engine = (instance as unknown as { presenceEngine: { topics: Map<string, { union: TopicMembers }> } }).presenceEngine
      return engine.topics.get(topic)!.union
    })
  /** Counts the calls of a `TopicMembers` method per object it is called on, from now on. */
  const countCalls = (method: "set" | "snapshot") => {
    const calls = new Map<TopicMembers, number>()
    const original = TopicMembers.prototype[method] as (this: TopicMembers, ...args: Array<unknown>) => unknown
    const spy = vi.spyOn(TopicMembers.prototype, method).mockImplementation(function(this: TopicMembers, ...args: Array<unknown>) {
      calls.set(this, (calls.get(this) ?? 0) + 1)
      return original.apply(this, args)
    } as never)
    return { of: (members: TopicMembers) => calls.get(members) ?? 0, restore: () => spy.mockRestore() }
  }
  const refOf = (n: number) => n.toString(16).padStart(16, "0")
  /** An object of the edges' binding that holds no socket: not registered for the topic, and a member of nothing. */
  const stranger = (label: string) => ({ id: edgeId(edgeName(label, 7)), binding: "SPAN_PRESENCE_ROOM" })

  it("touches only the refs the change names, whatever the size of the edge's part", async () => {
    const topic = newTopic("cost")
    const h = home(topic)
    await h.slowChecks()
    const edge = stranger("cost")
    const members = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`m${i}`, [{ ref: refOf(0x100 + i), meta: { i } }]]))
    expect(await h.presenceUpdate(topic, edge, { epoch: "e", counter: 1, members })).toEqual({ ok: true })
    const union = await unionAt(topic)
    const sets = countCalls("set")
    try {
      const newcomer = { newcomer: [{ ref: refOf(0xfff), meta: {} }] }
      expect(await h.presenceUpdate(topic, edge, { epoch: "e", counter: 2, changes: { joins: newcomer, leaves: {} } })).toEqual({ ok: true })
      expect(sets.of(union)).toBe(1)
      expect(await h.presenceUpdate(topic, edge, { epoch: "e", counter: 3, changes: { joins: {}, leaves: newcomer } })).toEqual({ ok: true })
      expect(sets.of(union)).toBe(2)
      // A whole part (a new epoch of the edge) is read whole.
      expect(await h.presenceUpdate(topic, edge, { epoch: "f", counter: 1, members })).toEqual({ ok: true })
      expect(sets.of(union)).toBe(42)
    } finally {
      sets.restore()
    }
    expect(await h.presenceStatus(topic)).toMatchObject({ members: 40, edges: [edge.id] })
  })

  it("a leave or a meta change on one edge reaches subscribers as that change alone: nobody else's members or metas move", async () => {
    const topic = newTopic("alone")
    const watcher = await open(edgeName("alone", 2), "watcher")
    await watch(watcher, topic)
    const [ann, bob, carol] = await Promise.all(["ann", "bob", "carol"].map((user) => open(edgeName("alone", 0), user)))
    await join(ann!, topic, { v: 1 })
    await join(bob!, topic, { v: 1 })
    await join(carol!, topic, { v: 1 })
    await join(await open(edgeName("alone", 1), "dave"), topic, { v: 1 })
    await eventually(async () => keysShown(watcher, topic), (keys) => keys.length === 4)
    const before = shown(watcher, topic)
    const mark = watcher.frames.filter(isPresence(topic)).length
    bob!.close(1000)
    await eventually(async () => keysShown(watcher, topic), (keys) => !keys.includes("bob"))
    // ann updates her meta on the same connection (one ref): a leave and a join of that ref.
    await join(ann!, topic, { v: 2 })
    await eventually(async () => shown(watcher, topic)["ann"]?.[0]?.meta, (meta) => JSON.stringify(meta) === JSON.stringify({ v: 2 }))
    await sleep(100)
    const frames = watcher.frames.filter(isPresence(topic)).slice(mark)
    expect(frames.every(isDiff(topic))).toBe(true)
    const named = (side: "joins" | "leaves") => frames.flatMap((f) => Object.keys(f.payload[side] as Metas)).sort()
    expect(named("leaves")).toEqual(["ann", "bob"])
    expect(named("joins")).toEqual(["ann"])
    expect(shown(watcher, topic)).toEqual({
      ann: [{ ref: before["ann"]![0]!.ref, meta: { v: 2 } }],
      carol: before["carol"],
      dave: before["dave"]
    })
    expect(keysLeft(watcher, topic)).toEqual(["bob"])
  })

  it("after the home's rebuild, the whole list is made once for every edge, and the next changes apply to the parts it took", async () => {
    const topic = newTopic("rebuild-once")
    const watchers = await Promise.all([0, 1, 2].map((i) => open(edgeName("rebuild-once", i), `watcher${i}`)))
    for (const w of watchers) await watch(w, topic)
    const ann = await open(edgeName("rebuild-once", 0), "ann")
    await join(ann, topic)
    await join(await open(edgeName("rebuild-once", 1), "bob"), topic)
    for (const w of watchers) await eventually(async () => keysShown(w, topic), (keys) => keys.length === 2)
    await evictDurableObject(home(topic))
    const snapshots = countCalls("snapshot")
    let union: TopicMembers
    try {
      // The first call after the eviction starts the rebuild: every edge that had a part is asked for it.
      await home(topic).presenceStatus(topic)
      union = await unionAt(topic)
      await eventually(async () => snapshots.of(union), (n) => n > 0)
      await sleep(200)
      // Three registered edges got the whole list: it was made once.
      expect(snapshots.of(union)).toBe(1)
    } finally {
      snapshots.restore()
    }
    // The edges' parts were taken whole by the rebuild; their next updates are changes, applied to them.
    ann.close(1000)
    await join(await open(edgeName("rebuild-once", 2), "carol"), topic)
    for (const w of watchers) {
      await eventually(async () => keysShown(w, topic), (keys) => keys.join() === "bob,carol")
      expect(keysLeft(w, topic)).toEqual(["ann"])
    }
    expect(await home(topic).presenceStatus(topic)).toMatchObject({ members: 2 })
  })

  it("refuses a forged, stale, out-of-order or oversized change like a whole part, and applies none of it", async () => {
    captureConsole("error")
    const topic = newTopic("forged-change")
    const h = home(topic)
    await h.slowChecks()
    const watcher = await open(edgeName("forged-change", 0), "watcher")
    await watch(watcher, topic)
    const ann = await open(edgeName("forged-change", 1), "ann")
    await join(ann, topic)
    await eventually(async () => keysShown(watcher, topic), (keys) => keys.includes("ann"))
    const annShown = shown(watcher, topic)["ann"]!
    const annRef = annShown[0]!.ref
    const other = stranger("forged-change")
    const update = (counter: number, changes: NonNullable<PresencePart["changes"]>) => h.presenceUpdate(topic, other, { epoch: "e", counter, changes })
    const one = (key: string, ref: string, meta: unknown = {}) => ({ [key]: [{ ref, meta }] })
    const mallory = refOf(0xa1)
    // A change from an edge whose part the home does not hold: asked for the whole part, nothing applied.
    expect(await update(1, { joins: one("ghost", refOf(0xa0)), leaves: {} })).toEqual({ ok: false, resync: true })
    expect(await h.presenceUpdate(topic, other, { epoch: "e", counter: 1, members: one("mallory", mallory) })).toEqual({ ok: true })
    await eventually(async () => keysShown(watcher, topic), (keys) => keys.join() === "ann,mallory")
    // Another edge's ref: a leave of it changes nothing, a join of it is refused.
    expect(await update(2, { joins: {}, leaves: one("ann", annRef) })).toEqual({ ok: true })
    expect(await update(3, { joins: one("ann", annRef, { stolen: true }), leaves: {} }))
      .toEqual({ ok: false, refused: expect.stringMatching(/another edge/) })
    // Duplicated and stale changes are taken for already applied.
    const zed = refOf(0xa2)
    expect(await update(3, { joins: one("zed", zed), leaves: {} })).toEqual({ ok: true })
    expect(await update(4, { joins: {}, leaves: one("zed", zed) })).toEqual({ ok: true })
    expect(await update(3, { joins: one("zed", zed), leaves: {} })).toEqual({ ok: true })
    expect(await update(2, { joins: one("zed", zed), leaves: {} })).toEqual({ ok: true })
    // Out of order: a gap asks for the whole part.
    expect(await update(9, { joins: one("zed", zed), leaves: {} })).toEqual({ ok: false, resync: true })
    // The bounds of a whole part hold for the part a change makes: 1 + 50 connections, a meta, a ref.
    const many = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`k${i}`, [{ ref: refOf(0xb00 + i), meta: {} }]]))
    expect(await update(5, { joins: many, leaves: {} })).toMatchObject({ ok: false, refused: expect.stringMatching(/more than 50/) })
    expect(await update(5, { joins: one("big", refOf(0xa3), "x".repeat(2000)), leaves: {} }))
      .toMatchObject({ ok: false, refused: expect.stringMatching(/1024 bytes/) })
    expect(await update(5, { joins: one("bad", "<script>"), leaves: {} })).toMatchObject({ ok: false, refused: "malformed ref" })
    expect(await update(5, { joins: {}, leaves: one("bad", "<script>") })).toMatchObject({ ok: false, refused: "malformed ref" })
    expect((await h.presenceStatus(topic)).members).toBe(2)
    // A leave names its ref: under whatever key it says, the ref leaves from the key the part holds it by.
    expect(await update(5, { joins: {}, leaves: one("ann", mallory) })).toEqual({ ok: true })
    await eventually(async () => keysShown(watcher, topic), (keys) => keys.join() === "ann")
    // Its part is empty, so gone: its next change is asked for the whole part.
    expect(await update(6, { joins: one("mallory", mallory), leaves: {} })).toEqual({ ok: false, resync: true })
    await sleep(200)
    expect(shown(watcher, topic)).toEqual({ ann: annShown })
    expect(keysLeft(watcher, topic)).toEqual(["mallory"])
    expect(await h.presenceStatus(topic)).toMatchObject({ members: 1, edges: [edgeId(edgeName("forged-change", 1))] })
  })
})
