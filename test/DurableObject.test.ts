import { env, evictDurableObject, runInDurableObject } from "cloudflare:test"
import { describe, expect, it } from "vitest"
import { captureConsole } from "./helpers/console"
import { connect, sleep, upgrade } from "./helpers/socket"
import type { TestSocket } from "./helpers/socket"
import type { Room } from "./fixtures/worker"
import { uuidv7 } from "../src/internal/server/uuid"

let n = 0
const unique = (prefix: string) => `${prefix}-${n++}-${Date.now()}`
const stubOf = (namespace: DurableObjectNamespace, name: string) => namespace.get(namespace.idFromName(name))
const roomRequest = (name: string, path: string, init?: RequestInit) =>
  stubOf(env.ROOM, name).fetch(`http://test.local/room/${name}/${path}`, init)

const joined = async (path: string) => {
  const client = await connect(path)
  const welcome = await client.next((f) => f.type === "WELCOME")
  return { client, clientId: welcome.payload.clientId as string }
}

const whoAmI = async (client: TestSocket) => {
  client.send({ type: "WHO_AM_I" })
  return (await client.next((f) => f.type === "DATA")).payload as { data: Record<string, unknown>; topics: Array<string> }
}

const uuidV7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
/** The Unix milliseconds in a UUID v7's first 48 bits. */
const timeOf = (id: string) => parseInt(id.slice(0, 8) + id.slice(9, 13), 16)

describe("upgrade path", () => {
  it("answers a plain request with 426 and Upgrade: websocket", async () => {
    const res = await stubOf(env.LOBBY, "plain").fetch("http://test.local/lobby/plain")
    expect(res.status).toBe(426)
    expect(res.headers.get("Upgrade")).toBe("websocket")
  })

  it("passes non-upgrade requests to onRequest when given", async () => {
    const res = await roomRequest(unique("req"), "connections")
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual([])
  })

  it("refuses an upgrade with a method other than GET", async () => {
    // workerd turns every upgrade it forwards into a GET, so the request is handed to the object directly.
    const name = unique("m")
    for (const method of ["POST", "PUT", "DELETE"]) {
      const res = await runInDurableObject(stubOf(env.ROOM, name), (room: Room) =>
        room.ws.fetch(new Request(`http://test.local/room/${name}`, { method, headers: { Upgrade: "websocket" } })))
      expect(res.status).toBe(405)
      expect(res.webSocket).toBeNull()
    }
  })

  it("refuses a missing or foreign Origin when allowedOrigins is set, accepts a listed one", async () => {
    const name = unique("origin")
    expect((await upgrade(`/guarded/${name}`)).status).toBe(403)
    expect((await upgrade(`/guarded/${name}`, { headers: { Origin: "https://evil.example" } })).status).toBe(403)
    const ok = await upgrade(`/guarded/${name}`, { headers: { Origin: "https://good.example" } })
    expect(ok.status).toBe(101)
    ok.webSocket!.accept()
    ok.webSocket!.close(1000)
  })

  it.each(["none", "throw", "reject"])("answers 401 when authenticate gives %s, logging the cause without leaking it", async (user) => {
    const warnings = captureConsole("warn")
    const res = await upgrade(`/room/${unique("auth")}?user=${user}`)
    expect(res.status).toBe(401)
    expect(res.webSocket).toBeNull()
    expect(await res.text()).not.toContain("secret")
    const cause = { none: [], throw: ["Error: secret auth failure"], reject: ["Error: secret auth rejection"] }[user]
    expect(warnings.lines()).toEqual(cause!.map((error) => `durable-ws: authenticate failed ${error}`))
  })

  it("answers 503 at maxConnections and reuses a freed slot", async () => {
    const name = unique("limit")
    const headers = { Origin: "https://good.example" }
    const first = await connect(`/guarded/${name}`, { headers })
    const second = await connect(`/guarded/${name}`, { headers })
    await first.next((f) => f.type === "WELCOME")
    await second.next((f) => f.type === "WELCOME")
    const refused = await upgrade(`/guarded/${name}`, { headers })
    expect(refused.status).toBe(503)
    first.close(1000, "done")
    await first.closed()
    let reopened: Response | undefined
    for (let attempt = 0; attempt < 20; attempt++) {
      reopened = await upgrade(`/guarded/${name}`, { headers })
      if (reopened.status === 101) break
      await sleep(25)
    }
    expect(reopened!.status).toBe(101)
  })

  it("counts connections from the runtime after eviction", async () => {
    const name = unique("limit-evict")
    const headers = { Origin: "https://good.example" }
    const a = await connect(`/guarded/${name}`, { headers })
    const b = await connect(`/guarded/${name}`, { headers })
    await a.next((f) => f.type === "WELCOME")
    await b.next((f) => f.type === "WELCOME")
    await evictDurableObject(stubOf(env.GUARDED, name))
    expect((await upgrade(`/guarded/${name}`, { headers })).status).toBe(503)
  })
})

