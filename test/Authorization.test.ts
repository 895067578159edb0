import { env } from "cloudflare:test"
import { describe, expect, it } from "vitest"
import { openOn, stubOf } from "./helpers/durable"
import type { TestSocket } from "./helpers/socket"

/**
 * `Hardened`'s hooks: `private:` topics for admins only (decided
 * asynchronously), `boom:` topics whose hook throws, `readonly:` topics no
 * connection may publish to.
 */

let n = 0
const room = (what: string) => `auth-${what}-${n++}`

const join = async (client: TestSocket, topic: string, via: "ctx" | "effect" = "ctx") => {
  client.send({ type: "H_JOIN", payload: { topic, via } })
  return client.next()
}

const say = async (client: TestSocket, topic: string, text: string) => {
  client.send({ type: "H_SAY", payload: { topic, text } })
  return client.next((f) => f.type === "H_PUBLISHED")
}

const topicsOf = async (client: TestSocket) => {
  client.send({ type: "H_WHO_AM_I" })
  return (await client.next((f) => f.type === "H_DATA")).payload.topics as Array<string>
}

describe("authorizeSubscribe", () => {
  it.each(["ctx", "effect"] as const)("answers PERMISSION_DENIED and subscribes nothing (%s)", async (via) => {
    const member = await openOn(env.HARDENED, room("deny"), { query: "?user=m&role=member" })
    expect(await join(member, "private:board", via)).toMatchObject({
      type: "ERROR",
      payload: { code: "PERMISSION_DENIED", message: "Not allowed to subscribe to \"private:board\"" }
    })
    expect(await member.next()).toMatchObject({ type: "H_ON_ERROR", payload: { tag: "TopicError", code: "PERMISSION_DENIED" } })
    expect(await topicsOf(member)).toEqual([])
    // The connection goes on, and other topics are still open to it.
    expect(await join(member, "public:news", via)).toMatchObject({ type: "H_JOINED", payload: { count: 1 } })
  })

  it("allows what the hook allows, judging by the connection's data", async () => {
    const name = room("admin")
    const admin = await openOn(env.HARDENED, name, { query: "?user=a&role=admin" })
    const member = await openOn(env.HARDENED, name, { query: "?user=m&role=member" })
    expect(await join(admin, "private:board")).toMatchObject({ type: "H_JOINED", payload: { topic: "private:board" } })
    expect(await join(member, "private:board")).toMatchObject({ type: "ERROR", payload: { code: "PERMISSION_DENIED" } })
    await member.next((f) => f.type === "H_ON_ERROR")
    // Only the allowed subscriber hears what is said there.
    expect(await say(member, "private:board", "psst")).toMatchObject({ payload: { ok: true, matched: 1 } })
    expect(await admin.next()).toMatchObject({ type: "H_SAID", payload: { text: "psst" } })
    expect(await member.drain(50)).toEqual([])
  })

  it("fails closed when the hook throws", async () => {
    const client = await openOn(env.HARDENED, room("boom"), { query: "?role=admin" })
    expect(await join(client, "boom:x")).toMatchObject({ type: "ERROR", payload: { code: "PERMISSION_DENIED" } })
    await client.next((f) => f.type === "H_ON_ERROR")
    expect(await topicsOf(client)).toEqual([])
    expect(await join(client, "boom:x", "effect")).toMatchObject({ type: "ERROR", payload: { code: "PERMISSION_DENIED" } })
  })
})

describe("authorizePublish", () => {
  it("returns { ok: false, error: PERMISSION_DENIED } and sends nothing", async () => {
    const name = room("publish")
    const listener = await openOn(env.HARDENED, name)
    expect(await join(listener, "readonly:news")).toMatchObject({ type: "H_JOINED" })
    expect(await join(listener, "chat")).toMatchObject({ type: "H_JOINED" })
    const speaker = await openOn(env.HARDENED, name)
    expect(await say(speaker, "readonly:news", "spam")).toMatchObject({
      type: "H_PUBLISHED",
      payload: { ok: false, error: "PERMISSION_DENIED" }
    })
    // Allowed topics still work, and the denied frame never arrived before this one.
    expect(await say(speaker, "chat", "hello")).toMatchObject({ payload: { ok: true, matched: 1 } })
    expect(await listener.next()).toMatchObject({ type: "H_SAID", payload: { text: "hello" } })
    expect(await listener.drain(50)).toEqual([])
  })

  it("does not apply to publishes made by the server itself", async () => {
    const name = room("server")
    const listener = await openOn(env.HARDENED, name)
    expect(await join(listener, "readonly:news")).toMatchObject({ type: "H_JOINED" })
    const res = await stubOf(env.HARDENED, name).fetch("http://test.local/publish?topic=readonly:news&text=official")
    expect(await res.json()).toEqual({ ok: true, matched: 1 })
    expect(await listener.next()).toMatchObject({ type: "H_SAID", payload: { from: "server", text: "official" } })
  })
})
