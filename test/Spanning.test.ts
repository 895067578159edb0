import { env, evictDurableObject, runInDurableObject, SELF } from "cloudflare:test"
import { afterEach, describe, expect, it } from "vitest"
import type { Client } from "../src/Client"
import { createClient } from "../src/Client"
import { SJoin, SNews } from "./fixtures/spanning"
import { workerdSockets } from "./helpers/clientSocket"
import { captureConsole } from "./helpers/console"
import { eventually, openOn, stubOf } from "./helpers/durable"
import type { Frame, TestSocket } from "./helpers/socket"

let fresh = 0
/** A topic no other test used, so each test has a home of its own. */
const newTopic = (label: string) => `news:${label}-${fresh++}-${Date.now()}`
const edgeName = (label: string, i: number) => `span-${label}-${fresh}-${i}`

let correlation = 0
const call = async (socket: TestSocket, type: string, payload: unknown, timeoutMs = 5000): Promise<Frame> => {
  const correlationId = `c${correlation++}`
  socket.send({ type, meta: { correlationId }, payload })
  return socket.next((frame) => frame.meta?.correlationId === correlationId, timeoutMs)
}

const open = (name: string, user = "reader", namespace: DurableObjectNamespace = env.SPAN_ROOM) =>
  openOn(namespace, name, { query: `?user=${user}` })

const join = async (socket: TestSocket, topic: string) => {
  const reply = await call(socket, "S_JOIN", { topic })
  expect(reply.payload).toEqual({ ok: true })
}

const publish = async (socket: TestSocket, topic: string, n: number) => (await call(socket, "S_PUBLISH", { topic, n })).payload

const news = (socket: TestSocket) => socket.frames.filter((frame) => frame.type === "S_NEWS").map((frame) => frame.payload.n as number)

const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const home = (topic: string) => env.FAULTY_HOME.get(env.FAULTY_HOME.idFromName(topic))

