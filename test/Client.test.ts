import { env } from "cloudflare:workers"
import { afterEach, describe, expect, it } from "vitest"
import type { ClientOptions, CloseInfo } from "../src/Client"
import { backoffDelay, ConnectionClosedError, createClient, ServerError, TimeoutError } from "../src/Client"
import { ValidationError } from "../src/Errors"
import {
  BadNumber,
  CloseDuringRpc,
  Echo,
  Echoed,
  Fail,
  FailRpc,
  Kick,
  NumberAsClientSeesIt,
  SlowRpc,
  Stamp,
  Stamped,
  Sum
} from "./fixtures/client"
import { closeClients, eventually, fixtureClient, ScriptedSocket, trackClient, workerdSockets } from "./helpers/clientSocket"

/** A fixture client that also records the ECHOED payloads it receives. */
const setup = (options: Partial<ClientOptions> = {}) => {
  const made = fixtureClient(options)
  const echoes: Array<string> = []
  made.client.on(Echoed, (payload) => void echoes.push(payload.text))
  return { ...made, echoes }
}

afterEach(closeClients)

describe("client: typed messages", () => {
  it("sends and receives typed payloads, decoded with the shared schemas", async () => {
    const { client } = setup()
    const stamps: Array<{ at: Date; n: number }> = []
    client.on(Stamped, (payload) => void stamps.push(payload))
    await client.connect()
    expect(client.state).toBe("open")
    // On the wire `at` is millis and `n` a string; both ends only see Date and number.
    expect(client.send(Stamp, { at: new Date(5000), n: 21 })).toBe(true)
    await eventually(() => stamps.length === 1, "STAMPED")
    expect(stamps[0]!.at).toBeInstanceOf(Date)
    expect(stamps[0]!.at.getTime()).toBe(6000)
    expect(stamps[0]!.n).toBe(42)
  })

  it("reports a server frame that does not match the client's schema as a ValidationError", async () => {
    const { client, errors, echoes } = setup()
    const numbers: Array<number> = []
    client.on(NumberAsClientSeesIt, (payload) => void numbers.push(payload.n))
    await client.connect()
    client.send(BadNumber)
    await eventually(() => errors.length === 1, "a decode error")
    expect(errors[0]).toBeInstanceOf(ValidationError)
    expect((errors[0] as ValidationError).message).toContain("NUMBER")
    expect(numbers).toEqual([])
    client.send(Echo, { text: "still fine" })
    await eventually(() => echoes.length === 1, "ECHOED")
  })

  it("refuses an invalid outbound payload before it reaches the wire", async () => {
    const { client } = setup()
    await client.connect()
    expect(() => client.send(Echo, { text: 42 } as never)).toThrow(ValidationError)
    await expect(client.request(Sum, { values: ["x"] } as never)).rejects.toBeInstanceOf(ValidationError)
  })
})