describe("connection data", () => {
  it("gives each connection a distinct UUID v7 and its connectedAt", async () => {
    const name = unique("ids")
    const before = Date.now()
    const a = await joined(`/room/${name}`)
    const b = await joined(`/room/${name}`)
    expect(a.clientId).toMatch(uuidV7)
    expect(b.clientId).toMatch(uuidV7)
    expect(a.clientId).not.toBe(b.clientId)
    const data = (await whoAmI(a.client)).data
    expect(data["clientId"]).toBe(a.clientId)
    expect(data["connectedAt"]).toBeGreaterThanOrEqual(before)
    expect(timeOf(a.clientId)).toBe(data["connectedAt"])
    expect(data["userId"]).toBe("anonymous")
  })

  it("makes clientIds that differ within one millisecond and carry it in their first 48 bits", () => {
    const ms = Date.UTC(2026, 11, 7, 12, 0, 0, 123)
    const ids = Array.from({ length: 5000 }, () => uuidv7(ms))
    expect(new Set(ids).size).toBe(ids.length)
    for (const id of ids) {
      expect(id).toMatch(uuidV7)
      expect(timeOf(id)).toBe(ms)
    }
    expect(uuidv7(0).slice(0, 13)).toBe("00000000-0000")
    expect(uuidv7(2 ** 48 - 1).slice(0, 13)).toBe("ffffffff-ffff")
    expect(uuidv7(2 ** 32).slice(0, 13)).toBe("00010000-0000")
  })

  it("derives resourceId from ?room, then ?id, then the last path segment", async () => {
    const name = unique("res")
    const cases: Array<[string, string | undefined]> = [
      [`/room/${name}?room=lobby&id=x`, "lobby"],
      [`/room/${name}?id=doc-9`, "doc-9"],
      [`/room/${name}/`, name],
      [`/room/${name}/nested/leaf`, "leaf"]
    ]
    for (const [path, expected] of cases) {
      const { client } = await joined(path)
      expect((await whoAmI(client)).data["resourceId"]).toBe(expected)
      client.close(1000)
    }
  })

  it("never lets authenticate overwrite clientId, resourceId or connectedAt", async () => {
    const { client, clientId } = await joined(`/room/${unique("forge")}?user=forge`)
    const data = (await whoAmI(client)).data
    expect(data["clientId"]).toBe(clientId)
    expect(data["clientId"]).not.toBe("forged")
    expect(data["resourceId"]).not.toBe("forged")
    expect(data["connectedAt"]).not.toBe(1)
    expect(data["userId"]).toBe("forger")
  })

  it("merges assignData, keeps system fields, and refuses data past 16 KiB", async () => {
    const { client, clientId } = await joined(`/room/${unique("assign")}`)
    client.send({ type: "SET_DATA", payload: { patch: { role: "admin", clientId: "evil" } } })
    const after = (await client.next((f) => f.type === "DATA")).payload.data
    expect(after).toMatchObject({ role: "admin", clientId })
    client.send({ type: "SET_DATA", payload: { patch: { blob: "x".repeat(17 * 1024) } } })
    const error = await client.next((f) => f.type === "ERROR")
    expect(error.payload.code).toBe("RESOURCE_EXHAUSTED")
    const kept = (await whoAmI(client)).data
    expect(kept["blob"]).toBeUndefined()
    expect(kept["role"]).toBe("admin")
  })
})

