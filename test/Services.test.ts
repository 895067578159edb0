import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { Connection, Connections, message, PubSub, Storage } from "../src/index"

const Note = message("NOTE", { text: Schema.String })

/** The kind of Effect a handler would run: it only sees services. */
const postNote = (text: string) =>
  Effect.gen(function*() {
    const connection = yield* Connection
    const pubsub = yield* PubSub
    const storage = yield* Storage
    yield* pubsub.subscribe("notes")
    yield* storage.put(`note:${connection.clientId}`, text)
    yield* connection.send(Note, { text: `saved ${text}` })
    return yield* pubsub.publish("notes", Note, { text })
  })

describe("test layers", () => {
  it.effect("run handler logic against Connection, PubSub and Storage test layers", () => {
    const sent: Array<{ type: string; payload: unknown }> = []
    const published: Array<{ topic: string; type: string; payload: unknown }> = []
    return Effect.gen(function*() {
      const result = yield* postNote("hello")
      expect(result).toEqual({ ok: true, matched: 1 })
      expect(sent).toEqual([{ type: "NOTE", payload: { text: "saved hello" } }])
      expect(published).toEqual([{ topic: "notes", type: "NOTE", payload: { text: "hello" } }])
      const storage = yield* Storage
      expect(yield* storage.get("note:u1", Schema.String)).toBe("hello")
      const invalid = yield* PubSub.use((p) => p.publish("notes", Note, { text: 1 } as never))
      expect(invalid.ok).toBe(false)
    }).pipe(
      Effect.provide(
        Layer.mergeAll(Connection.layerTest({ clientId: "u1", sent }), PubSub.layerTest(published), Storage.layerTest())
      )
    )
  })

  it.effect("reports storage failures as StorageError", () =>
    Effect.gen(function*() {
      const storage = yield* Storage
      const error = yield* Effect.flip(storage.sql("SELECT 1"))
      expect(error._tag).toBe("StorageError")
      expect(error.code).toBe("UNAVAILABLE")
      const bad = yield* Effect.flip(
        Effect.flatMap(storage.put("n", 5), () => storage.get("n", Schema.String))
      )
      expect(bad._tag).toBe("StorageError")
    }).pipe(Effect.provide(Storage.layerTest())))

  it.effect("lists and messages a fixed set of connections", () => {
    const sent: Array<{ clientId: string; type: string; payload: unknown }> = []
    const infos = ["a", "b", "c"].map((clientId) => ({ clientId, data: { clientId, connectedAt: 0 }, topics: [] }))
    return Effect.gen(function*() {
      const connections = yield* Connections
      expect(yield* connections.count).toBe(3)
      expect(yield* connections.send("b", Note, { text: "hi" })).toBe(true)
      expect(yield* connections.send("zz", Note, { text: "hi" })).toBe(false)
      expect(yield* connections.broadcast(Note, { text: "all" }, { exclude: ["a"] })).toBe(2)
      expect(sent.map((s) => s.clientId)).toEqual(["b", "b", "c"])
    }).pipe(Effect.provide(Connections.layerTest(infos, sent)))
  })
})
