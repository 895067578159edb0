import { env, evictDurableObject, runInDurableObject } from "cloudflare:test"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { afterEach, describe, expect, it } from "vitest"
import type { Client } from "../src/Client"
import { createClient, ServerError } from "../src/Client"
import { Storage } from "../src/Storage"
import { ChatHistory } from "../examples/chat/History"
import type { ChatLine } from "../examples/chat/protocol"
import {
  Announce,
  Announced,
  Join,
  Kick,
  Leave,
  LoadOlder,
  roomTopic,
  Said,
  Say,
  Typing,
  TypingChanged
} from "../examples/chat/protocol"
import { CloseCodes } from "../src/CloseCodes"
import type { CloseInfo } from "../src/Client"
import { eventually, workerdSockets } from "./helpers/clientSocket"
import { eventually as eventuallyHolds, openOn } from "./helpers/durable"

let n = 0
const clients: Array<Client> = []

afterEach(() => {
  for (const client of clients.splice(0)) client.close()
})

/** A member of the example chat, seen through the typed client. */
const member = (room: string, reconnect = false) => {
  const sockets = workerdSockets(env.CHAT)
  const client = createClient({
    url: `ws://chat.test/${room}`,
    webSocket: sockets.factory,
    reconnect: reconnect ? { initialDelayMs: 5, maxDelayMs: 20 } : false,
    heartbeat: false
  })
  clients.push(client)
  const said: Array<ChatLine> = []
  // Names as the room's presence reports them joining and leaving.
  const joined: Array<string> = []
  const left: Array<string> = []
  const presence = client.presence(roomTopic)
  const typing: Array<{ name: string; typing: boolean }> = []
  const errors: Array<unknown> = []
  const closes: Array<CloseInfo> = []
  const announced: Array<string> = []
  client.on(Announced, ({ name, text }) => void announced.push(`${name}: ${text}`))
  client.onClose((info) => void closes.push(info))
  client.on(Said, (line) => void said.push(line))
  presence.onChange((change) => {
    joined.push(...change.joined)
    left.push(...change.left)
  })
  client.on(TypingChanged, ({ member, typing: t }) => void typing.push({ name: member.name, typing: t }))
  client.onError((error) => void errors.push(error))
  void client.connect()
  const members = () => Object.keys(presence.members).sort()
  return { client, sockets, said, joined, left, members, typing, errors, closes, announced }
}

const room = () => `chat-${n++}`

