/**
 * The Effect face of the client against real Durable Objects in workerd:
 * scoped lifetime, typed failures, Streams of messages, state, progress and
 * resumes, and reconnects driven by a Schedule.
 */
import { describe, expect, it } from "@effect/vitest"
import { env } from "cloudflare:workers"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import type { CloseDetails } from "../src/Client"
import { ConnectionClosedError, RequestInterrupted, ServerError, TimeoutError } from "../src/Client"
import * as ClientEffect from "../src/ClientEffect"
import { CloseCodes } from "../src/CloseCodes"
import { ValidationError } from "../src/Errors"
import { Echo, Echoed, FailRpc, Kick, Report, SlowRpc, Sum } from "./fixtures/client"
import { RCount, RJoin, RSaid, RWork } from "./fixtures/recovery"
import { eventually, workerdSockets } from "./helpers/clientSocket"
import { stubOf } from "./helpers/durable"

let n = 0
const options = (extra: Partial<ClientEffect.Options> = {}): ClientEffect.Options => ({
  url: `ws://client.test/effect-${n++}`,
  webSocket: workerdSockets().factory,
  heartbeat: false,
  reconnect: { initialDelayMs: 5, maxDelayMs: 20 },
  ...extra
})

/** Real time: the client's timers are the platform's, never the TestClock's. */
const wait = (ms: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, ms)))
const until = (check: () => boolean, what: string) => Effect.promise(() => eventually(check, what))

