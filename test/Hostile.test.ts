import { env, evictDurableObject, runInDurableObject } from "cloudflare:test"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Gate } from "./fixtures/hardening"
import { captureConsole } from "./helpers/console"
import { bytes, eventually, openOn, stubOf, upgradeOn } from "./helpers/durable"
import type { Frame, TestSocket } from "./helpers/socket"
import { wrap } from "./helpers/socket"

/**
 * Hostile frames and upgrade requests. Every frame is sent by a fresh
 * attacker connection into a room where a bystander is connected and
 * subscribed; each must get exactly the SPEC §7 answer, the attacker must
 * still be served afterwards, and the bystander must never see a thing.
 */

type Namespace = "hardened" | "crowd"

interface FrameCase {
  readonly name: string
  readonly frame: string | ArrayBuffer
  /** The frame the attacker must get back (matched with toMatchObject). */
  readonly answer: Partial<Frame> & { readonly payload?: Record<string, unknown> }
  /** Extra checks on the answer. */
  readonly check?: (answer: Frame) => void
  /** When a handler failed: the tag of the error `onError` must have seen (the fixture reports it). */
  readonly reported?: string
  /** The object to attack: `hardened` has 4 KiB frames, `crowd` the 1 MiB default. */
  readonly on?: Namespace
}

const room = "hostile"
const ns = (on: Namespace) => on === "hardened" ? env.HARDENED : env.CROWD
const nested = (depth: number, open: string, inner: string, close: string) =>
  open.repeat(depth) + inner + close.repeat(depth)
const error = (code: string) => ({ type: "ERROR", payload: { code } })
const rpcError = (code: string, correlationId: string) => ({ type: "RPC_ERROR", meta: { correlationId }, payload: { code } })
const pong = (reply: string) => ({ type: "H_PONG", payload: { reply } })
const encoder = new TextEncoder()
const utf8 = (text: string) => encoder.encode(text).buffer as ArrayBuffer
/** A frame of exactly `size` UTF-8 bytes whose text is made of `unit`. */
const frameOfBytes = (size: number, unit: string) => {
  const shell = "{\"type\":\"H_PING\",\"payload\":{\"text\":\"\"}}"
  const room = size - encoder.encode(shell).byteLength
  const count = Math.floor(room / encoder.encode(unit).byteLength)
  const text = unit.repeat(count) + "x".repeat(room - count * encoder.encode(unit).byteLength)
  return JSON.stringify({ type: "H_PING", payload: { text } })
}

