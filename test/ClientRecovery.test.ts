import { env, evictDurableObject } from "cloudflare:test"
import { afterEach, describe, expect, it } from "vitest"
import type { Client, ClientOptions, ResumeInfo, SessionStore } from "../src/Client"
import { ConnectionClosedError, createClient, isInterrupted, ServerError } from "../src/Client"
import { eventually, ScriptedSocket, workerdSockets } from "./helpers/clientSocket"
import { stubOf } from "./helpers/durable"
import { RCloseMe, RCount, RJoin, RSaid, RWork } from "./fixtures/recovery"

let n = 0
const clients: Array<Client> = []
afterEach(() => {
  for (const client of clients.splice(0)) client.close()
})

const memoryStore = (): SessionStore & { readonly items: Map<string, string> } => {
  const items = new Map<string, string>()
  return {
    items,
    getItem: (key) => items.get(key) ?? null,
    setItem: (key, value) => void items.set(key, value),
    removeItem: (key) => void items.delete(key)
  }
}

const control = (name: string, path: string, body?: unknown, namespace: DurableObjectNamespace = env.RECOVERING) =>
  stubOf(namespace, name).fetch(`http://test.local/${path}`, {
    method: body === undefined ? "GET" : "POST",
    body: body === undefined ? null : JSON.stringify(body)
  })

const publish = (name: string, topic: string, texts: ReadonlyArray<string>, namespace?: DurableObjectNamespace) =>
  control(name, "publish", { topic, texts }, namespace)

const setup = (name: string, options: Partial<ClientOptions> = {}, namespace: DurableObjectNamespace = env.RECOVERING) => {
  const sockets = workerdSockets(namespace)
  const client = createClient({
    url: `ws://recovery.test/${name}`,
    webSocket: sockets.factory,
    reconnect: { initialDelayMs: 10, maxDelayMs: 50 },
    heartbeat: false,
    recovery: true,
    ...options
  })
  clients.push(client)
  const said: Array<string> = []
  const resumes: Array<ResumeInfo> = []
  client.on(RSaid, (payload) => void said.push(payload.text))
  client.onResumed((info) => void resumes.push(info))
  return { client, sockets, said, resumes }
}

/** Joins `topic` and waits until the server has handled it. */
const joined = async (client: Client, topic: string) => {
  client.send(RJoin, { topic })
  await client.request(RWork, { text: "sync" })
}

