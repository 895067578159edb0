import { env, evictDurableObject } from "cloudflare:test"
import { expect, it } from "vitest"
import { eventually, stubOf, upgradeOn } from "../helpers/durable"

/**
 * One object (`Crowd`, default limits: 1000 connections), 1000 connections,
 * 100 ordered messages from each (100,000 in all, every one answered), and
 * publishes fanned out to all of them meanwhile. Nothing may be lost,
 * duplicated or reordered; then the object is evicted and a publish must
 * still reach everyone.
 */

const connections = 1000
const perConnection = 100
const publishers = 20
const publishesEach = 5
const room = "load"

interface Received {
  ordered: number
  orderBroken: number
  saidBy: Map<string, number>
  saidOutOfOrder: number
  errors: number
  counted: Array<number>
}

interface LoadClient {
  readonly ws: WebSocket
  readonly received: Received
  send(frame: unknown): void
}

const open = async (): Promise<LoadClient> => {
  const res = await upgradeOn(env.CROWD, room)
  if (res.status !== 101 || res.webSocket === null) throw new Error(`upgrade answered ${res.status}`)
  const ws = res.webSocket
  ws.accept()
  const received: Received = { ordered: 0, orderBroken: 0, saidBy: new Map(), saidOutOfOrder: 0, errors: 0, counted: [] }
  ws.addEventListener("message", (event) => {
    const frame = JSON.parse(event.data as string)
    switch (frame.type) {
      case "H_ORDERED":
        if (frame.payload.n !== received.ordered) received.orderBroken++
        received.ordered++
        break
      case "H_SAID": {
        // Each publisher numbers its publishes: they must arrive in that order, each once.
        const [from, seq] = (frame.payload.text as string).split(":")
        const expected = received.saidBy.get(from!) ?? 0
        if (Number(seq) !== expected) received.saidOutOfOrder++
        received.saidBy.set(from!, expected + 1)
        break
      }
      case "H_COUNTED":
        received.counted.push(frame.payload.connections)
        break
      case "H_JOINED":
      case "H_PUBLISHED":
        break
      default:
        received.errors++
    }
  })
  return { ws, received, send: (frame) => ws.send(JSON.stringify(frame)) }
}

const totalSaid = (clients: ReadonlyArray<LoadClient>) =>
  clients.reduce((sum, c) => sum + Array.from(c.received.saidBy.values()).reduce((a, b) => a + b, 0), 0)

const countFrom = async (client: LoadClient): Promise<number> => {
  const before = client.received.counted.length
  client.send({ type: "H_COUNT", meta: { correlationId: `count-${before}` } })
  await eventually(async () => client.received.counted.length, (n) => n > before, 10_000)
  return client.received.counted[before]!
}

it("holds 1000 connections and 100,000 messages plus publishes with nothing lost, then survives eviction", async () => {
  const started = Date.now()
  const clients: Array<LoadClient> = []
  for (let batch = 0; batch < connections / 50; batch++) {
    clients.push(...await Promise.all(Array.from({ length: 50 }, open)))
  }
  for (const client of clients) client.send({ type: "H_JOIN", payload: { topic: "everyone" } })
  expect(await countFrom(clients[0]!)).toBe(connections)

  // The limit holds at exactly maxConnections.
  const refused = await upgradeOn(env.CROWD, room)
  expect(refused.status).toBe(503)
  expect(refused.webSocket).toBeNull()

  const opened = Date.now()
  for (let round = 0; round < perConnection; round++) {
    for (const client of clients) client.send({ type: "H_ORDER", payload: { n: round } })
    if (round % (perConnection / publishesEach) === 0) {
      const seq = round / (perConnection / publishesEach)
      for (let p = 0; p < publishers; p++) {
        clients[p * 7]!.send({ type: "H_SAY", payload: { topic: "everyone", text: `p${p}:${seq}` } })
      }
    }
  }
  const expectedSaid = connections * publishers * publishesEach
  await eventually(
    async () => ({ ordered: clients.reduce((sum, c) => sum + c.received.ordered, 0), said: totalSaid(clients) }),
    (t) => t.ordered === connections * perConnection && t.said === expectedSaid,
    120_000
  )
  const delivered = Date.now()
  for (const client of clients) {
    expect(client.received.ordered).toBe(perConnection)
    expect(client.received.orderBroken).toBe(0)
    expect(client.received.saidOutOfOrder).toBe(0)
    expect(client.received.errors).toBe(0)
  }
  expect(await countFrom(clients[1]!)).toBe(connections)

  // Evicted and woken: every connection and subscription is still there.
  await evictDurableObject(stubOf(env.CROWD, room))
  clients[500]!.send({ type: "H_SAY", payload: { topic: "everyone", text: "after:0" } })
  await eventually(async () => clients.filter((c) => c.received.saidBy.get("after") === 1).length, (n) => n === connections, 60_000)
  expect(await countFrom(clients[2]!)).toBe(connections)

  // Half of them leave: the count follows, and a publish reaches exactly the rest.
  for (const client of clients.slice(0, connections / 2)) client.ws.close(1000, "bye")
  const rest = clients.slice(connections / 2)
  await eventually(() => countFrom(rest[0]!), (n) => n === connections / 2, 30_000)
  rest[0]!.send({ type: "H_SAY", payload: { topic: "everyone", text: "after:1" } })
  await eventually(async () => rest.filter((c) => c.received.saidBy.get("after") === 2).length, (n) => n === rest.length, 30_000)
  expect(clients.slice(0, connections / 2).every((c) => c.received.saidBy.get("after") === 1)).toBe(true)
  expect(rest.every((c) => c.received.errors === 0)).toBe(true)

  console.log(
    `load: ${connections} connections opened in ${opened - started} ms; ` +
      `${connections * perConnection} messages answered and ${expectedSaid} publish deliveries in ${delivered - opened} ms; ` +
      `lost 0, reordered 0; total ${Date.now() - started} ms`
  )
  for (const client of rest) client.ws.close(1000, "done")
}, 300_000)