const cases: ReadonlyArray<FrameCase> = [
  // Not JSON, or not the right JSON.
  { name: "truncated JSON (cut inside the payload)", frame: "{\"type\":\"H_PING\",\"payload\":{\"text\":\"hi\"", answer: error("INVALID_ARGUMENT") },
  { name: "truncated JSON (cut inside the type)", frame: "{\"type\":\"H_PI", answer: error("INVALID_ARGUMENT") },
  { name: "an empty text frame", frame: "", answer: error("INVALID_ARGUMENT") },
  { name: "an empty binary frame", frame: new ArrayBuffer(0), answer: error("INVALID_ARGUMENT") },
  { name: "whitespace only", frame: " \n\t ", answer: error("INVALID_ARGUMENT") },
  { name: "a bare number", frame: "42", answer: error("INVALID_ARGUMENT") },
  { name: "a bare boolean", frame: "true", answer: error("INVALID_ARGUMENT") },
  { name: "a number where the type string belongs", frame: "{\"type\":7,\"payload\":{}}", answer: error("INVALID_ARGUMENT") },
  { name: "an object where the type string belongs", frame: "{\"type\":{\"toString\":\"H_PING\"}}", answer: error("INVALID_ARGUMENT") },
  { name: "a null type", frame: "{\"type\":null}", answer: error("INVALID_ARGUMENT") },
  {
    name: "a number where a payload string belongs",
    frame: "{\"type\":\"H_PING\",\"payload\":{\"text\":42}}",
    answer: error("INVALID_ARGUMENT"),
    check: (a) => expect(a.payload.details.issues).toEqual([{ path: ["text"], message: expect.any(String) }])
  },
  { name: "an infinite number where a string belongs", frame: "{\"type\":\"H_PING\",\"payload\":{\"text\":1e999}}", answer: error("INVALID_ARGUMENT") },
  { name: "a string where the payload object belongs", frame: "{\"type\":\"H_PING\",\"payload\":\"hi\"}", answer: error("INVALID_ARGUMENT") },
  { name: "a payload on a message that takes none", frame: "{\"type\":\"H_BARE\",\"payload\":{\"x\":1}}", answer: error("INVALID_ARGUMENT") },
  {
    name: "a duplicated type key (the last one wins)",
    frame: "{\"type\":\"H_PING\",\"type\":\"NOPE\",\"payload\":{\"text\":\"x\"}}",
    answer: error("UNIMPLEMENTED")
  },

  // Depth: the parser, the schema and the error formatter must all cope.
  {
    name: "400,000 nested arrays where a string belongs",
    on: "crowd",
    frame: `{"type":"H_PING","payload":{"text":${nested(400_000, "[", "", "]")}}}`,
    answer: error("INVALID_ARGUMENT"),
    check: (a) => expect(JSON.stringify(a).length).toBeLessThan(1000)
  },
  {
    name: "100,000 nested objects in an unknown top-level field",
    on: "crowd",
    frame: `{"type":"H_PING","payload":{"text":"deep"},"x":${nested(100_000, "{\"a\":", "1", "}")}}`,
    answer: pong("Got: deep")
  },
  {
    name: "400,000 nested arrays inside meta",
    on: "crowd",
    frame: `{"type":"H_PING","meta":{"m":${nested(400_000, "[", "", "]")}},"payload":{"text":"deep meta"}}`,
    answer: pong("Got: deep meta")
  },
  {
    name: "deeply nested connection data (larger than the 16 KiB attachment)",
    on: "crowd",
    frame: `{"type":"H_SET_DATA","payload":{"patch":{"x":${nested(200_000, "[", "", "]")}}}}`,
    answer: error("RESOURCE_EXHAUSTED"),
    reported: "PayloadTooLarge"
  },
  {
    // The same beside a string made by concatenation: V8 then serializes on its recursive path, out of stack.
    name: "deeply nested connection data beside a concatenated string (too deep to serialize)",
    on: "crowd",
    frame: `{"type":"H_SET_DATA_JOINED","payload":{"patch":{"x":${nested(200_000, "[", "", "]")}}}}`,
    answer: error("RESOURCE_EXHAUSTED"),
    reported: "PayloadTooLarge"
  },

  // Size: measured in bytes, before anything is parsed.
  { name: "a frame of exactly maxPayloadBytes", frame: frameOfBytes(4096, "x"), answer: { type: "H_PONG" } },
  { name: "a frame one byte over maxPayloadBytes", frame: frameOfBytes(4097, "x"), answer: error("RESOURCE_EXHAUSTED") },
  { name: "multi-byte text filling maxPayloadBytes exactly", frame: frameOfBytes(4096, "€"), answer: { type: "H_PONG" } },
  { name: "multi-byte text one byte over (fewer UTF-16 units than bytes)", frame: frameOfBytes(4097, "€"), answer: error("RESOURCE_EXHAUSTED") },
  { name: "a 1 MB string in a 4 KiB room", frame: JSON.stringify({ type: "H_PING", payload: { text: "a".repeat(1_000_000) } }), answer: error("RESOURCE_EXHAUSTED") },
  { name: "a binary frame over the limit", frame: utf8(frameOfBytes(5000, "x")), answer: error("RESOURCE_EXHAUSTED") },
  {
    name: "a 900 KB type name",
    on: "crowd",
    frame: JSON.stringify({ type: "Z".repeat(900_000) }),
    answer: error("UNIMPLEMENTED"),
    // The unknown type is named in the message, but never echoed back whole.
    check: (a) => expect(JSON.stringify(a).length).toBeLessThan(1000)
  },

  // Prototype keys are plain data.
  {
    name: "__proto__ in the payload",
    frame: "{\"type\":\"H_PING\",\"payload\":{\"text\":\"p\",\"__proto__\":{\"polluted\":true}}}",
    answer: pong("Got: p")
  },
  {
    name: "__proto__ and constructor in meta",
    frame: "{\"type\":\"H_META\",\"meta\":{\"__proto__\":{\"correlationId\":\"hidden\",\"polluted\":true},\"constructor\":{\"prototype\":{\"isAdmin\":true}}}}",
    answer: { type: "H_META_SEEN", payload: { ownKeys: ["__proto__", "constructor"], correlationId: null, prototypesIntact: true } }
  },
  {
    name: "__proto__ and constructor.prototype in assignData",
    frame: "{\"type\":\"H_SET_DATA\",\"payload\":{\"patch\":{\"__proto__\":{\"isAdmin\":true},\"constructor\":{\"prototype\":{\"polluted\":true}}}}}",
    answer: { type: "H_DATA", payload: { dataPrototypeIsObject: true, prototypesIntact: true } },
    check: (a) => {
      expect(a.payload.ownKeys).toEqual(expect.arrayContaining(["__proto__", "constructor"]))
      expect(a.payload.data.isAdmin).toBeUndefined()
    }
  },
  {
    name: "a correlationId hidden behind __proto__ (an RPC without one)",
    frame: "{\"type\":\"H_ECHO\",\"meta\":{\"__proto__\":{\"correlationId\":\"c\"}},\"payload\":{\"text\":\"x\"}}",
    answer: { type: "ERROR", meta: {}, payload: { code: "INVALID_ARGUMENT" } }
  },
  { name: "__proto__ as the type", frame: "{\"type\":\"__proto__\"}", answer: error("UNIMPLEMENTED") },
  { name: "constructor as the type", frame: "{\"type\":\"constructor\"}", answer: error("UNIMPLEMENTED") },
  { name: "hasOwnProperty as the type", frame: "{\"type\":\"hasOwnProperty\"}", answer: error("UNIMPLEMENTED") },
  {
    name: "assignData trying to overwrite clientId and connectedAt",
    frame: "{\"type\":\"H_SET_DATA\",\"payload\":{\"patch\":{\"clientId\":\"forged\",\"connectedAt\":0,\"resourceId\":\"elsewhere\"}}}",
    answer: { type: "H_DATA" },
    check: (a) => {
      expect(a.payload.data.clientId).not.toBe("forged")
      expect(a.payload.data.connectedAt).toBeGreaterThan(0)
      expect(a.payload.data.resourceId).toBe(room)
    }
  },

  // Binary frames must be valid UTF-8.
  { name: "a lone UTF-8 continuation byte", frame: bytes(0x7b, 0x80, 0x7d), answer: error("INVALID_ARGUMENT") },
  { name: "an overlong UTF-8 encoding of '/'", frame: bytes(0x7b, 0xc0, 0xaf, 0x7d), answer: error("INVALID_ARGUMENT") },
  { name: "a UTF-16 surrogate encoded in UTF-8", frame: bytes(0x7b, 0xed, 0xa0, 0x80, 0x7d), answer: error("INVALID_ARGUMENT") },
  {
    name: "a multi-byte sequence cut at the end",
    frame: new Uint8Array([...new Uint8Array(utf8("{\"type\":\"H_PING\",\"payload\":{\"text\":\"")), 0xe2, 0x82]).buffer,
    answer: error("INVALID_ARGUMENT")
  },
  { name: "a valid binary frame (UTF-8 JSON)", frame: utf8("{\"type\":\"H_PING\",\"payload\":{\"text\":\"b€\"}}"), answer: pong("Got: b€") },

  // Reserved and unknown types, spoofed correlationIds.
  { name: "a $-reserved type", frame: "{\"type\":\"$system\"}", answer: error("UNIMPLEMENTED") },
  { name: "the heartbeat answer sent as a request", frame: "{\"type\":\"__heartbeat_ack\"}", answer: error("UNIMPLEMENTED") },
  { name: "a __-reserved type with a correlationId", frame: "{\"type\":\"__admin\",\"meta\":{\"correlationId\":\"r1\"}}", answer: rpcError("UNIMPLEMENTED", "r1") },
  {
    name: "a server response type sent with a spoofed correlationId",
    frame: "{\"type\":\"H_ECHOED\",\"meta\":{\"correlationId\":\"victim-1\"},\"payload\":{\"text\":\"x\"}}",
    answer: rpcError("UNIMPLEMENTED", "victim-1")
  },
  { name: "a numeric correlationId", frame: "{\"type\":\"H_ECHO\",\"meta\":{\"correlationId\":5},\"payload\":{\"text\":\"x\"}}", answer: { type: "ERROR", meta: {}, payload: { code: "INVALID_ARGUMENT" } } },
  { name: "an object correlationId", frame: "{\"type\":\"H_ECHO\",\"meta\":{\"correlationId\":{}},\"payload\":{\"text\":\"x\"}}", answer: { type: "ERROR", meta: {}, payload: { code: "INVALID_ARGUMENT" } } },
  { name: "an RPC request without a correlationId", frame: "{\"type\":\"H_ECHO\",\"payload\":{\"text\":\"x\"}}", answer: { type: "ERROR", meta: {}, payload: { code: "INVALID_ARGUMENT" } } },
  {
    name: "an RPC request whose payload fails the schema",
    frame: "{\"type\":\"H_ECHO\",\"meta\":{\"correlationId\":\"r2\"},\"payload\":{\"text\":[]}}",
    answer: rpcError("INVALID_ARGUMENT", "r2")
  },

  // Topics.
  { name: "an empty topic", frame: "{\"type\":\"H_JOIN\",\"payload\":{\"topic\":\"\"}}", answer: error("INVALID_ARGUMENT"), reported: "TopicError" },
  { name: "a 257-character topic", frame: JSON.stringify({ type: "H_JOIN", payload: { topic: "t".repeat(257) } }), answer: error("INVALID_ARGUMENT"), reported: "TopicError" },
  { name: "a 257-character topic through the PubSub service", frame: JSON.stringify({ type: "H_JOIN", payload: { topic: "t".repeat(257), via: "effect" } }), answer: error("INVALID_ARGUMENT"), reported: "TopicError" },
  { name: "a number where the topic belongs", frame: "{\"type\":\"H_JOIN\",\"payload\":{\"topic\":5}}", answer: error("INVALID_ARGUMENT") },
  { name: "a 256-character topic (the longest allowed)", frame: JSON.stringify({ type: "H_JOIN", payload: { topic: "t".repeat(256) } }), answer: { type: "H_JOINED", payload: { count: 1 } } },
  { name: "publishing to a 257-character topic", frame: JSON.stringify({ type: "H_SAY", payload: { topic: "t".repeat(257), text: "x" } }), answer: { type: "H_PUBLISHED", payload: { ok: false, error: "INVALID_ARGUMENT" } } }
]

