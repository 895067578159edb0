/**
 * The client's close policy and per-attempt credentials, against real
 * Durable Objects in workerd: terminal close codes are honoured, a refused
 * upgrade is retried only with new credentials, and an expiring token in
 * the URL is refreshed across a reconnect.
 */
import { env } from "cloudflare:workers"
import { afterEach, describe, expect, it } from "vitest"
import { CloseCodes, isTerminalCloseCode } from "../src/CloseCodes"
import type { ClientOptions, CloseDetails } from "../src/Client"
import { ConnectionClosedError, createClient } from "../src/Client"
import { Echo, Echoed, Kick, Sum, tokenValidFor } from "./fixtures/client"
import { closeClients, eventually, fixtureClient, ScriptedSocket, trackClient } from "./helpers/clientSocket"
import { sleep } from "./helpers/socket"

let n = 0

const setup = (options: Partial<ClientOptions> = {}, namespace: DurableObjectNamespace = env.CLIENT_ROOM) =>
  fixtureClient({ url: `ws://client.test/policy-${n++}`, ...options }, namespace, { initialDelayMs: 5, maxDelayMs: 20 })

afterEach(closeClients)

describe("close codes", () => {
  it("classifies 1000, 1008 and 4400–4499 as terminal, everything else as transient", () => {
    expect([1000, 1008, 4400, 4401, 4403, 4409, 4499].map(isTerminalCloseCode)).toEqual(Array(7).fill(true))
    expect([1001, 1005, 1006, 1011, 1012, 4000, 4001, 4399, 4500].map(isTerminalCloseCode)).toEqual(Array(9).fill(false))
    expect(CloseCodes).toMatchObject({ Normal: 1000, PolicyViolation: 1008, Unauthenticated: 4401, Forbidden: 4403, Replaced: 4409 })
  })

  for (const code of [CloseCodes.Forbidden, CloseCodes.Unauthenticated, CloseCodes.PolicyViolation, CloseCodes.Normal]) {
    it(`does not reconnect after the server closes with ${code}`, async () => {
      const { client, sockets, closes } = setup()
      await client.connect()
      client.send(Kick, { code, reason: "go away" })
      // Handled after the kick, so never answered: it must fail at the close, not at its timeout.
      const pending = client.request(Sum, { values: [1] }, { timeoutMs: 10_000 }).catch((error: unknown) => error)
      await eventually(() => client.state === "closed", "the client to give up")
      expect(closes).toEqual([{ code, reason: "go away", willReconnect: false }])
      expect(await pending).toBeInstanceOf(ConnectionClosedError)
      // Give a (wrong) reconnect every chance to happen.
      await sleep(60)
      expect(sockets.opened()).toBe(1)
      await expect(client.connect()).rejects.toBeInstanceOf(ConnectionClosedError)
    })
  }

  it("reconnects after a transient code (1012 restart, 4000–4399)", async () => {
    for (const code of [1012, 4000, 4399]) {
      const { client, sockets, closes } = setup()
      await client.connect()
      client.send(Kick, { code, reason: "restarting" })
      await eventually(() => sockets.opened() === 2 && client.state === "open", `the reconnect after ${code}`)
      expect(closes[0]).toMatchObject({ code, willReconnect: true })
    }
  })

  it("lets shouldReconnect override the policy both ways, seeing the default verdict", async () => {
    const seen: Array<CloseDetails> = []
    const stubborn = setup({ shouldReconnect: (close) => (seen.push(close), close.code === CloseCodes.Forbidden) })
    await stubborn.client.connect()
    stubborn.client.send(Kick, { code: CloseCodes.Forbidden, reason: "banned" })
    await eventually(() => stubborn.sockets.opened() === 2 && stubborn.client.state === "open", "the overridden reconnect")
    expect(seen).toEqual([{ code: 4403, reason: "banned", terminal: true }])

    const shy = setup({ shouldReconnect: () => false })
    await shy.client.connect()
    shy.client.send(Kick, { code: 1012, reason: "restarting" })
    await eventually(() => shy.client.state === "closed", "the client to stay away")
    expect(shy.closes).toEqual([{ code: 1012, reason: "restarting", willReconnect: false }])
    expect(shy.sockets.opened()).toBe(1)
  })

  it("gives up when a Schedule-like nextDelay says so", async () => {
    const attempts: Array<number> = []
    const { client, sockets } = setup({
      reconnect: { nextDelay: (attempt) => (attempts.push(attempt), attempt < 2 ? 1 : undefined) }
    })
    sockets.down = true
    await expect(client.connect()).rejects.toBeInstanceOf(ConnectionClosedError)
    expect(attempts).toEqual([0, 1, 2])
    expect(sockets.opened()).toBe(3)
  })
})