describe("ClientEffect", () => {
  it.effect("sends, requests and streams messages, typed, in a scope", () =>
    Effect.gen(function*() {
      const client = yield* ClientEffect.make(options())
      yield* client.connect
      const echoes = yield* client.messages(Echoed).pipe(Stream.take(2), Stream.runCollect, Effect.forkScoped)
      yield* Effect.yieldNow
      yield* client.send(Echo, { text: "a" })
      yield* client.send(Echo, { text: "b" })
      const sum = yield* client.request(Sum, { values: [1, 2, 3] })
      expect(sum).toEqual({ total: 6 })
      expect((yield* Fiber.join(echoes))).toEqual([{ text: "a" }, { text: "b" }])
    }).pipe(Effect.scoped))

  it.effect("fails with typed errors: ServerError, TimeoutError, ValidationError", () =>
    Effect.gen(function*() {
      const client = yield* ClientEffect.make(options())
      const refused = yield* Effect.flip(client.request(FailRpc, { code: "NOT_FOUND" }))
      expect(refused).toBeInstanceOf(ServerError)
      expect(refused).toMatchObject({ code: "NOT_FOUND", message: "refused: NOT_FOUND" })
      const late = yield* Effect.flip(client.request(SlowRpc, { ms: 200 }, { timeoutMs: 20 }))
      expect(late).toBeInstanceOf(TimeoutError)
      const invalid = yield* Effect.flip(client.send(Echo, { text: 1 } as never))
      expect(invalid).toBeInstanceOf(ValidationError)
      const caught = yield* client.request(FailRpc, { code: "PERMISSION_DENIED" }).pipe(
        Effect.catchTag("ServerError", (error) => Effect.succeed(error.code))
      )
      expect(caught).toBe("PERMISSION_DENIED")
    }).pipe(Effect.scoped))

  it.effect("streams an rpc's progress, then its reply", () =>
    Effect.gen(function*() {
      const client = yield* ClientEffect.make(options())
      const events = yield* client.requestStream(Report, { steps: 3, delayMs: 2 }).pipe(Stream.runCollect)
      expect(events).toEqual([
        { _tag: "Progress", progress: { done: 1, of: 3 } },
        { _tag: "Progress", progress: { done: 2, of: 3 } },
        { _tag: "Progress", progress: { done: 3, of: 3 } },
        { _tag: "Reply", reply: { steps: 3 } }
      ])
    }).pipe(Effect.scoped))

  it.effect("gives up on an interrupted request: a queued one is never sent", () =>
    Effect.gen(function*() {
      const sockets = workerdSockets()
      sockets.down = true
      const client = yield* ClientEffect.make(options({ webSocket: sockets.factory }))
      const fiber = yield* client.request(Sum, { values: [1] }).pipe(Effect.forkScoped)
      yield* until(() => client.client.queued === 1, "the queued request")
      yield* Fiber.interrupt(fiber)
      expect(client.client.queued).toBe(0)
      sockets.down = false
      yield* client.connect
      yield* client.request(Sum, { values: [2] })
      expect(sockets.sent.map((frame) => JSON.parse(frame).payload)).toEqual([{ values: [2] }])
    }).pipe(Effect.scoped))

  it.effect("streams the connection's state, and closes the client with its scope", () =>
    Effect.gen(function*() {
      let release: () => void = () => {}
      const gate = new Promise<void>((resolve) => (release = resolve))
      const url = `ws://client.test/effect-${n++}`
      const client = yield* ClientEffect.make(options({ url: () => gate.then(() => url) }))
      const states = yield* client.state.pipe(Stream.runCollect, Effect.forkScoped)
      yield* Effect.yieldNow
      release()
      yield* client.connect
      yield* client.send(Kick, { code: CloseCodes.Forbidden, reason: "banned" })
      expect((yield* Fiber.join(states))).toEqual(["connecting", "open", "closed"])
      const after = yield* Effect.flip(client.send(Echo, { text: "too late" }))
      expect(after).toBeInstanceOf(ConnectionClosedError)
    }).pipe(Effect.scoped))

  it.effect("closes the client when the scope ends", () =>
    Effect.gen(function*() {
      const client = yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* ClientEffect.make(options())
        yield* client.connect
        return client
      }))
      expect(client.client.state).toBe("closed")
      expect(yield* Effect.flip(client.request(Sum, { values: [] }))).toBeInstanceOf(ConnectionClosedError)
    }))

  it.effect("reconnects on a Schedule fed the close, and gives up when it ends", () =>
    Effect.gen(function*() {
      const sockets = workerdSockets()
      const seen: Array<CloseDetails> = []
      const client = yield* ClientEffect.make(options({
        webSocket: sockets.factory,
        reconnect: Schedule.spaced("5 millis").pipe(
          Schedule.setInputType<CloseDetails>(),
          Schedule.while(({ input }) => (seen.push(input), input.code !== 4001)),
          Schedule.upTo({ times: 3 })
        )
      }))
      const closes = yield* client.closes.pipe(Stream.runCollect, Effect.forkScoped)
      yield* Effect.yieldNow
      yield* client.connect
      yield* client.send(Kick, { code: 1012, reason: "restarting" })
      yield* until(() => sockets.opened() === 2 && client.client.state === "open", "the scheduled reconnect")
      // The Schedule refuses to go on after a 4001, which the default policy would retry.
      yield* client.send(Kick, { code: 4001, reason: "stop" })
      const all = (yield* Fiber.join(closes))
      expect(all.map((c) => [c.code, c.willReconnect])).toEqual([[1012, true], [4001, false]])
      expect(all[0]!.retryInMs).toBe(5)
      expect(seen.map((c) => c.code)).toEqual([1012, 4001])
      expect(sockets.opened()).toBe(2)
    }).pipe(Effect.scoped))

  it.effect("stops after the Schedule's last recurrence", () =>
    Effect.gen(function*() {
      const sockets = workerdSockets()
      sockets.down = true
      const client = yield* ClientEffect.make(options({
        webSocket: sockets.factory,
        reconnect: Schedule.spaced("1 millis").pipe(Schedule.upTo({ times: 2 }))
      }))
      const error = yield* Effect.flip(client.connect)
      expect(error).toBeInstanceOf(ConnectionClosedError)
      expect(sockets.opened()).toBe(3)
    }).pipe(Effect.scoped))

  it.effect("provides the client as a service through a layer", () =>
    Effect.gen(function*() {
      const client = yield* ClientEffect.Client
      expect(yield* client.request(Sum, { values: [20, 22] })).toEqual({ total: 42 })
    }).pipe(Effect.provide(ClientEffect.layer(options()))))

  it.effect("fails with RequestInterrupted when a restart cut the request's handler off", () =>
    Effect.gen(function*() {
      const name = `effect-interrupted-${n++}`
      const key = `effect-cut-${n}`
      const client = yield* ClientEffect.make({
        url: `ws://recovery.test/${name}`,
        webSocket: workerdSockets(env.RECOVERING).factory,
        heartbeat: false,
        recovery: true,
        reconnect: { initialDelayMs: 5, maxDelayMs: 20 }
      })
      yield* client.connect
      const request = yield* Effect.forkScoped(Effect.flip(client.request(RCount, { key, hangMs: 10_000 })))
      // A stub of a reset object is broken: each call takes a fresh one.
      const stub = () => stubOf(env.RECOVERING, name)
      const runs = () => stub().fetch(`http://test.local/count?key=${key}`).then((res) => res.json<{ runs: number }>())
      yield* Effect.promise(async () => {
        for (let i = 0; i < 100 && (await runs()).runs === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20))
        await stub().fetch("http://test.local/abort").catch(() => undefined)
      })
      const error = yield* Fiber.join(request)
      expect(error).toBeInstanceOf(RequestInterrupted)
      expect((yield* Effect.promise(runs)).runs).toBe(1)
    }).pipe(Effect.scoped))

  it.effect("resumes with recovery and streams the resume", () =>
    Effect.gen(function*() {
      const name = `effect-recovery-${n++}`
      const sockets = workerdSockets(env.RECOVERING)
      const client = yield* ClientEffect.make({
        url: `ws://recovery.test/${name}`,
        webSocket: sockets.factory,
        heartbeat: false,
        recovery: true,
        reconnect: Schedule.spaced("5 millis")
      })
      const said = yield* client.messages(RSaid).pipe(Stream.take(3), Stream.runCollect, Effect.forkScoped)
      const resumed = yield* client.resumes.pipe(Stream.take(1), Stream.runCollect, Effect.forkScoped)
      yield* Effect.yieldNow
      yield* client.send(RJoin, { topic: "t" })
      yield* client.request(RWork, { text: "sync" })
      const control = (path: string, body?: unknown) =>
        Effect.promise(() =>
          stubOf(env.RECOVERING, name).fetch(`http://test.local/${path}`, {
            method: body === undefined ? "GET" : "POST",
            body: body === undefined ? null : JSON.stringify(body)
          })
        )
      yield* control("publish", { topic: "t", texts: ["a"] })
      sockets.down = true
      yield* control("drop")
      yield* until(() => client.client.state === "reconnecting", "reconnecting")
      yield* control("publish", { topic: "t", texts: ["b", "c"] })
      sockets.down = false
      const info = (yield* Fiber.join(resumed))
      expect(info).toEqual([{ recovered: true, replayed: 2, gaps: [], truncated: false }])
      expect((yield* Fiber.join(said)).map((m) => m.text)).toEqual(["a", "b", "c"])
      yield* wait(1)
    }).pipe(Effect.scoped))
})
