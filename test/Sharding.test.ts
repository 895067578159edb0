import { env } from "cloudflare:test"
import { describe, expect, it } from "vitest"
import * as Sharding from "../src/Sharding"
import { getShardedDoId, getShardedStub, topicToDoName } from "../src/index"

describe("topicToDoName", () => {
  it("reproduces the documented examples", () => {
    expect(topicToDoName("room:general", 10)).toBe("ws-router-2")
    expect(topicToDoName("room:random", 10)).toBe("ws-router-7")
  })

  it("matches djb2 golden values (32-bit unsigned, UTF-16 code units)", () => {
    expect(Sharding.djb2("")).toBe(5381)
    expect(Sharding.djb2("a")).toBe(177670)
    expect(Sharding.djb2("room:general")).toBe(3304557402)
    expect(Sharding.djb2("room:random")).toBe(2868591997)
    // Long enough to wrap past 2^32 many times; a float product would lose the low bits.
    expect(Sharding.djb2("x".repeat(64))).toBe(1854143237)
    // A surrogate pair hashes as its two code units.
    expect(Sharding.djb2("😀")).toBe(7743522)
  })

  it("is stable, honours the prefix, and stays within the shard count", () => {
    expect(topicToDoName("room:general", 10)).toBe(topicToDoName("room:general", 10))
    expect(topicToDoName("room:general", 10, "chat")).toBe("chat-2")
    expect(topicToDoName("anything", 1)).toBe("ws-router-0")
    for (let i = 0; i < 200; i++) {
      const shard = Number(topicToDoName(`topic-${i}`, 7).slice("ws-router-".length))
      expect(shard).toBeGreaterThanOrEqual(0)
      expect(shard).toBeLessThan(7)
    }
  })

  // A fixed-seed generator: the topics are arbitrary but the same on every run.
  const randomTopics = (count: number) => {
    let seed = 42
    const next = () => seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0
    const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789:-_"
    return Array.from({ length: count }, () => {
      let topic = ""
      for (let length = 4 + next() % 20; topic.length < length;) topic += alphabet[next() % alphabet.length]
      return topic
    })
  }

  it.each([
    ["sequential", Array.from({ length: 1000 }, (_, i) => `room:${i}`)],
    ["arbitrary", randomTopics(1000)]
  ])("spreads 1000 %s topics evenly over 10 shards", (_, topics) => {
    const counts = new Map<string, number>()
    for (const topic of topics) {
      const name = topicToDoName(topic, 10)
      counts.set(name, (counts.get(name) ?? 0) + 1)
    }
    expect(counts.size).toBe(10)
    // 100 expected per shard; chi-square with 9 degrees of freedom stays below 27.9 at p = 0.001.
    let chiSquare = 0
    for (const count of counts.values()) chiSquare += (count - 100) ** 2 / 100
    expect(chiSquare).toBeLessThan(27.9)
  })

  it("moves most topics when the shard count changes", () => {
    let moved = 0
    for (let i = 0; i < 1000; i++) {
      if (topicToDoName(`room:${i}`, 10).slice(10) !== topicToDoName(`room:${i}`, 11).slice(10)) moved++
    }
    expect(moved).toBeGreaterThan(800)
  })

  it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])("throws a RangeError for %s shards", (shards) => {
    expect(() => topicToDoName("room:general", shards)).toThrow(RangeError)
    expect(() => getShardedDoId(env.SHARD, "room:general", shards)).toThrow(RangeError)
    expect(() => getShardedStub(env, "room:general", shards)).toThrow(RangeError)
  })
})

describe("getShardedDoId / getShardedStub against a real namespace", () => {
  it("getShardedDoId is idFromName of the shard name, from a namespace or an env's ROUTER", () => {
    const expected = env.ROUTER.idFromName("ws-router-2")
    expect(getShardedDoId(env.ROUTER, "room:general", 10).equals(expected)).toBe(true)
    expect(getShardedDoId(env, "room:general", 10).equals(expected)).toBe(true)
    expect(getShardedDoId(env.ROUTER, "room:general", 10, "chat").equals(env.ROUTER.idFromName("chat-2"))).toBe(true)
  })

  it("getShardedStub reaches the object that owns the topic", async () => {
    const viaEnv = getShardedStub(env, "room:random", 10)
    const viaNamespace = getShardedStub(env.SHARD, "room:random", 10)
    const owner = env.ROUTER.idFromName("ws-router-7").toString()
    expect(await viaEnv.whoami()).toBe(owner)
    expect(await viaNamespace.whoami()).toBe(owner)
    expect(await getShardedStub(env, "room:general", 10).whoami()).not.toBe(owner)
  })

  it("topics on the same shard share one object", async () => {
    const topics = Array.from({ length: 40 }, (_, i) => `room:${i}`).filter((t) => topicToDoName(t, 4) === "ws-router-1")
    expect(topics.length).toBeGreaterThan(1)
    const ids = await Promise.all(topics.map((topic) => getShardedStub(env, topic, 4).whoami()))
    expect(new Set(ids)).toEqual(new Set([env.ROUTER.idFromName("ws-router-1").toString()]))
  })

  it("rejects an argument that is neither a namespace nor an env with ROUTER", () => {
    expect(() => getShardedDoId({} as never, "room:general", 10)).toThrow(TypeError)
  })
})

describe("jump consistent hashing", () => {
  it("matches the reference implementation's vectors", () => {
    // The vectors every port of Lamping and Veach's algorithm checks against.
    expect(Sharding.jumpHash(1n, 1)).toBe(0)
    expect(Sharding.jumpHash(42n, 57)).toBe(43)
    expect(Sharding.jumpHash(0xDEAD10CCn, 1)).toBe(0)
    expect(Sharding.jumpHash(0xDEAD10CCn, 666)).toBe(361)
    expect(Sharding.jumpHash(256n, 1024)).toBe(520)
    // Keys are taken modulo 2^64, as the reference's uint64.
    expect(Sharding.jumpHash(42n + 2n ** 64n, 57)).toBe(43)
  })

  it("hashes topics with 64-bit FNV-1a over UTF-8", () => {
    expect(Sharding.fnv1a64("")).toBe(0xcbf29ce484222325n)
    expect(Sharding.fnv1a64("a")).toBe(0xaf63dc4c8601ec8cn)
    expect(Sharding.fnv1a64("foobar")).toBe(0x85944171f73967e8n)
  })

  it("moves only the topics that land on an added shard, about 1/(n+1) of them", () => {
    const topics = Array.from({ length: 5000 }, (_, i) => `room:${i}`)
    for (const shards of [10, 100]) {
      let moved = 0
      for (const topic of topics) {
        const before = Sharding.topicToConsistentDoName(topic, shards)
        const after = Sharding.topicToConsistentDoName(topic, shards + 1)
        if (before === after) continue
        moved++
        expect(after).toBe(`ws-router-${shards}`)
      }
      const expected = topics.length / (shards + 1)
      expect(moved).toBeGreaterThan(expected * 0.7)
      expect(moved).toBeLessThan(expected * 1.3)
    }
    // djb2 modulo, by contrast, moves most topics.
    const djb2Moved = topics.filter((topic) => topicToDoName(topic, 10) !== topicToDoName(topic, 11)).length
    expect(djb2Moved).toBeGreaterThan(topics.length / 2)
  })

  it("refuses a shard count that is not a positive integer", () => {
    for (const shards of [0, -1, 1.5, Number.NaN]) {
      expect(() => Sharding.topicToConsistentDoName("room", shards)).toThrow(RangeError)
    }
  })
})