const bystanders = new Map<Namespace, TestSocket>()

beforeAll(async () => {
  for (const on of ["hardened", "crowd"] as const) {
    const bystander = await openOn(ns(on), room)
    bystander.send({ type: "H_JOIN", payload: { topic: "lobby" } })
    expect((await bystander.next()).type).toBe("H_JOINED")
    bystanders.set(on, bystander)
  }
})

afterAll(() => {
  for (const bystander of bystanders.values()) bystander.close(1000, "done")
})

describe("hostile frames", () => {
  it("has at least 30 distinct cases", () => {
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length)
    expect(cases.length).toBeGreaterThanOrEqual(30)
  })

  it.each(cases)("$name", async ({ frame, answer, check, reported, on = "hardened" }) => {
    const attacker = await openOn(ns(on), room)
    attacker.sendRaw(frame)
    const got = await attacker.next()
    expect(got).toMatchObject(answer)
    check?.(got)
    if (got.type === "ERROR" || got.type === "RPC_ERROR") {
      // Nothing about the server leaks: a code, a short message, at most schema issues.
      expect(Object.keys(got.payload).every((k) => ["code", "message", "details", "retryable", "retryAfterMs"].includes(k)))
        .toBe(true)
      expect(JSON.stringify(got.payload)).not.toMatch(/at .*\.(ts|js):\d+/)
    }
    if (reported !== undefined) {
      expect(await attacker.next()).toMatchObject({ type: "H_ON_ERROR", payload: { tag: reported } })
    }
    // The connection stays usable, and that answer was the only one.
    attacker.send({ type: "H_PING", payload: { text: "still here" } })
    expect(await attacker.next()).toMatchObject(pong("Got: still here"))
    attacker.close(1000, "done")
    // Nothing reached anyone else in the room.
    expect(bystanders.get(on)!.frames).toEqual([])
  })

  it("leaves the bystanders served and untouched after every case", async () => {
    for (const [on, bystander] of bystanders) {
      bystander.send({ type: "H_PING", payload: { text: on } })
      expect(await bystander.next()).toMatchObject(pong(`Got: ${on}`))
      bystander.send({ type: "H_WHO_AM_I" })
      const data = await bystander.next()
      expect(data.payload).toMatchObject({ topics: ["lobby"], prototypesIntact: true })
      expect(bystander.frames).toEqual([])
    }
  })
})