describe("lifecycle", () => {
  it("runs onOpen before the first message is handled", async () => {
    const res = await upgrade(`/room/${unique("open")}`)
    const ws = res.webSocket!
    const seen: Array<string> = []
    ws.accept()
    ws.addEventListener("message", (e) => void seen.push(JSON.parse(e.data as string).type))
    ws.send(JSON.stringify({ type: "PING", payload: { text: "now" } }))
    for (let i = 0; i < 100 && seen.length < 2; i++) await sleep(10)
    expect(seen.slice(0, 2)).toEqual(["WELCOME", "PONG"])
  })

  it("gives onClose the client's code and reason, removes subscriptions and reciprocates the close", async () => {
    const name = unique("close")
    const { client, clientId } = await joined(`/room/${name}`)
    client.send({ type: "JOIN", payload: { room: "t" } })
    await client.next((f) => f.type === "DATA")
    client.close(4001, "bye now")
    expect(await client.closed()).toMatchObject({ code: 4001 })
    let closes: Record<string, { code: number; reason: string }> = {}
    for (let i = 0; i < 50 && closes[`closed:${clientId}`] === undefined; i++) {
      closes = await (await roomRequest(name, "closes")).json()
      if (closes[`closed:${clientId}`] === undefined) await sleep(20)
    }
    expect(closes[`closed:${clientId}`]).toMatchObject({ code: 4001, reason: "bye now" })
    const publish = await roomRequest(name, "publish", { method: "POST", body: JSON.stringify({ topic: "t", text: "x" }) })
    expect(await publish.json()).toEqual({ ok: true, matched: 0 })
  })

  it("answers a close frame without a code (1005) at once, so the client closes cleanly", async () => {
    const name = unique("bare-close")
    const { client, clientId } = await joined(`/room/${name}`)
    // A browser's or Node's bare `ws.close()` sends a close frame with no status code.
    client.close()
    expect(await client.closed(1500)).toMatchObject({ code: 1005 })
    let closes: Record<string, { code: number }> = {}
    for (let i = 0; i < 50 && closes[`closed:${clientId}`] === undefined; i++) {
      closes = await (await roomRequest(name, "closes")).json()
      if (closes[`closed:${clientId}`] === undefined) await sleep(20)
    }
    expect(closes[`closed:${clientId}`]).toMatchObject({ code: 1005 })
  })

  it("closes from the server with ctx.close(code, reason)", async () => {
    const { client } = await joined(`/room/${unique("server-close")}`)
    client.send({ type: "CLOSE_ME", payload: { code: 4002, reason: "kicked" } })
    expect(await client.closed()).toEqual({ code: 4002, reason: "kicked" })
  })

  it("answers the heartbeat without running the router, even while hibernated", async () => {
    const name = unique("heartbeat")
    const { client } = await joined(`/room/${name}`)
    await evictDurableObject(stubOf(env.ROOM, name))
    client.sendRaw("{\"type\":\"__heartbeat\"}")
    expect(await client.next()).toEqual({ type: "__heartbeat_ack" })
    expect(await (await roomRequest(name, "delivered")).json()).toEqual({ delivered: 0 })
  })
})

