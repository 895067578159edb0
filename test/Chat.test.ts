import { env, evictDurableObject, runInDurableObject } from "cloudflare:test"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { afterEach, describe, expect, it } from "vitest"
import type { Client } from "../src/Client"
import { createClient, ServerError } from "../src/Client"
import { Storage } from "../src/Storage"
import { ChatHistory } from "../examples/chat/History"
import type { ChatLine, Member } from "../examples/chat/protocol"
import { Join, Leave, MemberJoined, MemberLeft, Said, Say, Typing, TypingChanged } from "../examples/chat/protocol"
import { eventually, workerdSockets } from "./helpers/clientSocket"

let n = 0
const clients: Array<Client> = []

afterEach(() => {
  for (const client of clients.splice(0)) client.close()
})

/** A member of the example chat, seen through the typed client. */
const member = (room: string) => {
  const client = createClient({
    url: `ws://chat.test/${room}`,
    webSocket: workerdSockets(env.CHAT).factory,
    reconnect: false,
    heartbeat: false
  })
  clients.push(client)
  const said: Array<ChatLine> = []
  const joined: Array<Member> = []
  const left: Array<Member> = []
  const typing: Array<{ name: string; typing: boolean }> = []
  const errors: Array<unknown> = []
  client.on(Said, (line) => void said.push(line))
  client.on(MemberJoined, ({ member }) => void joined.push(member))
  client.on(MemberLeft, ({ member }) => void left.push(member))
  client.on(TypingChanged, ({ member, typing: t }) => void typing.push({ name: member.name, typing: t }))
  client.onError((error) => void errors.push(error))
  void client.connect()
  return { client, said, joined, left, typing, errors }
}

const room = () => `chat-${n++}`

describe("chat example", () => {
  it("joins, announces the newcomer, and delivers messages to everyone in the room", async () => {
    const name = room()
    const ada = member(name)
    const grace = member(name)
    const first = await ada.client.request(Join, { name: "Ada" })
    expect(first.members.map((m) => m.name)).toEqual(["Ada"])
    expect(first.history).toEqual([])
    const second = await grace.client.request(Join, { name: "Grace" })
    expect(second.members.map((m) => m.name).sort()).toEqual(["Ada", "Grace"])
    await eventually(() => ada.joined.length === 1, "MEMBER_JOINED")
    expect(ada.joined[0]).toEqual(second.you)

    ada.client.send(Say, { text: "hello" })
    await eventually(() => ada.said.length === 1 && grace.said.length === 1, "SAID on both")
    expect(grace.said[0]).toMatchObject({ name: "Ada", text: "hello", clientId: first.you.clientId })
    expect(grace.said[0]!.sentAt).toBeInstanceOf(Date)
  })

  it("sends the history on join, oldest first, and keeps it across eviction", async () => {
    const name = room()
    const ada = member(name)
    await ada.client.request(Join, { name: "Ada" })
    for (const text of ["one", "two", "three"]) ada.client.send(Say, { text })
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
          return (yield* history.recent).map((line) => line.text)
        }).pipe(Effect.provide(ChatHistory.layer(3).pipe(Layer.provide(Storage.layer(state.storage)))))
      ))
    expect(texts).toEqual(["line 5", "line 6", "line 7"])
  })

  it("refuses to post before joining, with a typed ServerError", async () => {
    const stranger = member(room())
    stranger.client.send(Say, { text: "hi?" })
    await eventually(() => stranger.errors.length === 1, "an error")
    expect(stranger.errors[0]).toBeInstanceOf(ServerError)
    expect(stranger.errors[0]).toMatchObject({ code: "FAILED_PRECONDITION", message: "Join the room first" })
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
    grace.client.send(Typing, { typing: true })
    await eventually(() => ada.typing.length === 1, "TYPING_CHANGED")
    expect(ada.typing[0]).toEqual({ name: "Grace", typing: true })

    grace.client.send(Leave)
    await eventually(() => ada.left.length === 1, "MEMBER_LEFT after LEAVE")
    expect(ada.left[0]!.name).toBe("Grace")
    linus.client.close()
    await eventually(() => ada.left.length === 2, "MEMBER_LEFT after a disconnect")
    expect(ada.left[1]!.name).toBe("Linus")
    expect(grace.typing).toEqual([])
    expect(grace.left.map((m) => m.name)).toEqual([])
  })
})
