/**
 * The chat example: one Durable Object per room (`/ws?room=name`), Effect
 * handlers, and the room's history in SQLite through the `ChatHistory`
 * service. The page and its script are static assets (see wrangler.toml).
 */
import * as Effect from "effect/Effect"
import { Connection, Connections, createRouter, PubSub, WebSocketDurableObject, WsError } from "../../src/index"
import type { ConnectionContext } from "../../src/index"
import { ChatHistory } from "./History"
import type { Member } from "./protocol"
import { Join, Leave, MemberJoined, MemberLeft, Said, Say, Typing, TypingChanged } from "./protocol"

/** How many lines each room keeps and sends to whoever joins. */
const historyLimit = 50

/** Every member of a room is subscribed to this topic of the room's object. */
const roomTopic = "room"

type ChatData = { name?: string }

const memberOf = (ctx: ConnectionContext<ChatData>): Member | undefined =>
  ctx.data.name === undefined || !ctx.topics.has(roomTopic) ? undefined : { clientId: ctx.clientId, name: ctx.data.name }

const requireMember = (ctx: ConnectionContext<ChatData>) => {
  const member = memberOf(ctx)
  return member === undefined
    ? Effect.fail(new WsError({ code: "FAILED_PRECONDITION", message: "Join the room first" }))
    : Effect.succeed(member)
}

/** Everyone in the room, read from the connections themselves (so it survives hibernation). */
const members = Effect.gen(function*() {
  const connections = yield* Connections
  const list = yield* connections.list
  return list.flatMap((c): Array<Member> =>
    typeof c.data["name"] === "string" && c.topics.includes(roomTopic)
      ? [{ clientId: c.clientId, name: c.data["name"] }]
      : []
  )
})

export const router = createRouter<ChatData, ChatHistory>()
  .rpc(Join, (ctx) =>
    Effect.gen(function*() {
      const connection = yield* Connection
      const pubsub = yield* PubSub
      const history = yield* ChatHistory
      const you = { clientId: ctx.clientId, name: ctx.payload.name }
      yield* connection.assignData({ name: you.name })
      yield* pubsub.subscribe(roomTopic)
      ctx.reply({ you, members: yield* members, history: yield* history.recent })
      yield* pubsub.publish(roomTopic, MemberJoined, { member: you }, { excludeSelf: true })
    }))
  .on(Leave, (ctx) =>
    Effect.gen(function*() {
      const member = memberOf(ctx)
      if (member === undefined) return
      const pubsub = yield* PubSub
      yield* pubsub.unsubscribe(roomTopic)
      yield* pubsub.publish(roomTopic, MemberLeft, { member })
    }))
  .on(Say, (ctx) =>
    Effect.gen(function*() {
      const member = yield* requireMember(ctx)
      const history = yield* ChatHistory
      const pubsub = yield* PubSub
      const line = yield* history.append({ ...member, text: ctx.payload.text, sentAt: new Date() })
      yield* pubsub.publish(roomTopic, Said, line)
    }))
  .on(Typing, (ctx) =>
    Effect.gen(function*() {
      const member = yield* requireMember(ctx)
      const pubsub = yield* PubSub
      yield* pubsub.publish(roomTopic, TypingChanged, { member, typing: ctx.payload.typing }, { excludeSelf: true })
    }))
  .onClose((ctx) =>
    Effect.gen(function*() {
      const member = memberOf(ctx)
      if (member === undefined) return
      const pubsub = yield* PubSub
      yield* pubsub.publish(roomTopic, MemberLeft, { member })
    }))

/** One chat room. Sockets are hibernatable: an idle room costs nothing. */
export class ChatRoom extends WebSocketDurableObject(router, {
  layer: ChatHistory.layer(historyLimit),
  maxPayloadBytes: 16 * 1024,
  rateLimit: { capacity: 20, refillPerSecond: 5 }
}) {}

interface ChatEnv {
  readonly CHAT: DurableObjectNamespace<ChatRoom>
}

const roomName = /^[\w-]{1,64}$/

export default {
  fetch(request, env) {
    const url = new URL(request.url)
    if (url.pathname !== "/ws") return new Response("Not found", { status: 404 })
    const room = url.searchParams.get("room") ?? "lobby"
    if (!roomName.test(room)) return new Response("Room names are 1-64 letters, digits, - or _", { status: 400 })
    return env.CHAT.get(env.CHAT.idFromName(room)).fetch(request)
  }
} satisfies ExportedHandler<ChatEnv>
