/**
 * Presence on the client, both faces, against the presence fixture in
 * workerd: the view's state and change events (promise face), the current
 * state and a Stream of changes (Effect face), and a resync after a
 * reconnect that reports who went away meanwhile.
 */
import { describe, expect, it } from "@effect/vitest"
import { env } from "cloudflare:workers"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import type { PresenceChange } from "../src/Client"
import { createClient } from "../src/Client"
import * as ClientEffect from "../src/ClientEffect"
import { PJoin, PWatch } from "./fixtures/presence"
import { eventually, workerdSockets } from "./helpers/clientSocket"
import { stubOf } from "./helpers/durable"

let n = 0
const roomName = () => `client-presence-${n++}`
const url = (room: string, user: string) => `ws://presence.test/${room}?user=${user}`

const person = (room: string, user: string, reconnect = true) => {
  const sockets = workerdSockets(env.PRESENCE_ROOM)
  const client = createClient({
    url: url(room, user),
    webSocket: sockets.factory,
    heartbeat: false,
    reconnect: reconnect ? { initialDelayMs: 5, maxDelayMs: 20 } : false
  })
  void client.connect()
  return { client, sockets }
}

describe("client presence", () => {
  it("promise face: the members now, and each change as it comes", async () => {
    const room = roomName()
    const watcher = person(room, "watcher")
    const view = watcher.client.presence("lobby")
    const changes: Array<PresenceChange> = []
    view.onChange((change) => void changes.push(change))
    expect(view.known).toBe(false)
    await watcher.client.request(PWatch, { topic: "lobby" })
    await eventually(() => view.known, "the first state")
    expect(view.members).toEqual({})

    const ann = person(room, "ann")
    await ann.client.request(PJoin, { topic: "lobby", meta: { device: "laptop" } })
    await eventually(() => view.count === 1, "ann joined")
    expect(Object.keys(view.members)).toEqual(["ann"])
    expect(view.members["ann"]!.map((m) => m.meta)).toEqual([{ device: "laptop" }])
    expect(changes.at(-1)!.joined).toEqual(["ann"])

    ann.client.close()
    await eventually(() => view.count === 0, "ann left")
    expect(changes.at(-1)!.left).toEqual(["ann"])
    expect(changes.at(-1)!.leaves["ann"]!.map((m) => m.meta)).toEqual([{ device: "laptop" }])
    watcher.client.close()
  })

  it("a new state after a reconnect reports who left while the socket was down", async () => {
    const room = roomName()
    const watcher = person(room, "watcher")
    const view = watcher.client.presence("lobby")
    const changes: Array<PresenceChange> = []
    view.onChange((change) => void changes.push(change))
    // Watch on every open: a new socket subscribes again and gets the whole state.
    watcher.client.onOpen(() => void watcher.client.request(PWatch, { topic: "lobby" }))
    const ann = person(room, "ann", false)
    await ann.client.request(PJoin, { topic: "lobby" })
    await eventually(() => view.count === 1, "ann present")
    const seen = changes.length
    // The network drops everyone; ann does not come back, the watcher does.
    await stubOf(env.PRESENCE_ROOM, room).fetch("http://test.local/drop", { method: "POST" })
    await eventually(() => watcher.sockets.opened() === 2 && view.count === 0, "the watcher back, ann gone")
    expect(changes.slice(seen).flatMap((c) => c.left)).toEqual(["ann"])
    watcher.client.close()
  })

  it.effect("Effect face: the current state and a Stream of changes", () =>
    Effect.gen(function*() {
      const room = roomName()
      const client = yield* ClientEffect.make({
        url: url(room, "watcher"),
        webSocket: workerdSockets(env.PRESENCE_ROOM).factory,
        heartbeat: false
      })
      const presence = client.presence("lobby")
      const taken = yield* presence.changes.pipe(Stream.take(2), Stream.runCollect, Effect.forkChild)
      // Real time (the client's timers are the platform's): let the Stream register its listener.
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 10)))
      yield* client.request(PWatch, { topic: "lobby" })
      const ann = person(room, "ann")
      yield* Effect.promise(() => ann.client.request(PJoin, { topic: "lobby" }))
      const changes = yield* Fiber.join(taken)
      expect(changes[0]!.members).toEqual({})
      expect(changes[1]!.joined).toEqual(["ann"])
      expect(Object.keys(yield* presence.current)).toEqual(["ann"])
      ann.client.close()
    }))
})
