/**
 * Recovery across real restarts: `wrangler dev` (test/load/restart, the
 * recovery fixture at its defaults) is killed and started again on the same
 * storage three times, each time with 50 subscribed clients
 * (`durable-ws/client`, `recovery: true`) and 30 rpcs in flight whose
 * handlers are still running. Publishes go on between the restarts, also
 * while the clients resume. Every client must see every publish of its
 * topic once and in order, every rpc must be answered exactly once, and no
 * handler may run twice (a resend of one cut off is answered `ABORTED`).
 */
import { afterAll, expect, it } from "vitest"
import type { Client } from "../../src/Client"
import { createClient, isInterrupted } from "../../src/Client"
import type { DevServer } from "../browser/devServer"
import { freePort, startDevServer } from "../browser/devServer"
import { RCount, RJoin, RSaid, RWork } from "../fixtures/recoveryProtocol"

const clientsCount = 50
const topics = 5
const inFlight = 30
const restarts = 3
const perRound = 20
const room = "restart-load"

let server: DevServer | undefined
afterAll(async () => {
  await server?.stop()
})

interface Watcher {
  readonly client: Client
  readonly topic: string
  next: number
  duplicated: number
  reordered: number
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const until = async (check: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000) => {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

it("loses, duplicates and reorders nothing, and runs no handler twice, across three restarts", async () => {
  const port = await freePort()
  const config = "test/load/restart/wrangler.toml"
  server = await startDevServer({ port, config })
  const persistTo = server.persistTo
  const base = () => `http://127.0.0.1:${port}/room/${room}`
  const control = async (path: string, body?: unknown) => {
    const res = await fetch(`${base()}/${path}`, body === undefined ? {} : { method: "POST", body: JSON.stringify(body) })
    if (!res.ok) throw new Error(`${path} answered ${res.status}`)
    return res.json()
  }

  const watchers: Array<Watcher> = []
  for (let i = 0; i < clientsCount; i++) {
    const client = createClient({
      url: `ws://127.0.0.1:${port}/room/${room}`,
      recovery: true,
      heartbeat: false,
      reconnect: { initialDelayMs: 100, maxDelayMs: 500 }
    })
    const watcher: Watcher = { client, topic: `topic-${i % topics}`, next: 0, duplicated: 0, reordered: 0 }
    client.on(RSaid, ({ text }) => {
      const n = Number(text.split(":")[1])
      if (n < watcher.next) watcher.duplicated++
      else if (n > watcher.next) watcher.reordered++
      watcher.next = Math.max(watcher.next, n + 1)
    })
    watchers.push(watcher)
  }
  await Promise.all(watchers.map(async ({ client, topic }) => {
    await client.connect()
    client.send(RJoin, { topic })
    await client.request(RWork, { text: "joined" })
  }))

  let published = 0
  const publishRound = async () => {
    for (let t = 0; t < topics; t++) {
      const texts = Array.from({ length: perRound }, (_, k) => `topic-${t}:${published + k}`)
      const results = await control("publish", { topic: `topic-${t}`, texts }) as Array<{ ok: boolean }>
      expect(results.every((r) => r.ok)).toBe(true)
    }
    published += perRound
  }

  const outcomes: Array<{ key: string; outcome: string }> = []
  const requests: Array<Promise<void>> = []
  for (let restart = 0; restart < restarts; restart++) {
    await publishRound()
    // 30 rpcs whose handlers are running (each hangs on its first run) when the server goes down.
    for (let i = 0; i < inFlight; i++) {
      const key = `r${restart}-${i}`
      const { client } = watchers[i % clientsCount]!
      requests.push(client.request(RCount, { key, hangMs: 20_000 }, { timeoutMs: 120_000 }).then(
        () => void outcomes.push({ key, outcome: "answered" }),
        (error: unknown) => void outcomes.push({ key, outcome: isInterrupted(error) ? "interrupted" : String(error) })
      ))
    }
    await until(async () => {
      const counts = await Promise.all(
        Array.from({ length: inFlight }, (_, i) => control(`count?key=r${restart}-${i}`) as Promise<{ runs: number }>)
      )
      return counts.every((c) => c.runs === 1)
    }, "the handlers to start")
    await server.stop({ keepStorage: true })
    server = await startDevServer({ port, persistTo, config })
    // Publishes go on while the clients reconnect and resume.
    await publishRound()
  }
  await publishRound()
  await Promise.all(requests)
  const expected = published
  await until(() => watchers.every((w) => w.next === expected), "every publish to arrive")
  const counts = await Promise.all(outcomes.map(({ key }) => control(`count?key=${key}`) as Promise<{ runs: number }>))
  const summary = {
    lost: watchers.reduce((sum, w) => sum + (expected - w.next), 0),
    duplicated: watchers.reduce((sum, w) => sum + w.duplicated, 0),
    reordered: watchers.reduce((sum, w) => sum + w.reordered, 0),
    answered: outcomes.length,
    otherwise: outcomes.filter((o) => o.outcome !== "answered" && o.outcome !== "interrupted").map((o) => o.outcome),
    ranTwice: counts.filter((c) => c.runs > 1).length
  }
  console.log(
    `restart load: ${clientsCount} clients, ${restarts} restarts, ${expected} publishes per topic, ` +
      `${outcomes.filter((o) => o.outcome === "interrupted").length} of ${outcomes.length} rpcs answered ABORTED (cut off)`
  )
  expect(summary).toEqual({
    lost: 0,
    duplicated: 0,
    reordered: 0,
    answered: restarts * inFlight,
    otherwise: [],
    ranTwice: 0
  })
  for (const { client } of watchers) client.close()
})