describe("spanning topics", () => {
  it("delivers a publish from one edge to subscribers on others, each once, with its seq", async () => {
    const topic = newTopic("basic")
    const subscribers = await Promise.all([0, 1, 2].map((i) => open(edgeName("basic", i))))
    for (const socket of subscribers) await join(socket, topic)
    const editor = await open(edgeName("basic", 9), "editor")
    const first = await publish(editor, topic, 1)
    expect(first).toEqual({ ok: true, seq: 1, matched: 3 })
    expect(await publish(editor, topic, 2)).toMatchObject({ ok: true, seq: 2 })
    for (const socket of subscribers) {
      await eventually(async () => news(socket), (ns) => ns.length >= 2)
      await settle(100)
      expect(news(socket)).toEqual([1, 2])
    }
    // The publisher's own edge has no subscriber: it never registered.
    expect((await home(topic).status(topic)).edges).toHaveLength(3)
  })

  it("keeps order and delivers each message once to 12 edges while edges and the home are evicted and calls fail", async () => {
    const warnings = captureConsole("warn")
    const topic = newTopic("chaos")
    const edges = Array.from({ length: 12 }, (_, i) => edgeName("chaos", i))
    const sockets = await Promise.all(edges.flatMap((name) => [open(name), open(name)]))
    for (const socket of sockets) await join(socket, topic)
    await home(topic).setFaults({ failBefore: 0.15, failAfter: 0.15, late: 0.1 })
    const editor = await open(edgeName("chaos-publisher", 0), "editor")
    const total = 60
    const seqs: Array<number> = []
    for (let n = 1; n <= total; n++) {
      const result = await publish(editor, topic, n)
      expect(result).toMatchObject({ ok: true })
      seqs.push(result.seq)
      if (n % 7 === 0) await evictDurableObject(stubOf(env.SPAN_ROOM, edges[n % edges.length]!))
      if (n % 20 === 0) await evictDurableObject(home(topic))
    }
    expect(seqs).toEqual(Array.from({ length: total }, (_, i) => i + 1))
    const expected = Array.from({ length: total }, (_, i) => i + 1)
    for (const socket of sockets) {
      await eventually(async () => news(socket).length, (count) => count >= total, 15_000)
    }
    await home(topic).setFaults({ failBefore: 0, failAfter: 0, late: 0 })
    // Let late and retried calls land: none of them may add a frame.
    await new Promise((resolve) => setTimeout(resolve, 800))
    for (const socket of sockets) expect(news(socket)).toEqual(expected)
    // The faults did happen: refused calls, lost answers and timeouts, each retried.
    const failures = warnings.lines().filter((line) => line.includes("delivery to edge"))
    expect(failures.some((line) => line.includes("injected: call refused"))).toBe(true)
    expect(failures.some((line) => line.includes("injected: answer lost"))).toBe(true)
    expect(failures.some((line) => line.includes("did not answer within"))).toBe(true)
  }, 60_000)

  it("honours excludeSelf: the publisher alone is skipped, on its own edge too", async () => {
    const topic = newTopic("exclude")
    const here = edgeName("exclude", 0)
    const editor = await open(here, "editor")
    const neighbour = await open(here)
    const remote = await open(edgeName("exclude", 1))
    for (const socket of [editor, neighbour, remote]) await join(socket, topic)
    const reply = await call(editor, "S_PUBLISH", { topic, n: 1, excludeSelf: true })
    expect(reply.payload).toMatchObject({ ok: true, seq: 1 })
    await eventually(async () => [news(neighbour), news(remote)], ([a, b]) => a!.length === 1 && b!.length === 1)
    await settle(200)
    expect(news(editor)).toEqual([])
  })

  it("resumes owed deliveries from the home's alarm after a restart, with no further publish", async () => {
    captureConsole("warn")
    const topic = newTopic("alarm")
    const socket = await open(edgeName("alarm", 0))
    await join(socket, topic)
    const editor = await open(edgeName("alarm-publisher", 0), "editor")
    await home(topic).setFaults({ failBefore: 1, failAfter: 0, late: 0 })
    for (let n = 1; n <= 3; n++) expect(await publish(editor, topic, n)).toMatchObject({ ok: true, seq: n })
    await settle(100)
    expect(news(socket)).toEqual([])
    // Everything the home knew in memory is gone; only its SQLite and its alarm remain.
    await evictDurableObject(home(topic))
    await home(topic).setFaults({ failBefore: 0, failAfter: 0, late: 0 })
    await eventually(async () => news(socket), (ns) => ns.length >= 3, 8000)
    await settle(200)
    expect(news(socket)).toEqual([1, 2, 3])
  })

  it("costs the home one log row and no alarm when nobody subscribes anywhere", async () => {
    const topic = newTopic("nobody")
    const editor = await open(edgeName("nobody", 0), "editor")
    expect(await publish(editor, topic, 1)).toEqual({ ok: true, seq: 1, matched: 0 })
    await runInDurableObject(home(topic), async (_instance, state) => {
      expect(await state.storage.getAlarm()).toBeNull()
      const rows = state.storage.sql.exec<{ topic: string; seq: number }>("SELECT topic, seq FROM _dws_span_log").toArray()
      expect(rows).toEqual([{ topic, seq: 1 }])
      expect(state.storage.sql.exec("SELECT * FROM _dws_span_edges").toArray()).toEqual([])
    })
  })

  it("fetches a gap from the home and drops what it already sent", async () => {
    const topic = newTopic("gap")
    const name = edgeName("gap", 0)
    const socket = await open(name)
    await join(socket, topic)
    const editor = await open(edgeName("gap-publisher", 0), "editor")
    for (let n = 1; n <= 3; n++) await publish(editor, topic, n)
    await eventually(async () => news(socket), (ns) => ns.length === 3)
    // Every call from the home fails now: 4, 5 and 6 are only in the home's log.
    captureConsole("warn")
    await home(topic).setFaults({ failBefore: 1, failAfter: 0, late: 0 })
    for (let n = 4; n <= 6; n++) await home(topic).publish(topic, "S_NEWS", { n }, undefined, undefined)
    await settle(100)
    expect(news(socket)).toEqual([1, 2, 3])
    const edge = env.SPAN_ROOM.get(env.SPAN_ROOM.idFromName(name))
    const entry = (seq: number) => ({ seq, type: "S_NEWS", payloadJson: JSON.stringify({ n: seq }), meta: undefined, origin: undefined })
    // A duplicate, then an entry after a hole: the edge fetches 4 and 5 from the home's log, then sends 6.
    const answer = await edge.deliverSpanned({ topics: [{ topic, entries: [entry(2), entry(6)] }] })
    expect(answer).toEqual({ topics: [{ topic, seq: 6 }] })
    await eventually(async () => news(socket), (ns) => ns.length >= 6)
    expect(news(socket)).toEqual([1, 2, 3, 4, 5, 6])
    // The home's own retries of 4..6 now arrive and are dropped.
    await home(topic).setFaults({ failBefore: 0, failAfter: 0, late: 0 })
    await settle(600)
    expect(news(socket)).toEqual([1, 2, 3, 4, 5, 6])
  })

  it("puts delivered entries in the edge's recovery log when recovery is on", async () => {
    const topic = newTopic("recovered")
    const socket = await open(edgeName("recovered", 0), "reader", env.SPAN_RECOVERING_ROOM)
    await socket.next((frame) => frame.type === "$session")
    await join(socket, topic)
    const editor = await open(edgeName("recovered-publisher", 0), "editor")
    await publish(editor, topic, 1)
    await publish(editor, topic, 2)
    await eventually(async () => news(socket), (ns) => ns.length === 2)
    const frames = socket.frames.filter((frame) => frame.type === "S_NEWS")
    expect(frames.map((frame) => frame.meta?.topic)).toEqual([topic, topic])
    const seqs = frames.map((frame) => frame.meta?.seq as number)
    expect(seqs[1]).toBe(seqs[0]! + 1)
  })

  it("lets a client of a recovering edge resume and get the spanning messages it missed, then live ones", async () => {
    const topic = newTopic("resume")
    const name = edgeName("resume", 0)
    const away = await open(name, "reader", env.SPAN_RECOVERING_ROOM)
    const session = (await away.next((frame) => frame.type === "$session")).payload
    const stays = await open(name, "reader", env.SPAN_RECOVERING_ROOM)
    await join(away, topic)
    await join(stays, topic)
    const editor = await open(edgeName("resume-publisher", 0), "editor")
    await publish(editor, topic, 1)
    const first = await away.next((frame) => frame.type === "S_NEWS")
    // Dropped, not ended: 1001 leaves the session resumable.
    away.close(1001, "network change")
    await away.closed()
    await publish(editor, topic, 2)
    await publish(editor, topic, 3)
    await eventually(async () => news(stays), (ns) => ns.length === 3)
    const back = await openOn(env.SPAN_RECOVERING_ROOM, name, {
      query: `?user=reader&dws_resume=${session.sessionId}.${session.token}.${first.meta!.seq}`
    })
    const resumed = await back.next((frame) => frame.type === "$resumed")
    expect(resumed.payload).toMatchObject({ recovered: true, replayed: 2 })
    expect(news(back)).toEqual([2, 3])
    await publish(editor, topic, 4)
    await eventually(async () => news(back), (ns) => ns.length === 3)
    expect(news(back)).toEqual([2, 3, 4])
  })

  it("applies authorizeSubscribe and authorizePublish at the edge", async () => {
    const staffTopic = "news:staff"
    const reader = await open(edgeName("acl", 0))
    const denied = await call(reader, "S_JOIN", { topic: staffTopic })
    expect(denied.payload).toEqual({ ok: false, error: "PERMISSION_DENIED" })
    const topic = newTopic("acl")
    await join(reader, topic)
    expect(await publish(reader, topic, 1)).toEqual({ ok: false, error: "PERMISSION_DENIED" })
    // Nothing reached the home.
    expect((await home(topic).status(topic)).seq).toBe(0)
    const staff = await open(edgeName("acl", 1), "staff")
    await join(staff, staffTopic)
    const editor = await open(edgeName("acl", 2), "editor")
    expect(await publish(editor, topic, 7)).toMatchObject({ ok: true, seq: 1 })
    await eventually(async () => news(reader), (ns) => ns.length === 1)
    expect(news(reader)).toEqual([7])
  })

  it("stops delivering to an edge once its last local subscriber unsubscribes or leaves", async () => {
    const topic = newTopic("leave")
    const [a, b] = [edgeName("leave", 0), edgeName("leave", 1)]
    const onA = [await open(a), await open(a)]
    const onB = await open(b)
    for (const socket of [...onA, onB]) await join(socket, topic)
    const edgeA = env.SPAN_ROOM.idFromName(a).toString()
    expect((await home(topic).status(topic)).edges).toContain(edgeA)
    // One of two leaving keeps the edge registered.
    await call(onA[0]!, "S_LEAVE", { topic })
    expect((await home(topic).status(topic)).edges).toContain(edgeA)
    // The last one closing unregisters it.
    onA[1]!.close(1000)
    await eventually(async () => (await home(topic).status(topic)).edges, (edges) => !edges.includes(edgeA))
    const callsBefore = await home(topic).callsTo(edgeA)
    const editor = await open(edgeName("leave-publisher", 0), "editor")
    expect(await publish(editor, topic, 1)).toMatchObject({ ok: true, matched: 1 })
    await eventually(async () => news(onB), (ns) => ns.length === 1)
    expect(await home(topic).callsTo(edgeA)).toBe(callsBefore)
    expect(news(onA[0]!)).toEqual([])
  })

  it("refuses public requests aimed at the home or at an edge's delivery path", async () => {
    const topic = newTopic("forged")
    const socket = await open(edgeName("forged", 0))
    await join(socket, topic)
    const forgedDelivery = JSON.stringify({ topics: [{ topic, entries: [{ seq: 1, type: "S_NEWS", payload: { n: 666 } }] }] })
    for (const path of [`/span-home/${encodeURIComponent(topic)}`, `/span-home/${encodeURIComponent(topic)}/publish`]) {
      const response = await SELF.fetch(`http://test.local${path}?delivery=${encodeURIComponent(forgedDelivery)}`)
      expect(response.status).toBe(404)
      await response.text()
    }
    for (const path of [`/span-room/${edgeName("forged", 0)}`, `/span-room/${edgeName("forged", 0)}/deliverSpanned`]) {
      const response = await SELF.fetch(`http://test.local${path}?delivery=${encodeURIComponent(forgedDelivery)}`)
      expect(response.status).toBe(426)
      await response.text()
    }
    expect((await home(topic).status(topic)).seq).toBe(0)
    await settle(200)
    expect(news(socket)).toEqual([])
  })

  it("stops delivering a topic that the edge does not count as spanning, after one call", async () => {
    const topic = `other:${fresh++}`
    const id = env.SPAN_ROOM.idFromName(edgeName("other", 0)).toString()
    const stale = home(topic)
    // A registration the edge's code no longer stands behind (its `topics` changed).
    await stale.register(topic, { id, binding: "SPAN_ROOM" })
    await stale.publish(topic, "S_NEWS", { n: 1 }, undefined, undefined)
    await eventually(() => stale.status(topic), (status) => status.edges.length === 0)
    await settle(200)
    expect(await stale.callsTo(id)).toBe(1)
  })

  it("refuses, at construction, a span.edge that is not the object's own binding", async () => {
    const { createDurableObjectHandler, createRouter } = await import("../src/index")
    const edge = env.SPAN_ROOM.get(env.SPAN_ROOM.idFromName(edgeName("binding", 0)))
    await runInDurableObject(edge, (_instance, state) => {
      const make = (binding: string) => () =>
        createDurableObjectHandler(createRouter(), {
          state,
          env,
          span: { topics: /^news/, home: (e) => e.FAULTY_HOME, edge: binding }
        })
      expect(make("NO_SUCH_BINDING")).toThrow(/no Durable Object binding/)
      expect(make("FAULTY_HOME")).toThrow(/own binding/)
      expect(make("SPAN_ROOM")).not.toThrow()
    })
  })

  it("ignores a delivery for a topic that does not span objects, even from an object", async () => {
    const name = edgeName("local", 0)
    const socket = await open(name)
    await join(socket, "chat")
    const edge = env.SPAN_ROOM.get(env.SPAN_ROOM.idFromName(name))
    const forged = { seq: 1, type: "S_NEWS", payloadJson: JSON.stringify({ n: 666 }), meta: undefined, origin: undefined }
    expect(await edge.deliverSpanned({ topics: [{ topic: "chat", entries: [forged] }] })).toEqual({ topics: [] })
    await settle(200)
    expect(news(socket)).toEqual([])
  })
})