describe("client: requests", () => {
  it("pairs concurrent requests with their replies by correlationId", async () => {
    const { client } = setup()
    await client.connect()
    const results = await Promise.all([
      client.request(SlowRpc, { ms: 30 }),
      client.request(Sum, { values: [1, 2, 3] }),
      client.request(Sum, { values: [10, 20] })
    ])
    expect(results).toEqual([{ ms: 30 }, { total: 6 }, { total: 30 }])
  })

  it("rejects with ServerError when the server answers RPC_ERROR", async () => {
    const { client, errors } = setup()
    await client.connect()
    const error = await client.request(FailRpc, { code: "PERMISSION_DENIED" }).then(
      () => expect.fail("the request should fail"),
      (e: unknown) => e
    )
    expect(error).toBeInstanceOf(ServerError)
    expect(error).toMatchObject({
      _tag: "ServerError",
      code: "PERMISSION_DENIED",
      message: "refused: PERMISSION_DENIED",
      details: { why: "fixture" }
    })
    expect(typeof (error as ServerError).correlationId).toBe("string")
    expect(errors).toEqual([])
  })

  it("surfaces ERROR frames that answer no request as ServerError to onError", async () => {
    const { client, errors } = setup()
    await client.connect()
    client.send(Fail)
    await eventually(() => errors.length === 1, "an error frame")
    expect(errors[0]).toBeInstanceOf(ServerError)
    expect(errors[0]).toMatchObject({ code: "FAILED_PRECONDITION", message: "not now" })
  })

  it("rejects with TimeoutError when no reply comes in time, and keeps working", async () => {
    const { client, errors } = setup()
    await client.connect()
    const error = await client.request(SlowRpc, { ms: 300 }, { timeoutMs: 20 }).then(
      () => expect.fail("the request should time out"),
      (e: unknown) => e
    )
    expect(error).toBeInstanceOf(TimeoutError)
    expect(error).toMatchObject({ _tag: "TimeoutError", type: "SLOW_RPC", timeoutMs: 20 })
    // The late reply finds no caller and is dropped quietly; the next request is answered.
    expect(await client.request(Sum, { values: [2, 2] })).toEqual({ total: 4 })
    expect(errors).toEqual([])
  })

  it("rejects a request in flight with ConnectionClosedError when the connection drops", async () => {
    const { client, sockets } = setup()
    await client.connect()
    const error = await client.request(CloseDuringRpc).then(
      () => expect.fail("the request should fail"),
      (e: unknown) => e
    )
    expect(error).toBeInstanceOf(ConnectionClosedError)
    expect(error).toMatchObject({ code: 4002, reason: "closing mid-request" })
    await eventually(() => client.state === "open" && sockets.opened() === 2, "the reconnect")
  })
})