describe("hostile subscriptions", () => {
  it("answers the 101st topic with RESOURCE_EXHAUSTED and keeps the first 100", async () => {
    const client = await openOn(env.HARDENED, "topics-101")
    for (let i = 0; i < 100; i++) client.send({ type: "H_JOIN", payload: { topic: `t${i}` } })
    for (let i = 0; i < 100; i++) expect(await client.next()).toMatchObject({ type: "H_JOINED", payload: { count: i + 1 } })
    client.send({ type: "H_JOIN", payload: { topic: "t100" } })
    expect(await client.next()).toMatchObject(error("RESOURCE_EXHAUSTED"))
    expect(await client.next()).toMatchObject({ type: "H_ON_ERROR", payload: { tag: "TopicError", code: "RESOURCE_EXHAUSTED" } })
    client.send({ type: "H_JOIN", payload: { topic: "t100", via: "effect" } })
    expect(await client.next()).toMatchObject(error("RESOURCE_EXHAUSTED"))
    await client.next((f) => f.type === "H_ON_ERROR")
    // Re-joining a topic it already has is not a new subscription.
    client.send({ type: "H_JOIN", payload: { topic: "t5" } })
    expect(await client.next()).toMatchObject({ type: "H_JOINED", payload: { count: 100 } })
    client.send({ type: "H_WHO_AM_I" })
    const data = await client.next()
    expect(data.payload.topics).toHaveLength(100)
    expect(data.payload.topics).not.toContain("t100")
  })

  it("refuses long topics with RESOURCE_EXHAUSTED once the 16 KiB attachment is full", async () => {
    const client = await openOn(env.HARDENED, "topics-bytes")
    let joined = 0
    let refused: Frame | undefined
    for (let i = 0; i < 100 && refused === undefined; i++) {
      client.send({ type: "H_JOIN", payload: { topic: `${i}`.padStart(256, "x") } })
      const answer = await client.next((f) => f.type !== "H_ON_ERROR")
      if (answer.type === "H_JOINED") joined++
      else refused = answer
    }
    // 256-character topics fill 16 KiB after about 60: well before the 100-topic cap.
    expect(joined).toBeGreaterThan(50)
    expect(joined).toBeLessThan(100)
    expect(refused).toMatchObject(error("RESOURCE_EXHAUSTED"))
    client.send({ type: "H_WHO_AM_I" })
    expect((await client.next((f) => f.type === "H_DATA")).payload.topics).toHaveLength(joined)
  })
})