describe("spanning topics: the edge's watermark costs no storage write", () => {
  /** Evicts an object; one that is not running (hibernated, not woken yet) has nothing to evict. */
  const evict = async (stub: DurableObjectStub) => {
    try {
      await evictDurableObject(stub)
    } catch (error) {
      if (!String(error).includes("not currently running")) throw error
    }
  }
  const edgeId = (namespace: DurableObjectNamespace, name: string) => namespace.idFromName(name).toString()
  /** Waits until the home has called the edge `more` more times (each call a redelivery). */
  const redelivered = async (topic: string, id: string, more: number) => {
    const before = await home(topic).callsTo(id)
    await eventually(() => home(topic).callsTo(id), (calls) => calls >= before + more, 8000)
  }
  const spanTables = async (namespace: DurableObjectNamespace, name: string) =>
    runInDurableObject(stubOf(namespace, name), (_instance, state) =>
      state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%span%'")
        .toArray().map((row) => row.name))

  for (const [leaving, how] of [[0, "close"], [1, "close"], [0, "unsubscribe"]] as const) {
    it(`drops redeliveries whose answer was lost across evictions, subscriber ${leaving} leaving (${how}) meanwhile`, async () => {
      captureConsole("warn")
      const label = `carry${leaving}${how}`
      const topic = newTopic(label)
      const name = edgeName(label, 0)
      const id = edgeId(env.SPAN_ROOM, name)
      const sockets = [await open(name), await open(name)]
      for (const socket of sockets) await join(socket, topic)
      const editor = await open(edgeName(`${label}-publisher`, 0), "editor")
      // Every call reaches the edge and its answer is lost: the home redelivers 1..3 again and again.
      await home(topic).setFaults({ failBefore: 0, failAfter: 1, late: 0 })
      for (let n = 1; n <= 3; n++) await publish(editor, topic, n)
      for (const socket of sockets) await eventually(async () => news(socket), (ns) => ns.length >= 3)
      await evict(stubOf(env.SPAN_ROOM, name))
      await redelivered(topic, id, 2)
      // One subscriber goes (whichever carried the watermark, the test runs both), then another eviction.
      const gone = sockets[leaving]!
      if (how === "close") {
        gone.close(1000)
        await gone.closed()
      } else {
        await call(gone, "S_LEAVE", { topic })
      }
      await evict(stubOf(env.SPAN_ROOM, name))
      await redelivered(topic, id, 2)
      await home(topic).setFaults({ failBefore: 0, failAfter: 0, late: 0 })
      await publish(editor, topic, 4)
      const stays = sockets[1 - leaving]!
      await eventually(async () => news(stays), (ns) => ns.length >= 4)
      await settle(300)
      expect(news(stays)).toEqual([1, 2, 3, 4])
      expect(news(gone)).toEqual([1, 2, 3])
      // No table, no row: the watermark lived in memory and in an attachment.
      expect(await spanTables(env.SPAN_ROOM, name)).toEqual([])
    })
  }

  for (const [namespace, label, expected] of [
    // Without recovery the restart took the sockets: a new subscriber starts at the home's current seq.
    [env.SPAN_ROOM, "restart", "from the home's seq"],
    // With recovery the edge's log holds each entry's home seq: the restarted edge goes on from there.
    [env.SPAN_RECOVERING_ROOM, "restart-logged", "from its log"]
  ] as const) {
    it(`after a restart, drops redeliveries of what it sent before (${expected})`, async () => {
      captureConsole("warn")
      const logged = namespace === env.SPAN_RECOVERING_ROOM
      const topic = newTopic(label)
      const name = edgeName(label, 0)
      const id = edgeId(namespace, name)
      const first = await open(name, "reader", namespace)
      await join(first, topic)
      const editor = await open(edgeName(`${label}-publisher`, 0), "editor")
      await home(topic).setFaults({ failBefore: 0, failAfter: 1, late: 0 })
      for (let n = 1; n <= 3; n++) await publish(editor, topic, n)
      await eventually(async () => news(first), (ns) => ns.length >= 3)
      // From now on no call reaches the edge: it restarts with every answer lost, and stays registered.
      await home(topic).setFaults({ failBefore: 1, failAfter: 0, late: 0 })
      await (stubOf(namespace, name) as unknown as { restart(): Promise<void> }).restart().catch(() => undefined)
      await first.closed(5000)
      const second = await open(name, "reader", namespace)
      await join(second, topic)
      expect((await home(topic).status(topic)).edges).toContain(id)
      await home(topic).setFaults({ failBefore: 0, failAfter: 0, late: 0 })
      await redelivered(topic, id, 1)
      await publish(editor, topic, 4)
      await eventually(async () => news(second), (ns) => ns.length >= 1)
      await settle(300)
      expect(news(second)).toEqual([4])
      const tables = await spanTables(namespace, name)
      expect(tables).toEqual([])
      if (logged) {
        const spans = await runInDurableObject(stubOf(namespace, name), (_instance, state) =>
          state.storage.sql.exec<{ span: number }>("SELECT span FROM _dws_log WHERE topic = ? ORDER BY seq", topic)
            .toArray().map((row) => row.span))
        expect(spans).toEqual([1, 2, 3, 4])
      }
    })
  }
})