describe("client: reconnect and queue", () => {
  it("reconnects after the server closes the connection", async () => {
    const { client, sockets, closes, echoes } = setup()
    let opens = 0
    client.onOpen(() => void opens++)
    await client.connect()
    client.send(Kick, { code: 4001, reason: "go away" })
    await eventually(() => closes.length === 1, "the close")
    expect(closes[0]).toMatchObject({ code: 4001, reason: "go away", willReconnect: true })
    expect(closes[0]!.retryInMs).toBeGreaterThanOrEqual(5)
    await eventually(() => client.state === "open" && opens === 2, "the reconnect")
    expect(sockets.opened()).toBe(2)
    client.send(Echo, { text: "after reconnect" })
    await eventually(() => echoes.length === 1, "ECHOED")
    expect(echoes).toEqual(["after reconnect"])
  })

  it("queues sends until the first open, then flushes them in order", async () => {
    const { client, echoes } = setup()
    for (const text of ["a", "b", "c"]) expect(client.send(Echo, { text })).toBe(true)
    const sum = client.request(Sum, { values: [4, 5] })
    expect(client.queued).toBe(4)
    await client.connect()
    expect(await sum).toEqual({ total: 9 })
    await eventually(() => echoes.length === 3, "three ECHOED")
    expect(echoes).toEqual(["a", "b", "c"])
    expect(client.queued).toBe(0)
  })

  it("queues while the server is down and flushes once it is back, after onOpen", async () => {
    const { client, sockets, echoes } = setup()
    const order: Array<string> = []
    client.onOpen(() => void client.send(Echo, { text: `hello ${order.push("open")}` }))
    await client.connect()
    sockets.down = true
    client.send(Kick, { code: 1012, reason: "restarting" })
    await eventually(() => client.state === "reconnecting", "reconnecting")
    for (const text of ["x", "y", "z"]) client.send(Echo, { text })
    expect(client.queued).toBe(3)
    await eventually(() => sockets.opened() >= 3, "a failed reconnect attempt")
    expect(client.state).toBe("reconnecting")
    sockets.down = false
    await eventually(() => echoes.length === 5, "five ECHOED", 3000)
    expect(echoes).toEqual(["hello 1", "hello 2", "x", "y", "z"])
  })

  it("bounds the offline queue", async () => {
    const { client } = setup({ maxQueueSize: 2 })
    expect(client.send(Echo, { text: "1" })).toBe(true)
    expect(client.send(Echo, { text: "2" })).toBe(true)
    expect(client.send(Echo, { text: "3" })).toBe(false)
    await expect(client.request(Sum, { values: [] })).rejects.toBeInstanceOf(ConnectionClosedError)
    expect(client.queued).toBe(2)
  })

  it("gives up after maxAttempts and rejects what waits", async () => {
    const { client, sockets, closes } = setup({ reconnect: { initialDelayMs: 1, maxAttempts: 2 } })
    sockets.down = true
    const connecting = client.connect()
    const pending = client.request(Sum, { values: [1] })
    await expect(connecting).rejects.toBeInstanceOf(ConnectionClosedError)
    await expect(pending).rejects.toBeInstanceOf(ConnectionClosedError)
    expect(client.state).toBe("closed")
    expect(sockets.opened()).toBe(3)
    expect(closes.map((c) => c.willReconnect)).toEqual([true, true, false])
    expect(client.send(Echo, { text: "too late" })).toBe(false)
  })

  it("stays closed after close(): no reconnect, requests rejected", async () => {
    const { client, sockets } = setup()
    await client.connect()
    const slow = client.request(SlowRpc, { ms: 200 })
    client.close(1000, "bye")
    await expect(slow).rejects.toBeInstanceOf(ConnectionClosedError)
    expect(client.state).toBe("closed")
    await expect(client.connect()).rejects.toBeInstanceOf(ConnectionClosedError)
    expect(client.send(Echo, { text: "no" })).toBe(false)
    expect(sockets.opened()).toBe(1)
  })

  it("keeps backing off from a server that accepts and at once closes, and starts over after a stable connection", async () => {
    const run = async (stableAfterMs: number) => {
      const client = createClient({
        url: "ws://scripted.test/",
        webSocket: () => {
          const socket = new ScriptedSocket()
          queueMicrotask(() => {
            socket.accept()
            socket.close(1011, "not today")
          })
          return socket
        },
        reconnect: { initialDelayMs: 1, multiplier: 2, jitter: 0, maxAttempts: 4, stableAfterMs }
      })
      trackClient(client)
      const waits: Array<number | undefined> = []
      client.onClose((info) => void waits.push(info.retryInMs))
      await expect(client.connect()).resolves.toBeUndefined()
      await eventually(() => client.state === "closed" || waits.length >= 4, "four closes")
      client.close()
      return waits.slice(0, 4)
    }
    expect(await run(60_000)).toEqual([1, 2, 4, 8])
    expect(await run(0)).toEqual([1, 1, 1, 1])
  })

  it("grows the backoff exponentially, caps it, and jitters within the bounds", () => {
    const options = { initialDelayMs: 100, maxDelayMs: 1000, multiplier: 2, jitter: 0.5 }
    expect([0, 1, 2, 3, 4, 5].map((attempt) => backoffDelay(attempt, options, () => 1))).toEqual([
      100,
      200,
      400,
      800,
      1000,
      1000
    ])
    expect([0, 1, 2, 3, 4].map((attempt) => backoffDelay(attempt, options, () => 0))).toEqual([50, 100, 200, 400, 500])
    expect(backoffDelay(3, { ...options, jitter: 0 }, () => 0.7)).toBe(800)
  })
})