describe("hibernation", () => {
  it("keeps data, subscriptions and clientId across eviction; publish reaches everyone exactly once", async () => {
    const name = unique("evict")
    const a = await joined(`/room/${name}?user=ada`)
    const b = await joined(`/room/${name}?user=bob`)
    for (const { client } of [a, b]) {
      client.send({ type: "JOIN", payload: { room: "general" } })
      await client.next((f) => f.type === "DATA")
    }
    a.client.send({ type: "SET_DATA", payload: { patch: { mood: "happy" } } })
    await a.client.next((f) => f.type === "DATA")

    await evictDurableObject(stubOf(env.ROOM, name))

    const after = await whoAmI(a.client)
    expect(after.data).toMatchObject({ clientId: a.clientId, userId: "ada", mood: "happy" })
    expect(after.topics).toEqual(["general"])
    expect((await whoAmI(b.client)).data["clientId"]).toBe(b.clientId)

    b.client.send({ type: "SAY", payload: { room: "general", text: "after wake" } })
    expect((await b.client.next((f) => f.type === "PUBLISHED")).payload).toEqual({ ok: true, matched: 2 })
    for (const { client } of [a, b]) {
      const said = await client.next((f) => f.type === "SAID")
      expect(said.payload).toEqual({ from: b.clientId, text: "after wake" })
    }
    const extra = [...await a.client.drain(), ...await b.client.drain()].filter((f) => f.type === "SAID")
    expect(extra).toEqual([])

    b.client.send({ type: "COUNT", meta: { correlationId: "c" } })
    expect((await b.client.next((f) => f.type === "COUNTED")).payload.connections).toBe(2)
  })

  it("reads a woken connection's topics from its attachment: joins, leaves and publishes after the wake hold", async () => {
    const name = unique("evict-topics")
    const a = await joined(`/room/${name}?user=ada`)
    const b = await joined(`/room/${name}?user=bob`)
    for (const { client } of [a, b]) {
      for (const room of ["one", "two"]) {
        client.send({ type: "JOIN", payload: { room } })
        await client.next((f) => f.type === "DATA")
      }
    }
    await evictDurableObject(stubOf(env.ROOM, name))

    // The first publish after the wake rebuilds the index from the attachments.
    b.client.send({ type: "SAY", payload: { room: "one", text: "first" } })
    expect((await b.client.next((f) => f.type === "PUBLISHED")).payload).toEqual({ ok: true, matched: 2 })
    expect((await a.client.next((f) => f.type === "SAID")).payload.text).toBe("first")

    a.client.send({ type: "LEAVE", payload: { room: "one" } })
    expect((await a.client.next((f) => f.type === "DATA")).payload.topics).toEqual(["two"])
    b.client.send({ type: "JOIN", payload: { room: "two" } })
    expect((await b.client.next((f) => f.type === "DATA")).payload.topics).toEqual(["one", "two"])
    a.client.send({ type: "JOIN", payload: { room: "three" } })
    expect((await a.client.next((f) => f.type === "DATA")).payload.topics).toEqual(["two", "three"])

    b.client.send({ type: "SAY", payload: { room: "one", text: "second" } })
    expect((await b.client.next((f) => f.type === "PUBLISHED")).payload).toEqual({ ok: true, matched: 1 })
    expect((await a.client.drain()).filter((f) => f.type === "SAID")).toEqual([])

    // What the attachments hold after those changes is what the next wake reads.
    await evictDurableObject(stubOf(env.ROOM, name))
    b.client.send({ type: "SAY", payload: { room: "two", text: "third" } })
    expect((await b.client.next((f) => f.type === "PUBLISHED")).payload).toEqual({ ok: true, matched: 2 })
    expect((await a.client.next((f) => f.type === "SAID")).payload.text).toBe("third")
    b.client.send({ type: "SAY", payload: { room: "three", text: "fourth" } })
    expect((await b.client.next((f) => f.type === "PUBLISHED")).payload).toEqual({ ok: true, matched: 1 })
    expect((await whoAmI(a.client)).topics).toEqual(["two", "three"])
    expect((await whoAmI(b.client)).topics).toEqual(["one", "two"])
  })

  it("loses and duplicates nothing when eviction lands between two bursts", async () => {
    const name = unique("burst")
    const { client } = await joined(`/room/${name}`)
    for (let i = 0; i < 50; i++) client.send({ type: "ORDER", payload: { n: i } })
    const first: Array<number> = []
    for (let i = 0; i < 50; i++) first.push((await client.next((f) => f.type === "ORDERED")).payload.n)
    await evictDurableObject(stubOf(env.ROOM, name))
    for (let i = 50; i < 100; i++) client.send({ type: "ORDER", payload: { n: i } })
    const second: Array<number> = []
    for (let i = 50; i < 100; i++) second.push((await client.next((f) => f.type === "ORDERED")).payload.n)
    expect([...first, ...second]).toEqual(Array.from({ length: 100 }, (_, i) => i))
    expect((await client.drain()).filter((f) => f.type === "ORDERED")).toEqual([])
  })

  it("keeps storage written through the Storage service and through ctx.storage", async () => {
    const name = unique("storage")
    const { client } = await joined(`/room/${name}`)
    client.send({ type: "STORE_PUT", payload: { key: "a", value: "via effect", via: "effect" } })
    client.send({ type: "STORE_PUT", payload: { key: "b", value: "via ctx", via: "ctx" } })
    client.send({ type: "STORE_GET", meta: { correlationId: "0" }, payload: { key: "b", via: "effect" } })
    await client.next((f) => f.type === "STORED")
    await evictDurableObject(stubOf(env.ROOM, name))
    client.send({ type: "STORE_GET", meta: { correlationId: "1" }, payload: { key: "a", via: "ctx" } })
    client.send({ type: "STORE_GET", meta: { correlationId: "2" }, payload: { key: "b", via: "effect" } })
    expect((await client.next((f) => f.meta?.["correlationId"] === "1")).payload).toEqual({ value: "via effect" })
    expect((await client.next((f) => f.meta?.["correlationId"] === "2")).payload).toEqual({ value: "via ctx" })
  })
})

