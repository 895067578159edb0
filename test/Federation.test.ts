import { it as effect } from "@effect/vitest"
import { env } from "cloudflare:test"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { describe, expect, it } from "vitest"
import * as Federation from "../src/Federation"
import { federate, FederationError, federateWithErrors, federateWithFilter } from "../src/index"
import type { Shard } from "./fixtures/federation"
import { connect, type TestSocket } from "./helpers/socket"

let n = 0
/** Fresh shard names, so every test talks to objects no other test touched. */
const names = (count: number, label = "shard") => Array.from({ length: count }, (_, i) => `${label}-${n++}-${i}`)
const stubOf = (name: string) => env.SHARD.get(env.SHARD.idFromName(name))

describe("federate (promise facade) against a real namespace", () => {
  it("reaches every shard and reports each value with its shard", async () => {
    const shards = names(5)
    const results = await federate(env.SHARD, shards, (stub, shard) => stub.echo(`hello ${shard}`))
    expect(results).toEqual(shards.map((shard) => ({ shard, status: "fulfilled", value: `hello ${shard}` })))
    for (const shard of shards) expect(await stubOf(shard).attempts()).toBe(1)
  })

  it("gives each shard its own object: names go through idFromName", async () => {
    const shards = names(3)
    const results = await federate(env.SHARD, shards, (stub) => stub.whoami())
    expect(results.map((r) => r.status === "fulfilled" && r.value)).toEqual(
      shards.map((shard) => env.SHARD.idFromName(shard).toString())
    )
    expect(new Set(results.map((r) => r.status === "fulfilled" && r.value)).size).toBe(3)
  })

  it("accepts DurableObjectIds as shards and reports them by toString()", async () => {
    const [named] = names(1)
    const ids = [env.SHARD.idFromName(named!), env.SHARD.newUniqueId()]
    const results = await federate(env.SHARD, ids, (stub) => stub.whoami())
    expect(results).toEqual(ids.map((id) => ({ shard: id.toString(), status: "fulfilled", value: id.toString() })))
  })

  it("reports one failing and one timing-out shard while the others succeed", async () => {
    const [first, failing, hanging, last] = names(4)
    const results = await federate(
      env.SHARD,
      [first!, failing!, hanging!, last!],
      (stub, shard) => shard === failing ? stub.fail("shard broke") : shard === hanging ? stub.hang() : stub.echo(shard),
      { timeoutMs: 1000 }
    )
    expect(results.map((r) => [r.shard, r.status])).toEqual([
      [first, "fulfilled"],
      [failing, "rejected"],
      [hanging, "rejected"],
      [last, "fulfilled"]
    ])
    const failed = results[1]!
    const timedOut = results[2]!
    if (failed.status !== "rejected" || timedOut.status !== "rejected") throw new Error("expected rejections")
    expect(failed.reason).toBeInstanceOf(Error)
    expect((failed.reason as Error).message).toBe("shard broke")
    expect(timedOut.reason).toBeInstanceOf(FederationError)
    expect(timedOut.reason).toMatchObject({ shard: hanging, retryable: false, overloaded: false })
    expect(Cause.isTimeoutError((timedOut.reason as FederationError).cause)).toBe(true)
    // The hanging call really was in flight on its object when the deadline passed.
    expect(await stubOf(hanging!).release()).toBe(1)
  })

  it("keeps input order when shards settle in another order", async () => {
    const shards = names(6)
    const settled: Array<string> = []
    const results = await federate(env.SHARD, shards, async (stub, shard) => {
      const value = await stub.slow(shard, (shards.length - shards.indexOf(shard)) * 30)
      settled.push(shard)
      return value
    }, { concurrency: shards.length })
    expect(settled).not.toEqual(shards)
    expect(results.map((r) => r.shard)).toEqual(shards)
    expect(results.map((r) => r.status === "fulfilled" && r.value)).toEqual(shards)
  })

  it.each([
    [3, 3],
    [undefined, 6]
  ])("holds a concurrency limit of %s (measured in flight: %s at most)", async (concurrency, expected) => {
    const shards = names(18)
    let inFlight = 0
    let maxInFlight = 0
    const results = await federate(env.SHARD, shards, async (stub, shard) => {
      inFlight++
      maxInFlight = Math.max(maxInFlight, inFlight)
      try {
        return await stub.slow(shard, 20)
      } finally {
        inFlight--
      }
    }, concurrency === undefined ? {} : { concurrency })
    expect(results.every((r) => r.status === "fulfilled")).toBe(true)
    expect(maxInFlight).toBe(expected)
    expect(inFlight).toBe(0)
  })

  it("retries errors marked retryable until one succeeds", async () => {
    const [shard] = names(1)
    const results = await federate(env.SHARD, [shard!], (stub) => stub.flaky(2), { retries: 3, retryDelayMs: 5 })
    expect(results).toEqual([{ shard, status: "fulfilled", value: 3 }])
    expect(await stubOf(shard!).attempts()).toBe(3)
  })

  it("gives up after `retries` extra attempts and reports the last error", async () => {
    const [shard] = names(1)
    const [result] = await federate(env.SHARD, [shard!], (stub) => stub.flaky(5), { retries: 2, retryDelayMs: 5 })
    expect(result).toMatchObject({ shard, status: "rejected", reason: { message: "transient failure 3", retryable: true } })
    expect(await stubOf(shard!).attempts()).toBe(3)
  })

  it("does not retry plain errors, overloaded errors, or anything when retries is 0", async () => {
    const [plain, overloaded, flaky] = names(3)
    const results = await federate(
      env.SHARD,
      [plain!, overloaded!],
      (stub, shard) => shard === plain ? stub.fail("not transient") : stub.overloaded(),
      { retries: 3, retryDelayMs: 5 }
    )
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"])
    expect(await stubOf(plain!).attempts()).toBe(1)
    expect(await stubOf(overloaded!).attempts()).toBe(1)
    const [once] = await federate(env.SHARD, [flaky!], (stub) => stub.flaky(1))
    expect(once!.status).toBe("rejected")
    expect(await stubOf(flaky!).attempts()).toBe(1)
  })

  it("federateWithErrors reports every failure as a FederationError with the original as cause", async () => {
    const [ok, plain, overloaded, transient] = names(4)
    const results = await federateWithErrors(env.SHARD, [ok!, plain!, overloaded!, transient!], (stub, shard) =>
      shard === ok
        ? stub.echo("fine")
        : shard === plain
        ? stub.fail("plain failure")
        : shard === overloaded
        ? stub.overloaded()
        : stub.flaky(1))
    expect(results[0]).toEqual({ shard: ok, status: "fulfilled", value: "fine" })
    const reasons = results.slice(1).map((r) => r.status === "rejected" ? r.reason : undefined)
    for (const reason of reasons) expect(reason).toBeInstanceOf(FederationError)
    expect(reasons.map((r) => [r?.shard, r?.message, r?.retryable, r?.overloaded])).toEqual([
      [plain, "plain failure", false, false],
      [overloaded, "overloaded", true, true],
      [transient, "transient failure 1", true, false]
    ])
    expect(reasons[0]!.cause).toBeInstanceOf(Error)
    expect((reasons[0]!.cause as Error).message).toBe("plain failure")
  })

  it("federateWithFilter calls only the shards that pass, in input order", async () => {
    const [us1, eu1, us2] = names(3, "region")
    const shards = [`us:${us1}`, `eu:${eu1}`, `us:${us2}`]
    const results = await federateWithFilter(
      env.SHARD,
      shards,
      (name) => name.startsWith("us:"),
      (stub, shard) => stub.echo(shard)
    )
    expect(results).toEqual([
      { shard: shards[0], status: "fulfilled", value: shards[0] },
      { shard: shards[2], status: "fulfilled", value: shards[2] }
    ])
    expect(await stubOf(shards[1]!).attempts()).toBe(0)
    expect(await stubOf(shards[2]!).attempts()).toBe(1)
  })

  it("federateWithFilter reports a shard whose filter throws, and still calls the others", async () => {
    const [good, bad] = names(2)
    const results = await federateWithFilter(env.SHARD, [good!, bad!], (name) => {
      if (name === bad) throw new Error("filter broke")
      return true
    }, (stub, shard) => stub.echo(shard))
    expect(results[0]).toEqual({ shard: good, status: "fulfilled", value: good })
    expect(results[1]).toMatchObject({ shard: bad, status: "rejected", reason: { _tag: "FederationError", message: "filter broke" } })
    expect(await stubOf(bad!).attempts()).toBe(0)
  })

  it("resolves to [] for no shards and rejects invalid options with a RangeError", async () => {
    expect(await federate(env.SHARD, [], (stub) => stub.echo("x"))).toEqual([])
    for (const options of [{ concurrency: 0 }, { concurrency: 1.5 }, { retries: -1 }, { timeoutMs: 0 }, { retryDelayMs: -5 }]) {
      expect(() => federate(env.SHARD, ["x"], (stub) => stub.echo("x"), options)).toThrow(RangeError)
    }
  })
})