describe("spanning topics: several messages per frame for clients that ask", () => {
  /** What a socket received, each `$batch` frame opened: [type of the frame it came in, n]. */
  const received = (socket: TestSocket) =>
    socket.frames.flatMap((frame): Array<[string, number]> =>
      frame.type === "$batch"
        ? (frame.payload as Array<Frame>).filter((inner) => inner.type === "S_NEWS").map((inner) => ["$batch", inner.payload.n])
        : frame.type === "S_NEWS"
        ? [["S_NEWS", frame.payload.n]]
        : []
    )

  /** Publishes while no call reaches the edges, then lets one call carry them all. */
  const publishHeldBack = async (topic: string, editor: TestSocket, ns: ReadonlyArray<[number, boolean]>) => {
    captureConsole("warn")
    await home(topic).setFaults({ failBefore: 1, failAfter: 0, late: 0 })
    for (const [n, excludeSelf] of ns) {
      expect((await call(editor, "S_PUBLISH", { topic, n, excludeSelf })).payload).toMatchObject({ ok: true })
    }
    await home(topic).setFaults({ failBefore: 0, failAfter: 0, late: 0 })
  }

  it("sends one $batch frame per delivery to a socket that asked, one frame per message to any other", async () => {
    const topic = newTopic("batch")
    const name = edgeName("batch", 0)
    const plain = await open(name)
    const batching = await openOn(env.SPAN_ROOM, name, { query: "?user=reader&dws_batch=1" })
    // Only exactly `dws_batch=1` asks.
    const other = await openOn(env.SPAN_ROOM, name, { query: "?user=reader&dws_batch=true" })
    for (const socket of [plain, batching, other]) await join(socket, topic)
    const editor = await open(edgeName("batch-publisher", 0), "editor")
    await publishHeldBack(topic, editor, [[1, false], [2, false], [3, false]])
    await eventually(async () => received(batching), (got) => got.length >= 3)
    await eventually(async () => received(plain), (got) => got.length >= 3)
    await settle(200)
    const batches = batching.frames.filter((frame) => frame.type === "$batch")
    expect(batches).toHaveLength(1)
    // Each element is exactly the frame the plain socket got alone.
    expect(batches[0]!.payload).toEqual(plain.frames.filter((frame) => frame.type === "S_NEWS"))
    expect(received(batching)).toEqual([["$batch", 1], ["$batch", 2], ["$batch", 3]])
    expect(received(plain)).toEqual([["S_NEWS", 1], ["S_NEWS", 2], ["S_NEWS", 3]])
    expect(received(other)).toEqual([["S_NEWS", 1], ["S_NEWS", 2], ["S_NEWS", 3]])
  })

  it("leaves out of a batch what its socket published with excludeSelf", async () => {
    const topic = newTopic("batch-self")
    const name = edgeName("batch-self", 0)
    const editor = await openOn(env.SPAN_ROOM, name, { query: "?user=editor&dws_batch=1" })
    const reader = await openOn(env.SPAN_ROOM, name, { query: "?user=reader&dws_batch=1" })
    await join(editor, topic)
    await join(reader, topic)
    await publishHeldBack(topic, editor, [[1, true], [2, false], [3, true], [4, false], [5, false]])
    await eventually(async () => received(reader), (got) => got.length >= 5)
    await eventually(async () => received(editor), (got) => got.length >= 3)
    await settle(200)
    expect(received(reader)).toEqual([1, 2, 3, 4, 5].map((n) => ["$batch", n]))
    expect(received(editor)).toEqual([2, 4, 5].map((n) => ["$batch", n]))
    // A delivery that leaves one message for a socket sends it as a plain frame.
    await publishHeldBack(topic, editor, [[6, true], [7, false]])
    await eventually(async () => received(editor), (got) => got.length >= 4)
    await settle(200)
    expect(received(editor).at(-1)).toEqual(["S_NEWS", 7])
  })

  const clients: Array<Client> = []
  afterEach(() => {
    for (const client of clients.splice(0)) client.close()
  })

  it("reaches the client's handlers in order, and a resume after the edge restarts sends none of them again", async () => {
    const topic = newTopic("batch-client")
    const name = edgeName("batch-client", 0)
    const sockets = workerdSockets(env.SPAN_RECOVERING_ROOM)
    const client = createClient({
      url: `ws://span.test/${name}?user=reader`,
      webSocket: sockets.factory,
      reconnect: { initialDelayMs: 10, maxDelayMs: 50 },
      heartbeat: false,
      recovery: true
    })
    clients.push(client)
    const seen: Array<number> = []
    client.on(SNews, (payload) => void seen.push(payload.n))
    const resumed: Array<unknown> = []
    client.onResumed((info) => void resumed.push(info))
    await client.connect()
    expect(await client.request(SJoin, { topic })).toEqual({ ok: true })
    const editor = await open(edgeName("batch-client-publisher", 0), "editor")
    await publishHeldBack(topic, editor, [[1, false], [2, false], [3, false]])
    await eventually(async () => seen, (ns) => ns.length >= 3)
    expect(sockets.received.filter((data) => data.startsWith('{"type":"$batch"'))).toHaveLength(1)
    // The edge restarts: the client resumes its session there, from the last seq of the batch.
    await (stubOf(env.SPAN_RECOVERING_ROOM, name) as unknown as { restart(): Promise<void> }).restart().catch(() => undefined)
    await eventually(async () => resumed, (r) => r.length === 1, 5000)
    await publishHeldBack(topic, editor, [[4, false], [5, false]])
    await eventually(async () => seen, (ns) => ns.length >= 5)
    await settle(300)
    expect(seen).toEqual([1, 2, 3, 4, 5])
  })

  it("never unpacks a $batch frame a client sends: its messages are not handled", async () => {
    const topic = newTopic("batch-forged")
    const reader = await openOn(env.SPAN_ROOM, edgeName("batch-forged", 0), { query: "?user=reader&dws_batch=1" })
    await join(reader, topic)
    const editor = await openOn(env.SPAN_ROOM, edgeName("batch-forged", 1), { query: "?user=editor&dws_batch=1" })
    editor.send({
      type: "$batch",
      payload: [{ type: "S_PUBLISH", meta: { correlationId: "forged" }, payload: { topic, n: 666 } }]
    })
    const refused = await editor.next((frame) => frame.type === "ERROR")
    expect(refused.payload).toMatchObject({ code: "UNIMPLEMENTED" })
    await settle(300)
    expect(editor.frames.filter((frame) => frame.meta?.correlationId === "forged")).toEqual([])
    expect((await home(topic).status(topic)).seq).toBe(0)
    expect(received(reader)).toEqual([])
  })
})