describe("client: recovery", () => {
  it("resumes on reconnect: what was published while away arrives once, in order", async () => {
    const name = `client-recovery-${n++}`
    const { client, sockets, said, resumes } = setup(name)
    await client.connect()
    await joined(client, "t")
    await publish(name, "t", ["a", "b"])
    await eventually(() => said.length === 2, "a and b")
    sockets.down = true
    await control(name, "drop")
    await eventually(() => client.state === "reconnecting", "reconnecting")
    await publish(name, "t", ["c", "d", "e"])
    sockets.down = false
    await eventually(() => resumes.length === 1, "the resume")
    expect(resumes).toEqual([{ recovered: true, replayed: 3, gaps: [], truncated: false }])
    await publish(name, "t", ["f"])
    await eventually(() => said.length === 6, "f")
    expect(said).toEqual(["a", "b", "c", "d", "e", "f"])
  })

  it("resumes after a restart and sends in-flight requests again: answered once, the handler ran once", async () => {
    const name = `client-recovery-${n++}`
    const { client, resumes } = setup(name)
    await client.connect()
    const reply = client.request(RWork, { text: "slow", delayMs: 300 })
    await new Promise((resolve) => setTimeout(resolve, 50))
    await control(name, "drop")
    expect(await reply).toEqual({ text: "slow", run: 1 })
    expect(resumes.map((r) => r.recovered)).toEqual([true])
    const events = await (await control(name, "events")).json<{ runs: number }>()
    expect(events.runs).toBe(1)
  })

  it("a request made while offline reaches the server once after the resume, not once more as a resend", async () => {
    const name = `client-recovery-${n++}`
    const { client, resumes } = setup(name, { reconnect: { initialDelayMs: 200, maxDelayMs: 200 } })
    await client.connect()
    const offline = new Promise<void>((resolve) => {
      client.onStateChange((state) => {
        if (state === "reconnecting") resolve()
      })
    })
    await control(name, "drop")
    await offline
    // Queued now, and sent on the new socket when it opens: the resume must not send it again.
    expect(await client.request(RCount, { key: "offline" })).toEqual({ runs: 1 })
    expect(resumes.map((r) => r.recovered)).toEqual([true])
    expect(await client.request(RCount, { key: "offline" })).toEqual({ runs: 2 })
  })

  it("resumes across an eviction that closed every socket", async () => {
    const name = `client-recovery-${n++}`
    const { client, sockets, said, resumes } = setup(name)
    await client.connect()
    await joined(client, "t")
    sockets.down = true
    await evictDurableObject(stubOf(env.RECOVERING, name), { webSockets: "close" })
    await eventually(() => client.state === "reconnecting", "reconnecting")
    await publish(name, "t", ["while down"])
    sockets.down = false
    await eventually(() => resumes.length === 1, "the resume", 5000)
    expect(resumes[0]!.recovered).toBe(true)
    expect(said).toEqual(["while down"])
  })

  it("with a store, a new client (a reloaded page) resumes the session", async () => {
    const name = `client-recovery-${n++}`
    const store = memoryStore()
    const first = setup(name, { store })
    await first.client.connect()
    await joined(first.client, "t")
    await publish(name, "t", ["before reload"])
    await eventually(() => first.said.length === 1, "the first line")
    // A page going away closes with 1001: the session stays resumable.
    first.client.close(1001, "page unload")
    expect(store.items.size).toBe(1)
    await publish(name, "t", ["during reload"])
    const second = setup(name, { store })
    await second.client.connect()
    await eventually(() => second.resumes.length === 1, "the resume")
    expect(second.resumes[0]).toEqual({ recovered: true, replayed: 1, gaps: [], truncated: false })
    expect(second.said).toEqual(["during reload"])
  })

  it("close(1000) ends the session and forgets it", async () => {
    const name = `client-recovery-${n++}`
    const store = memoryStore()
    const first = setup(name, { store })
    await first.client.connect()
    first.client.close()
    expect(store.items.size).toBe(0)
  })

  it("a copy that resumed the session takes it over: the original is closed with 4409 and stays away", async () => {
    const name = `client-recovery-${n++}`
    const store = memoryStore()
    const original = setup(name, { store, storeKey: "tab" })
    const closes: Array<{ code: number; willReconnect: boolean }> = []
    original.client.onClose(({ code, willReconnect }) => void closes.push({ code, willReconnect }))
    await original.client.connect()
    await joined(original.client, "t")
    // A duplicated tab starts with a copy of sessionStorage.
    expect(store.items.get("tab")).toBeDefined()
    const twin = memoryStore()
    twin.setItem("tab", store.items.get("tab")!)
    const second = setup(name, { store: twin, storeKey: "tab" })
    await second.client.connect()
    await eventually(() => second.resumes.length === 1, "the takeover")
    expect(second.resumes[0]!.recovered).toBe(true)
    await eventually(() => original.client.state === "closed", "the original to stop")
    expect(closes).toEqual([{ code: 4409, willReconnect: false }])
    await new Promise((resolve) => setTimeout(resolve, 80))
    expect(original.sockets.opened()).toBe(1)
    await publish(name, "t", ["only the copy"])
    await eventually(() => second.said.length === 1, "the copy's message")
    expect(original.said).toEqual([])
  })

  it("reports a resume that failed, and fails the requests it cannot vouch for", async () => {
    const store = memoryStore()
    store.setItem("k", JSON.stringify({ sessionId: "01890000-0000-7000-8000-000000000000", token: "A".repeat(32), seq: 0 }))
    const name = `client-recovery-${n++}`
    const { client, resumes } = setup(name, { store, storeKey: "k" })
    await client.connect()
    await eventually(() => resumes.length === 1, "the answer")
    expect(resumes).toEqual([{ recovered: false, replayed: 0, gaps: [], truncated: false }])
    expect(JSON.parse(store.items.get("k")!).sessionId).not.toBe("01890000-0000-7000-8000-000000000000")
  })

  it("hands each published frame over once: a seq at or below the watermark is dropped", async () => {
    const socket = new ScriptedSocket()
    const client = createClient({ url: "ws://scripted.test/x", webSocket: () => socket, heartbeat: false, recovery: true })
    clients.push(client)
    const said: Array<string> = []
    client.on(RSaid, (payload) => void said.push(payload.text))
    const opened = client.connect()
    socket.accept()
    await opened
    const frame = (seq: number, text: string) => JSON.stringify({ type: "R_SAID", meta: { topic: "t", seq }, payload: { text } })
    socket.deliver(JSON.stringify({ type: "$session", payload: { sessionId: "s", token: "t".repeat(32), seq: 4 } }))
    for (const [seq, text] of [[4, "old"], [5, "five"], [6, "six"], [6, "six again"], [5, "five again"], [7, "seven"]] as const) {
      socket.deliver(frame(seq, text))
    }
    expect(said).toEqual(["five", "six", "seven"])
  })

  it("without recovery, a drop still fails the requests in flight", async () => {
    const name = `client-recovery-${n++}`
    const { client } = setup(name, { recovery: false })
    await client.connect()
    const outcome = client.request(RWork, { text: "slow", delayMs: 300 }).then(() => "answered", (error: unknown) => error)
    await new Promise((resolve) => setTimeout(resolve, 50))
    await control(name, "drop")
    expect(await outcome).toBeInstanceOf(ConnectionClosedError)
  })

  it("stops resuming after a terminal close from the server, and forgets the session", async () => {
    const name = `client-recovery-${n++}`
    const store = memoryStore()
    const { client, sockets } = setup(name, { store })
    const closes: Array<{ code: number; willReconnect: boolean }> = []
    client.onClose(({ code, willReconnect }) => void closes.push({ code, willReconnect }))
    await client.connect()
    await eventually(() => store.items.size === 1, "the session to be stored")
    client.send(RCloseMe, { code: 4403 })
    await eventually(() => client.state === "closed", "the client to stop")
    expect(closes).toEqual([{ code: 4403, willReconnect: false }])
    expect(store.items.size).toBe(0)
    await new Promise((resolve) => setTimeout(resolve, 80))
    expect(sockets.opened()).toBe(1)
  })

  it("a request whose handler a restart cut off rejects with ServerError ABORTED, and ran once", async () => {
    const name = `client-recovery-${n++}`
    const key = `client-cut-${n}`
    const { client, resumes } = setup(name)
    await client.connect()
    const outcome = client.request(RCount, { key, hangMs: 10_000 }).then(() => "answered", (error: unknown) => error)
    const runs = async () => (await (await control(name, `count?key=${key}`)).json<{ runs: number }>()).runs
    for (let i = 0; i < 100 && await runs() === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20))
    await control(name, "abort").catch(() => undefined)
    const error = await outcome
    expect(error).toBeInstanceOf(ServerError)
    expect(error).toMatchObject({ code: "ABORTED", details: { reason: "INTERRUPTED" } })
    expect(isInterrupted(error)).toBe(true)
    expect(resumes.map((r) => r.recovered)).toEqual([true])
    expect(await runs()).toBe(1)
  })

  it("reports a truncated replay, with the topic cut short in gaps", async () => {
    const name = `client-recovery-${n++}`
    const { client, sockets, said, resumes } = setup(name, {}, env.BOUNDED)
    await client.connect()
    await joined(client, "t")
    sockets.down = true
    await control(name, "drop", undefined, env.BOUNDED)
    await eventually(() => client.state === "reconnecting", "reconnecting")
    await publish(name, "t", Array.from({ length: 40 }, (_, i) => `${i}:${"x".repeat(1000)}`), env.BOUNDED)
    sockets.down = false
    await eventually(() => resumes.length === 1, "the resume")
    expect(resumes[0]).toMatchObject({ recovered: true, gaps: ["t"], truncated: true })
    expect(said.length).toBe(resumes[0]!.replayed)
    expect(said.length).toBeLessThan(40)
  })

  it("backs off at least 2 s when a resume is refused with 429, then resumes with the same session", async () => {
    const name = `client-recovery-${n++}`
    const { client, resumes } = setup(name)
    const retries: Array<{ status: number | undefined; retryInMs: number | undefined }> = []
    client.onClose((info) => void retries.push({ status: info.status, retryInMs: info.retryInMs }))
    await client.connect()
    // Five resumes spend the burst; the sixth is refused until the rate lets one through.
    for (let i = 1; i <= 6; i++) {
      await control(name, "drop")
      if (i <= 5) await eventually(() => resumes.length === i, `resume ${i}`)
    }
    await eventually(() => retries.some((r) => r.status === 429), "the 429")
    expect(retries.find((r) => r.status === 429)!.retryInMs).toBeGreaterThanOrEqual(2000)
    await eventually(() => resumes.length === 6, "the sixth resume", 5000)
    expect(resumes.every((r) => r.recovered)).toBe(true)
  })
})