describe("client: heartbeat", () => {
  it("gets heartbeats answered by the server and keeps the connection", async () => {
    const { client, sockets, errors, echoes } = setup({ heartbeat: { intervalMs: 5, timeoutMs: 100 } })
    await client.connect()
    const count = (frames: Array<string>, frame: string) => frames.filter((f) => f === frame).length
    await eventually(
      () => count(sockets.received, "{\"type\":\"__heartbeat_ack\"}") >= 2,
      "two heartbeat acks"
    )
    expect(count(sockets.sent, "{\"type\":\"__heartbeat\"}")).toBeGreaterThanOrEqual(2)
    client.send(Echo, { text: "alive" })
    await eventually(() => echoes.length === 1, "ECHOED")
    expect(sockets.opened()).toBe(1)
    expect(errors).toEqual([])
  })

  it("replaces a connection whose heartbeat goes unanswered", async () => {
    const sockets: Array<ScriptedSocket> = []
    const client = createClient({
      url: "ws://scripted.test/",
      webSocket: () => {
        const socket = new ScriptedSocket()
        // The first socket is dead silent; the ones after it answer.
        socket.answerHeartbeats = sockets.length > 0
        sockets.push(socket)
        queueMicrotask(() => socket.accept())
        return socket
      },
      reconnect: { initialDelayMs: 1 },
      heartbeat: { intervalMs: 10, timeoutMs: 10 }
    })
    trackClient(client)
    const closes: Array<CloseInfo> = []
    client.onClose((info) => void closes.push(info))
    await client.connect()
    await eventually(() => sockets[0]!.sent.length === 1, "a heartbeat")
    expect(sockets[0]!.sent[0]).toBe("{\"type\":\"__heartbeat\"}")
    await eventually(() => sockets.length === 2 && client.state === "open", "a new connection")
    expect(closes[0]).toMatchObject({ code: 1006, reason: "Heartbeat timeout", willReconnect: true })
    expect(sockets[0]!.readyState).toBe(3)
    // The new socket answers: it is kept through several heartbeats.
    await eventually(() => sockets[1]!.sent.length >= 4, "heartbeats on the new socket")
    expect(sockets.length).toBe(2)
    expect(client.state).toBe("open")
  })
})

describe("client: rate-limited requests", () => {
  it("rejects a refused request at once with RESOURCE_EXHAUSTED and retryAfterMs, not after its timeout", async () => {
    const { client } = setup({ webSocket: workerdSockets(env.THROTTLED).factory })
    await client.connect()
    // The bucket holds two frames: two requests are answered, the third is refused.
    expect(await client.request(Sum, { values: [1] })).toEqual({ total: 1 })
    expect(await client.request(Sum, { values: [2] })).toEqual({ total: 2 })
    const started = Date.now()
    const refused = await client.request(Sum, { values: [3] }, { timeoutMs: 5000 }).catch((error: unknown) => error)
    expect(refused).toBeInstanceOf(ServerError)
    expect(refused).toMatchObject({ code: "RESOURCE_EXHAUSTED", retryable: true })
    expect((refused as ServerError).retryAfterMs).toBeGreaterThan(0)
    expect(Date.now() - started).toBeLessThan(1000)
  })
})

describe("client: $batch frames", () => {
  it("asks for them at the upgrade and hands each message of one to its handlers in order; a bad element is reported alone", async () => {
    const socket = new ScriptedSocket()
    const urls: Array<string> = []
    const client = trackClient(createClient({
      url: "ws://scripted.test/room?token=t",
      webSocket: (url) => {
        urls.push(url)
        queueMicrotask(() => socket.accept())
        return socket
      },
      reconnect: false,
      heartbeat: false
    }))
    const echoes: Array<string> = []
    const errors: Array<unknown> = []
    client.on(Echoed, (payload) => void echoes.push(payload.text))
    client.onError((error) => void errors.push(error))
    await client.connect()
    expect(new URL(urls[0]!).searchParams.get("dws_batch")).toBe("1")
    expect(new URL(urls[0]!).searchParams.get("token")).toBe("t")
    const frame = (text: string) => JSON.stringify({ type: "ECHOED", payload: { text } })
    socket.deliver(`{"type":"$batch","payload":[${frame("a")},42,${frame("b")}]}`)
    socket.deliver(frame("c"))
    socket.deliver(`{"type":"$batch","payload":{"type":"ECHOED","payload":{"text":"not a list"}}}`)
    await eventually(() => echoes.length === 3 && errors.length === 2, "three messages and two errors")
    expect(echoes).toEqual(["a", "b", "c"])
    expect(errors.every((error) => error instanceof ValidationError)).toBe(true)
  })
})