describe("chat example", () => {
  it("delivers announcements to every room, in order, and not to a member who left", async () => {
    const rooms = [room(), room(), room()]
    const [ada, grace, linus] = rooms.map((name) => member(name))
    await ada!.client.request(Join, { name: "Ada" })
    await grace!.client.request(Join, { name: "Grace" })
    await linus!.client.request(Join, { name: "Linus" })
    linus!.client.send(Leave, undefined)
    // Leave is a message: the Join after it on another socket proves nothing, so wait for its effect.
    const home = env.ANNOUNCEMENTS.get(env.ANNOUNCEMENTS.idFromName("announcements"))
    const linusRoom = env.CHAT.idFromName(rooms[2]!).toString()
    const { edges } = await eventuallyHolds(() => home.status("announcements"), ({ edges }) => !edges.includes(linusRoom))
    expect(edges).toContain(env.CHAT.idFromName(rooms[0]!).toString())
    ada!.client.send(Announce, { text: "maintenance at noon" })
    grace!.client.send(Announce, { text: "all clear" })
    await eventually(() => ada!.announced.length === 2 && grace!.announced.length === 2, "ANNOUNCED in both rooms")
    expect(ada!.announced).toEqual(grace!.announced)
    expect([...ada!.announced].sort()).toEqual(["Ada: maintenance at noon", "Grace: all clear"])
    expect(linus!.announced).toEqual([])
  })

  it("joins, announces the newcomer, and delivers messages to everyone in the room", async () => {
    const name = room()
    const ada = member(name)
    const grace = member(name)
    const first = await ada.client.request(Join, { name: "Ada" })
    expect(first.history).toEqual([])
    await eventually(() => ada.members().length === 1, "Ada in the presence")
    expect(ada.members()).toEqual(["Ada"])
    await grace.client.request(Join, { name: "Grace" })
    await eventually(() => ada.joined.length === 2 && grace.members().length === 2, "Grace joined")
    expect(ada.joined).toEqual(["Ada", "Grace"])
    expect(grace.members()).toEqual(["Ada", "Grace"])

    await ada.client.request(Say, { text: "hello" })
    await eventually(() => ada.said.length === 1 && grace.said.length === 1, "SAID on both")
    expect(grace.said[0]).toMatchObject({ name: "Ada", text: "hello", clientId: first.you.clientId })
    expect(grace.said[0]!.sentAt).toBeInstanceOf(Date)
  })

  it("sends the history on join, oldest first, and keeps it across eviction", async () => {
    const name = room()
    const ada = member(name)
    await ada.client.request(Join, { name: "Ada" })
    for (const text of ["one", "two", "three"]) await ada.client.request(Say, { text })
    await eventually(() => ada.said.length === 3, "three SAID")
    await evictDurableObject(env.CHAT.get(env.CHAT.idFromName(name)), { webSockets: "close" })
    const late = member(name)
    const { history } = await late.client.request(Join, { name: "Late" })
    expect(history.map((line) => line.text)).toEqual(["one", "two", "three"])
    expect(history.map((line) => line.id)).toEqual(ada.said.map((line) => line.id))
  })

  it("keeps only the last N lines in storage", async () => {
    const stub = env.CHAT.get(env.CHAT.idFromName(room()))
    const texts = await runInDurableObject(stub, (_instance, state) =>
      Effect.runPromise(
        Effect.gen(function*() {
          const history = yield* ChatHistory
          for (let i = 1; i <= 7; i++) {
            yield* history.append({ clientId: "c", name: "n", text: `line ${i}`, sentAt: new Date(i) })
          }
          return (yield* history.recent(10)).map((line) => line.text)
        }).pipe(Effect.provide(ChatHistory.layer(3).pipe(Layer.provide(Storage.layer(state.storage)))))
      ))
    expect(texts).toEqual(["line 5", "line 6", "line 7"])
  })

  it("refuses to post before joining, with a typed ServerError", async () => {
    const stranger = member(room())
    const refused = stranger.client.request(Say, { text: "hi?" })
    await expect(refused).rejects.toBeInstanceOf(ServerError)
    await expect(refused).rejects.toMatchObject({ code: "FAILED_PRECONDITION", message: "Join the room first" })
    await expect(stranger.client.request(Join, { name: " padded " })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" })
  })

  it("shares typing with the others and announces who leaves or disconnects", async () => {
    const name = room()
    const ada = member(name)
    const grace = member(name)
    const linus = member(name)
    await ada.client.request(Join, { name: "Ada" })
    await grace.client.request(Join, { name: "Grace" })
    await linus.client.request(Join, { name: "Linus" })
    // Presence diffs are collected for a moment: a join and a leave within one batch cancel out.
    await eventually(() => ada.members().length === 3, "everyone present")
    grace.client.send(Typing, { typing: true })
    await eventually(() => ada.typing.length === 1, "TYPING_CHANGED")
    expect(ada.typing[0]).toEqual({ name: "Grace", typing: true })

    grace.client.send(Leave)
    await eventually(() => ada.left.length === 1, "Grace left after LEAVE")
    expect(ada.left[0]).toBe("Grace")
    linus.client.close()
    await eventually(() => ada.left.length === 2, "Linus left after closing")
    expect(ada.left[1]).toBe("Linus")
    expect(grace.typing).toEqual([])
    expect(grace.left).toEqual([])
  })

  it("lets the host remove a member, who is told not to come back and does not", async () => {
    const name = room()
    const ada = member(name, true)
    const grace = member(name, true)
    const linus = member(name, true)
    await ada.client.request(Join, { name: "Ada" })
    await grace.client.request(Join, { name: "Grace" })
    await linus.client.request(Join, { name: "Linus" })
    // A join and a leave inside one presence batch cancel out: let everyone be seen first.
    await eventually(() => grace.members().length === 3, "everyone present")
    // Only the longest-present member (Ada) may remove others.
    grace.client.send(Kick, { name: "Linus" })
    await eventually(() => grace.errors.length === 1, "the refusal")
    expect(grace.errors[0]).toMatchObject({ code: "PERMISSION_DENIED" })
    ada.client.send(Kick, { name: "Nobody" })
    await eventually(() => ada.errors.length === 1, "NOT_FOUND")
    expect(ada.errors[0]).toMatchObject({ code: "NOT_FOUND" })

    ada.client.send(Kick, { name: "Linus" })
    await eventually(() => linus.client.state === "closed", "Linus removed")
    expect(linus.closes).toEqual([{ code: CloseCodes.Forbidden, reason: "Removed by Ada", willReconnect: false }])
    await eventually(() => grace.left.length === 1, "Linus left")
    expect(grace.left).toEqual(["Linus"])
    await new Promise((resolve) => setTimeout(resolve, 80))
    expect(linus.sockets.opened()).toBe(1)
    expect(grace.members()).toEqual(["Ada", "Grace"])
    expect(ada.closes).toEqual([])
  })

  it("a removed member cannot come back by resuming its session", async () => {
    const name = room()
    const ada = member(name)
    await ada.client.request(Join, { name: "Ada" })
    // Linus on a raw socket, so the resume credentials are at hand.
    const linus = await openOn(env.CHAT, name)
    const session = (await linus.next((f) => f.type === "$session")).payload as { sessionId: string; token: string; seq: number }
    linus.send({ type: "JOIN", meta: { correlationId: "join" }, payload: { name: "Linus" } })
    await linus.next((f) => f.type === "JOINED")
    ada.client.send(Kick, { name: "Linus" })
    expect((await linus.closed()).code).toBe(CloseCodes.Forbidden)
    const back = await openOn(env.CHAT, name, { query: `?dws_resume=${session.sessionId}.${session.token}.${session.seq}` })
    expect((await back.next((f) => f.type === "$session")).payload.sessionId).not.toBe(session.sessionId)
    expect((await back.next((f) => f.type === "$resumed")).payload).toEqual({ recovered: false, reason: "UNKNOWN_SESSION" })
    // Not a member any more: it may not speak.
    back.send({ type: "SAY", meta: { correlationId: "back" }, payload: { text: "I am back" } })
    expect((await back.next((f) => f.type === "RPC_ERROR")).payload.code).toBe("FAILED_PRECONDITION")
  })

  it("loads older history in chunks, reporting progress before the reply", async () => {
    const name = room()
    const seeded = env.CHAT.get(env.CHAT.idFromName(name))
    await runInDurableObject(seeded, (_instance, state) =>
      Effect.runPromise(
        Effect.gen(function*() {
          const history = yield* ChatHistory
          for (let i = 1; i <= 45; i++) {
            yield* history.append({ clientId: "c", name: "n", text: `line ${i}`, sentAt: new Date(i) })
          }
        }).pipe(Effect.provide(ChatHistory.layer(1000).pipe(Layer.provide(Storage.layer(state.storage)))))
      ))
    const ada = member(name)
    const { history } = await ada.client.request(Join, { name: "Ada" })
    expect(history.map((l) => l.text)).toEqual(Array.from({ length: 20 }, (_, i) => `line ${i + 26}`))
    const progress: Array<string> = []
    const { lines } = await ada.client.request(LoadOlder, { before: history[0]!.id }, {
      onProgress: ({ loaded, total }) => void progress.push(`${loaded}/${total}`)
    })
    expect(progress).toEqual(["10/25", "20/25", "25/25"])
    expect(lines.map((l) => l.text)).toEqual(Array.from({ length: 25 }, (_, i) => `line ${i + 1}`))
    const none = await ada.client.request(LoadOlder, { before: lines[0]!.id }, { onProgress: () => progress.push("more") })
    expect(none.lines).toEqual([])
    expect(progress.length).toBe(3)
    const stranger = member(name)
    await expect(stranger.client.request(LoadOlder, { before: 1000 })).rejects.toMatchObject({ code: "FAILED_PRECONDITION" })
  })
})