describe("credentials per attempt", () => {
  it("refreshes an expired token in the URL across a reconnect (async url)", async () => {
    const issued: Array<string> = []
    const { client, sockets, closes } = setup({
      url: async () => {
        await sleep(1)
        const token = tokenValidFor(150)
        issued.push(token)
        return `ws://client.test/auth-${n}?token=${token}`
      }
    }, env.AUTH_ROOM)
    const echoes: Array<string> = []
    client.on(Echoed, (payload) => void echoes.push(payload.text))
    await client.connect()
    await sleep(200)
    // The first token has expired: a reconnect with it would get 401.
    client.send(Kick, { code: 1012, reason: "restarting" })
    await eventually(() => sockets.opened() === 2 && client.state === "open", "the reconnect with a fresh token")
    expect(issued.length).toBe(2)
    expect(sockets.urls.map((url) => new URL(url).searchParams.get("token"))).toEqual(issued)
    expect(closes).toEqual([expect.objectContaining({ code: 1012, willReconnect: true })])
    client.send(Echo, { text: "still me" })
    await eventually(() => echoes.length === 1, "ECHOED")
  })

  it("treats a 401 as terminal when the URL cannot change", async () => {
    const { client, sockets, closes } = setup({ url: `ws://client.test/auth-static?token=${tokenValidFor(-1)}` }, env.AUTH_ROOM)
    const error = await client.connect().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConnectionClosedError)
    expect(closes).toEqual([{ code: 1006, reason: "HTTP 401", status: 401, willReconnect: false }])
    await sleep(50)
    expect(sockets.opened()).toBe(1)
  })

  it("retries a 401 only with changed credentials", async () => {
    const stale = tokenValidFor(-1)
    const { client, sockets, closes } = setup({ url: () => `ws://client.test/auth-stale?token=${stale}` }, env.AUTH_ROOM)
    await expect(client.connect()).rejects.toBeInstanceOf(ConnectionClosedError)
    // One refused attempt; the next attempt computed the same URL and stopped before opening a socket.
    expect(sockets.opened()).toBe(1)
    expect(closes.map((c) => c.willReconnect)).toEqual([true, false])
    expect(closes[1]!.reason).toBe("The upgrade was refused and the credentials did not change")
  })

  it("stops after three refusals in a row even with new credentials each time", async () => {
    let k = 0
    const { client, sockets } = setup({ url: () => `ws://client.test/auth-bad?token=bad-${k++}` }, env.AUTH_ROOM)
    await expect(client.connect()).rejects.toBeInstanceOf(ConnectionClosedError)
    expect(sockets.opened()).toBe(3)
    expect(k).toBe(3)
  })

  it("calls protocols before every attempt and hands them to the socket", async () => {
    const seen: Array<ReadonlyArray<string> | undefined> = []
    let k = 0
    const client = createClient({
      url: "ws://scripted.test/",
      protocols: async () => [`token.${++k}`],
      webSocket: (_url, protocols) => {
        seen.push(protocols)
        const socket = new ScriptedSocket()
        queueMicrotask(() => {
          socket.accept()
          if (seen.length === 1) socket.close(1012, "restart")
        })
        return socket
      },
      reconnect: { initialDelayMs: 1 },
      heartbeat: false
    })
    trackClient(client)
    await client.connect()
    await eventually(() => seen.length === 2 && client.state === "open", "the second socket")
    expect(seen).toEqual([["token.1"], ["token.2"]])
  })

  it("reports a url function that throws and tries again later", async () => {
    let calls = 0
    const { client, errors, sockets } = setup({
      url: () => {
        if (++calls === 1) throw new Error("token service down")
        return `ws://client.test/policy-${n}`
      }
    })
    await client.connect()
    expect(calls).toBe(2)
    expect(sockets.opened()).toBe(1)
    expect(errors).toEqual([new Error("token service down")])
  })

  it("does not open a socket for an attempt whose credentials arrive after close()", async () => {
    let release: (url: string) => void = () => {}
    const { client, sockets } = setup({ url: () => new Promise<string>((resolve) => (release = resolve)) })
    const connecting = client.connect()
    client.close()
    release(`ws://client.test/policy-${n}`)
    await expect(connecting).rejects.toBeInstanceOf(ConnectionClosedError)
    await sleep(20)
    expect(sockets.opened()).toBe(0)
  })
})