describe("spoofed correlationIds", () => {
  it("routes each reply only to the connection that asked, even with the same correlationId", async () => {
    const alice = await openOn(env.HARDENED, "correlation")
    const mallory = await openOn(env.HARDENED, "correlation")
    mallory.send({ type: "H_ECHO", meta: { correlationId: "shared" }, payload: { text: "mallory" } })
    alice.send({ type: "H_ECHO", meta: { correlationId: "shared" }, payload: { text: "alice" } })
    expect(await alice.next()).toMatchObject({ type: "H_ECHOED", meta: { correlationId: "shared" }, payload: { text: "alice" } })
    expect(await mallory.next()).toMatchObject({ type: "H_ECHOED", meta: { correlationId: "shared" }, payload: { text: "mallory" } })
    // A forged answer to alice's id goes back to its sender as an error, never to alice.
    mallory.send({ type: "H_ECHOED", meta: { correlationId: "shared" }, payload: { text: "forged" } })
    expect(await mallory.next()).toMatchObject(rpcError("UNIMPLEMENTED", "shared"))
    alice.send({ type: "H_PING", payload: { text: "a" } })
    expect(await alice.next()).toMatchObject(pong("Got: a"))
    expect(alice.frames).toEqual([])
  })
})

describe("hostile upgrades", () => {
  const refused = async (res: Response, status: number) => {
    expect(res.status).toBe(status)
    expect(res.webSocket).toBeNull()
    return res.text()
  }

  it.each(["POST", "PUT", "DELETE", "PATCH"])("refuses an upgrade with %s (405, no socket)", async (method) => {
    // workerd's fetch always performs a WebSocket handshake as GET, whatever the method, so a
    // non-GET upgrade (which a raw client on the internet can send) is handed to the handler
    // inside the object instead of travelling through fetch.
    const stub = stubOf(env.GATE, "methods")
    const answer = await runInDurableObject(stub, async (object: Gate) => {
      const res = await object.ws.fetch(
        new Request("http://test.local/room/methods", {
          method,
          headers: { Upgrade: "websocket", Origin: "https://app.example" }
        })
      )
      return {
        status: res.status,
        allow: res.headers.get("Allow"),
        socket: res.webSocket !== null,
        open: object.ws.connections().length
      }
    })
    expect(answer).toEqual({ status: 405, allow: "GET", socket: false, open: 0 })
  })

  it.each([
    ["missing", undefined],
    ["from another site", "https://evil.example"],
    ["with the allowed host as a prefix", "https://app.example.evil.example"],
    ["with another scheme", "http://app.example"],
    ["with another port", "https://app.example:8443"],
    ["the opaque 'null'", "null"],
    ["empty", ""]
  ])("refuses an Origin that is %s (403, no socket)", async (_, origin) => {
    const headers: Record<string, string> = origin === undefined ? {} : { Origin: origin }
    await refused(await upgradeOn(env.GATE, "origins", { headers }), 403)
  })

  it("accepts the allowed Origin, and an Upgrade header in any case", async () => {
    const client = await openOn(env.GATE, "origins", { headers: { Origin: "https://app.example", Upgrade: "WebSocket" } })
    client.send({ type: "H_PING", payload: { text: "ok" } })
    expect(await client.next()).toMatchObject(pong("Got: ok"))
  })

  it("answers a request without a websocket Upgrade with 426", async () => {
    for (const upgrade of ["h2c", ""]) {
      const res = await upgradeOn(env.GATE, "no-upgrade", { headers: { Upgrade: upgrade, Origin: "https://app.example" } })
      expect(await refused(res, 426)).not.toContain("stack")
      expect(res.headers.get("Upgrade")).toBe("websocket")
    }
  })

  it("answers 401 without detail when authenticate refuses", async () => {
    const body = await refused(
      await upgradeOn(env.GATE, "auth", { query: "?user=none", headers: { Origin: "https://app.example" } }),
      401
    )
    expect(body).toBe("Unauthorized")
  })

  it("refuses, with 500 and no socket, connection data larger than the 16 KiB attachment, and logs its size", async () => {
    const errors = captureConsole("error")
    const body = await refused(
      await upgradeOn(env.GATE, "huge-auth", { query: "?user=huge", headers: { Origin: "https://app.example" } }),
      500
    )
    expect(body).toBe("Connection data too large")
    expect(errors.lines()).toEqual([expect.stringMatching(/^durable-ws: Connection data is \d+ bytes; the limit is 16384$/)])
  })

  it("never lets authenticate's result set clientId, connectedAt or resourceId", async () => {
    const before = Date.now()
    const client = await openOn(env.GATE, "forge-room", { query: "?user=forge", headers: { Origin: "https://app.example" } })
    client.send({ type: "H_WHO_AM_I" })
    const { data } = (await client.next()).payload
    expect(data.userId).toBe("forger")
    expect(data.clientId).not.toBe("forged-id")
    expect(data.clientId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(data.connectedAt).toBeGreaterThanOrEqual(before)
    expect(data.resourceId).toBe("forge-room")
  })

  it("keeps __proto__ and constructor from authenticate as plain data", async () => {
    const client = await openOn(env.GATE, "proto-auth", { query: "?user=proto", headers: { Origin: "https://app.example" } })
    client.send({ type: "H_WHO_AM_I" })
    const answer = (await client.next()).payload
    expect(answer).toMatchObject({ dataPrototypeIsObject: true, prototypesIntact: true })
    expect(answer.ownKeys).toEqual(expect.arrayContaining(["__proto__", "constructor"]))
    expect(answer.data.isAdmin).toBeUndefined()
  })

  it("admits exactly maxConnections out of a burst of concurrent upgrades, also after eviction", async () => {
    const init = { headers: { Origin: "https://app.example" } }
    const answers = await Promise.all(Array.from({ length: 12 }, () => upgradeOn(env.GATE, "stampede", init)))
    const accepted = answers.filter((res) => res.status === 101 && res.webSocket !== null)
    expect(accepted).toHaveLength(3)
    const full = answers.filter((res) => res.status === 503 && res.webSocket === null)
    expect(full).toHaveLength(9)
    await Promise.all(full.map((res) => res.text()))
    const sockets = accepted.map((res) => wrap(res.webSocket!))
    // The count comes from the runtime, so a woken object still knows it is full.
    await evictDurableObject(stubOf(env.GATE, "stampede"))
    expect((await upgradeOn(env.GATE, "stampede", init)).status).toBe(503)
    sockets[0]!.close(1000, "making room")
    await sockets[0]!.closed()
    const next = await eventually(() => upgradeOn(env.GATE, "stampede", init), (res) => res.status === 101)
    expect(next.webSocket).not.toBeNull()
  })

  it("frees every slot of a connection that came and went, across evictions, and still refuses past the limit", async () => {
    const init = { headers: { Origin: "https://app.example" } }
    // Twelve connections open and close one after another, an eviction in the middle: none may stay counted.
    for (let round = 0; round < 12; round++) {
      const res = await eventually(() => upgradeOn(env.GATE, "churn", init), (r) => r.status === 101)
      const socket = wrap(res.webSocket!)
      socket.close(1000, "bye")
      await socket.closed()
      if (round === 5) await evictDurableObject(stubOf(env.GATE, "churn"))
    }
    // The last close may still be on its way to the object: each of the three slots is waited for.
    const sockets = []
    for (let slot = 0; slot < 3; slot++) {
      const res = await eventually(() => upgradeOn(env.GATE, "churn", init), (r) => r.status === 101)
      sockets.push(wrap(res.webSocket!))
    }
    const refused = await upgradeOn(env.GATE, "churn", init)
    expect(refused.status).toBe(503)
    await refused.text()
    for (const socket of sockets) socket.close(1000, "done")
  })
})
