import { env } from "cloudflare:test"
import { expect, it } from "vitest"
import { eventually, stubOf, upgradeOn } from "../helpers/durable"

/**
 * Resumable delivery under load: 200 connections in one object
 * (`Recovering`, the defaults), 20 topics of 10 subscribers each, 20,000
 * publishes, and every client dropped and resumed twice while the
 * publishes go on. Each client must see every publish of its topic once,
 * in order.
 */

const connections = 200
const topics = 20
const publishesPerTopic = 1000
const batch = 100
const room = "recovery-load"

interface Session {
  sessionId: string
  token: string
}

interface LoadClient {
  readonly topic: string
  ws: WebSocket | undefined
  session: Session | undefined
  /** The last published seq handled: the watermark a resume starts from. */
  lastSeq: number
  /** The next publish number expected on the topic. */
  next: number
  duplicated: number
  reordered: number
  resumes: number
  notRecovered: number
}

const attach = async (client: LoadClient, query: string): Promise<void> => {
  const res = await upgradeOn(env.RECOVERING, room, { query })
  if (res.status !== 101 || res.webSocket === null) throw new Error(`upgrade answered ${res.status}`)
  const ws = res.webSocket
  ws.accept()
  client.ws = ws
  const started = new Promise<void>((resolve) => {
    ws.addEventListener("message", (event) => {
      // Frames still arriving on a socket this client has let go of are not handled: the resume replays them.
      if (client.ws !== ws) return
      const frame = JSON.parse(event.data as string)
      if (frame.type === "$session") {
        client.session = { sessionId: frame.payload.sessionId, token: frame.payload.token }
        if (query === "") {
          client.lastSeq = frame.payload.seq
          resolve()
        }
      } else if (frame.type === "$resumed") {
        // A resume is over once its replay is (it is sent in chunks): only then may the client drop again.
        client.resumes++
        if (frame.payload.recovered !== true) client.notRecovered++
        resolve()
      } else if (frame.type === "R_SAID") {
        const seq = frame.meta.seq as number
        if (seq <= client.lastSeq) {
          client.duplicated++
          return
        }
        client.lastSeq = seq
        const n = Number((frame.payload.text as string).split(":")[1])
        if (n !== client.next) client.reordered++
        client.next = n + 1
      }
    })
  })
  await started
}

const open = async (i: number): Promise<LoadClient> => {
  const client: LoadClient = {
    topic: `topic-${i % topics}`,
    ws: undefined,
    session: undefined,
    lastSeq: 0,
    next: 0,
    duplicated: 0,
    reordered: 0,
    resumes: 0,
    notRecovered: 0
  }
  await attach(client, "")
  client.ws!.send(JSON.stringify({ type: "R_JOIN", payload: { topic: client.topic } }))
  return client
}

/** Drops every client (a network change) and resumes each from its watermark. */
const dropAndResume = async (clients: ReadonlyArray<LoadClient>) => {
  for (let from = 0; from < clients.length; from += 50) {
    await Promise.all(clients.slice(from, from + 50).map(async (client) => {
      const ws = client.ws!
      client.ws = undefined
      ws.close(4000, "network change")
      await new Promise((resolve) => setTimeout(resolve, 5))
      const { sessionId, token } = client.session!
      await attach(client, `?dws_resume=${sessionId}.${token}.${client.lastSeq}`)
    }))
  }
}

it("loses, duplicates and reorders nothing for 200 clients dropped twice during 20,000 publishes", async () => {
  const started = Date.now()
  const clients: Array<LoadClient> = []
  for (let from = 0; from < connections; from += 50) {
    clients.push(...await Promise.all(Array.from({ length: 50 }, (_, i) => open(from + i))))
  }
  // Every join has been handled once an rpc sent after it on the same socket is answered.
  await Promise.all(clients.map((client) =>
    new Promise<void>((resolve) => {
      const correlationId = `joined-${client.session!.sessionId}`
      client.ws!.addEventListener("message", (event) => {
        if (String(event.data).includes(correlationId)) resolve()
      })
      client.ws!.send(JSON.stringify({ type: "R_WHO_AM_I", meta: { correlationId } }))
    })
  ))

  const stub = stubOf(env.RECOVERING, room)
  const rounds = publishesPerTopic / batch
  // The two drops run while the publishes go on; the second starts once the first is over.
  let drops: Promise<void> = Promise.resolve()
  for (let round = 0; round < rounds; round++) {
    if (round === 2 || round === 6) drops = drops.then(() => dropAndResume(clients))
    for (let t = 0; t < topics; t++) {
      const texts = Array.from({ length: batch }, (_, k) => `topic-${t}:${round * batch + k}`)
      const res = await stub.fetch("http://test.local/publish", { method: "POST", body: JSON.stringify({ topic: `topic-${t}`, texts }) })
      const results = await res.json<Array<{ ok: boolean }>>()
      expect(results.every((r) => r.ok)).toBe(true)
    }
  }
  await drops
  const published = Date.now()
  await eventually(
    async () => clients.filter((c) => c.next === publishesPerTopic && c.resumes === 2).length,
    (done) => done === connections,
    60_000
  ).catch((error: unknown) => {
    // Which clients fell short, and how: the failure says more than a count.
    const short = clients.filter((c) => c.next !== publishesPerTopic || c.resumes !== 2)
    const shown = short.slice(0, 5).map(({ topic, next, lastSeq, resumes, notRecovered, duplicated, reordered }) => ({
      topic, next, lastSeq, resumes, notRecovered, duplicated, reordered
    }))
    throw new Error(`${short.length} clients short, e.g. ${JSON.stringify(shown)}: ${String(error)}`)
  })
  const lost = clients.reduce((sum, c) => sum + (publishesPerTopic - c.next), 0)
  const duplicated = clients.reduce((sum, c) => sum + c.duplicated, 0)
  const reordered = clients.reduce((sum, c) => sum + c.reordered, 0)
  const resumes = clients.reduce((sum, c) => sum + c.resumes, 0)
  const notRecovered = clients.reduce((sum, c) => sum + c.notRecovered, 0)
  expect({ lost, duplicated, reordered, resumes, notRecovered }).toEqual({
    lost: 0,
    duplicated: 0,
    reordered: 0,
    resumes: 2 * connections,
    notRecovered: 0
  })
  console.log(
    `recovery load: ${connections} connections, ${topics * publishesPerTopic} publishes ` +
      `(${connections * publishesPerTopic} deliveries), ${resumes} resumes; ` +
      `lost ${lost}, duplicated ${duplicated}, reordered ${reordered}; ` +
      `published in ${published - started} ms, total ${Date.now() - started} ms`
  )
  for (const client of clients) client.ws?.close(1000, "done")
}, 120_000)