class RoomClosed extends Schema.TaggedError<RoomClosed>()("RoomClosed", { room: Schema.String }) {}

describe("Federation (Effect API)", () => {
  effect.effect("keeps typed failures typed and turns defects into FederationErrors", () =>
    Effect.gen(function*() {
      const [open, closed, broken] = names(3)
      const results = yield* Federation.federate(
        env.SHARD,
        [open!, closed!, broken!],
        (stub: DurableObjectStub<Shard>, shard) =>
          shard === closed
            ? Effect.fail(new RoomClosed({ room: shard }))
            : shard === broken
            ? Effect.die(new Error("bug"))
            : Effect.promise(() => stub.echo(shard)),
        { concurrency: 2 }
      )
      expect(results[0]).toEqual({ shard: open, status: "fulfilled", value: open })
      const closedReason = results[1]!.status === "rejected" ? results[1]!.reason : undefined
      expect(closedReason).toBeInstanceOf(RoomClosed)
      const brokenReason = results[2]!.status === "rejected" ? results[2]!.reason : undefined
      expect(brokenReason).toBeInstanceOf(FederationError)
      expect(brokenReason).toMatchObject({ shard: broken, message: "bug", retryable: false })
    }))

  effect.live("retries an Effect failing with a retryable FederationError", () =>
    Effect.gen(function*() {
      const [shard] = names(1)
      let attempts = 0
      const results = yield* Federation.federateWithErrors(
        env.SHARD,
        [shard!],
        (_stub, name) =>
          ++attempts < 3
            ? Effect.fail(new FederationError({ shard: name, message: "busy", retryable: true, overloaded: false }))
            : Effect.succeed(attempts),
        { retries: 5, retryDelayMs: 1 }
      )
      expect(results).toEqual([{ shard, status: "fulfilled", value: 3 }])
    }))
})