describe("services and scope", () => {
  it("gives Effect handlers a Layer-provided service, built per instance", async () => {
    const name = unique("layer")
    const { client } = await joined(`/room/${name}`)
    const count = async (id: string) => {
      client.send({ type: "COUNT", meta: { correlationId: id } })
      return (await client.next((f) => f.meta?.["correlationId"] === id)).payload.n
    }
    expect([await count("1"), await count("2")]).toEqual([1, 2])
    const other = await joined(`/room/${unique("layer-other")}`)
    other.client.send({ type: "COUNT", meta: { correlationId: "x" } })
    expect((await other.client.next((f) => f.type === "COUNTED")).payload.n).toBe(1)
  })

  it("scopes publish to the instance: ctx.publish, the PubSub service and router.publish", async () => {
    const here = unique("scope-a")
    const there = unique("scope-b")
    const a = await joined(`/room/${here}`)
    const b = await joined(`/room/${here}`)
    const elsewhere = await joined(`/room/${there}`)
    for (const { client } of [a, b, elsewhere]) {
      client.send({ type: "JOIN", payload: { room: "shared-topic" } })
      await client.next((f) => f.type === "DATA")
    }
    for (const type of ["SAY", "EFFECT_SAY", "ROUTER_SAY"]) {
      a.client.send({ type, payload: { room: "shared-topic", text: type } })
      expect((await a.client.next((f) => f.type === "PUBLISHED")).payload).toEqual({ ok: true, matched: 2 })
      expect((await b.client.next((f) => f.type === "SAID")).payload.text).toBe(type)
      expect((await a.client.next((f) => f.type === "SAID")).payload.text).toBe(type)
    }
    expect((await elsewhere.client.drain()).filter((f) => f.type === "SAID")).toEqual([])
  })

  it("excludes the sender with excludeSelf", async () => {
    const name = unique("exclude")
    const a = await joined(`/room/${name}`)
    const b = await joined(`/room/${name}`)
    for (const { client } of [a, b]) {
      client.send({ type: "JOIN", payload: { room: "t" } })
      await client.next((f) => f.type === "DATA")
    }
    a.client.send({ type: "SAY", payload: { room: "t", text: "hi", excludeSelf: true } })
    expect((await a.client.next((f) => f.type === "PUBLISHED")).payload).toEqual({ ok: true, matched: 1 })
    expect((await b.client.next((f) => f.type === "SAID")).payload.text).toBe("hi")
    expect((await a.client.drain()).filter((f) => f.type === "SAID")).toEqual([])
  })
})

describe("the chat story, on both forms and in standard mode", () => {
  it.each(["room", "lobby", "memory"])("two clients in one %s see each other's messages", async (kind) => {
    const name = unique(`chat-${kind}`)
    const a = await joined(`/${kind}/${name}`)
    const b = await joined(`/${kind}/${name}`)
    const outsider = await joined(`/${kind}/${unique("outsider")}`)
    for (const { client } of [a, b, outsider]) {
      client.send({ type: "JOIN", payload: { room: "chat" } })
      await client.next((f) => f.type === "DATA")
    }
    a.client.send({ type: "SAY", payload: { room: "chat", text: "hello from a", excludeSelf: true } })
    expect((await b.client.next((f) => f.type === "SAID")).payload).toEqual({ from: a.clientId, text: "hello from a" })
    b.client.send({ type: "SAY", payload: { room: "chat", text: "hello from b", excludeSelf: true } })
    expect((await a.client.next((f) => f.type === "SAID")).payload).toEqual({ from: b.clientId, text: "hello from b" })
    expect((await outsider.client.drain()).filter((f) => f.type === "SAID")).toEqual([])

    a.client.send({ type: "GET_USER", meta: { correlationId: "r" }, payload: { id: "1" } })
    expect((await a.client.next((f) => f.type === "USER")).meta?.["correlationId"]).toBe("r")
    a.client.send({ type: "THROW" })
    expect((await a.client.next((f) => f.type === "ERROR")).payload.code).toBe("INTERNAL")
    a.client.send({ type: "NOPE" })
    expect((await a.client.next((f) => f.type === "ERROR")).payload.code).toBe("UNIMPLEMENTED")
    a.client.send({ type: "COUNT", meta: { correlationId: "c" } })
    expect((await a.client.next((f) => f.type === "COUNTED")).payload.connections).toBe(2)
    b.client.send({ type: "CLOSE_ME", payload: { code: 4003, reason: "bye" } })
    expect(await b.client.closed()).toEqual({ code: 4003, reason: "bye" })
  })
})