describe("federation end to end: one announcement, several rooms", () => {
  const joined = async (room: string) => {
    const client = await connect(`/room/${room}`)
    await client.next((f) => f.type === "WELCOME")
    client.send({ type: "JOIN", payload: { room: "announcements" } })
    await client.next((f) => f.type === "DATA")
    return client
  }
  const announcements = (client: TestSocket) => client.next((f) => f.type === "ANNOUNCEMENT", 3000)

  it("ANNOUNCE federates to each named room, which publishes to its own subscribers", async () => {
    const [a, b, c, elsewhere, hq] = names(5, "announce-room")
    const [inA, inB, inC, inElsewhere, sender] = await Promise.all([a!, b!, c!, elsewhere!, hq!].map(joined))
    const secondInA = await joined(a!)

    sender!.send({ type: "ANNOUNCE", payload: { rooms: [a, b, c], text: "maintenance at noon" } })

    const announced = await sender!.next((f) => f.type === "ANNOUNCED", 3000)
    expect(announced.payload.results).toEqual([
      { room: a, status: "fulfilled", matched: 2 },
      { room: b, status: "fulfilled", matched: 1 },
      { room: c, status: "fulfilled", matched: 1 }
    ])
    for (const client of [inA!, secondInA, inB!, inC!]) {
      expect((await announcements(client)).payload).toEqual({ text: "maintenance at noon" })
    }
    const stray = [...await inElsewhere!.drain(), ...await sender!.drain()]
    expect(stray.filter((f) => f.type === "ANNOUNCEMENT")).toEqual([])
  })
})
