/**
 * The chat example: one Durable Object per room (`/ws?room=name`), Effect
 * handlers, and the room's history in SQLite through the `ChatHistory`
 * service. The page and its script are static assets (see wrangler.toml).
 *
 * Who is in the room is the library's presence: a member is a name (two
 * tabs with one name are one member), tracked on joining. With `recovery`,
 * a member whose connection drops (a network change, a deploy) keeps its
 * place while the page resumes its session; one that does not come back
 * within `awayMs` leaves, and one that closed for good or was removed
 * leaves at once. The pages hear it all as presence diffs.
 *
 * Announcements (`/announce` in any room) go to every room: the
 * `announcements` topic spans the rooms' objects, with its home in an
 * `Announcements` object (`SpanningTopicHome`), so every member of every
 * room gets them in one order, each once.
 */
import * as Effect from "effect/Effect"
import {
  CloseCodes,
  Connection,
  Connections,
  createRouter,
  Presence,
  PubSub,
  SpanningTopicHome,
  WebSocketDurableObject,
  WsError
} from "../../src/index"
import type { ConnectionContext } from "../../src/index"
import { ChatHistory } from "./History"
import type { ChatLine, Member } from "./protocol"
import {
  Announce,
  Announced,
  Join,
  joinHistory,
  Kick,
  Leave,
  LoadOlder,
  olderLimit,
  roomTopic,
  Said,
  Say,
  Typing,
  TypingChanged
} from "./protocol"

/** How many lines each room keeps. */
const historyLimit = 1000
/** How many recent lines a member gets on joining; older ones come with LOAD_OLDER. */
/** LOAD_OLDER reads at most this many lines, this many at a time, reporting progress after each chunk. */
const olderChunk = 10

/** Every member of every room is subscribed to this topic, which spans the rooms' objects. */
const announcementsTopic = "announcements"

/** How long a dropped member may take to come back before the others hear that they left. */
const awayMs = 5000

type ChatData = { name?: string }

const memberOf = (ctx: ConnectionContext<ChatData>): Member | undefined =>
  ctx.data.name === undefined || !ctx.topics.has(roomTopic) ? undefined : { clientId: ctx.clientId, name: ctx.data.name }

const requireMember = (ctx: ConnectionContext<ChatData>) => {
  const member = memberOf(ctx)
  return member === undefined
    ? Effect.fail(new WsError({ code: "FAILED_PRECONDITION", message: "Join the room first" }))
    : Effect.succeed(member)
}

/** Everyone in the room, read from the connections themselves, longest-present first: the host is the first. */
const present = Effect.gen(function*() {
  const connections = yield* Connections
  const list = yield* connections.list
  return list
    .flatMap((c): Array<Member & { readonly since: number }> =>
      typeof c.data["name"] === "string" && c.topics.includes(roomTopic)
        ? [{ clientId: c.clientId, name: c.data["name"], since: c.data.connectedAt }]
        : []
    )
    .sort((a, b) => a.since - b.since)
})

export const router = createRouter<ChatData, ChatHistory>()
  .rpc(Join, (ctx) =>
    Effect.gen(function*() {
      const connection = yield* Connection
      const pubsub = yield* PubSub
      const presence = yield* Presence
      const history = yield* ChatHistory
      const you = { clientId: ctx.clientId, name: ctx.payload.name }
      yield* connection.assignData({ name: you.name })
      // Subscribing sends this page the room's presence; tracking tells the others (a page reloaded on
      // a resumed session tracks the same name again: no change, nothing is announced).
      yield* pubsub.subscribe(roomTopic)
      yield* pubsub.subscribe(announcementsTopic)
      yield* presence.track(roomTopic, you.name, { clientId: you.clientId })
      ctx.reply({ you, history: yield* history.recent(joinHistory) })
    }))
  .on(Leave, (ctx) =>
    Effect.gen(function*() {
      const presence = yield* Presence
      const pubsub = yield* PubSub
      yield* presence.untrack(roomTopic)
      yield* pubsub.unsubscribe(roomTopic)
      yield* pubsub.unsubscribe(announcementsTopic)
    }))
  .on(Announce, (ctx) =>
    Effect.gen(function*() {
      const member = yield* requireMember(ctx)
      const pubsub = yield* PubSub
      const result = yield* pubsub.publish(announcementsTopic, Announced, { name: member.name, text: ctx.payload.text })
      if (!result.ok) return yield* new WsError({ code: result.error, message: result.message })
    }))
  .rpc(Say, (ctx) =>
    Effect.gen(function*() {
      const member = yield* requireMember(ctx)
      const history = yield* ChatHistory
      const pubsub = yield* PubSub
      const line = yield* history.append({ ...member, text: ctx.payload.text, sentAt: new Date() })
      // Published first: the sender's page shows the line before it hears the reply that confirms it.
      yield* pubsub.publish(roomTopic, Said, line)
      ctx.reply({ id: line.id })
    }))
  .on(Typing, (ctx) =>
    Effect.gen(function*() {
      const member = yield* requireMember(ctx)
      const pubsub = yield* PubSub
      yield* pubsub.publish(roomTopic, TypingChanged, { member, typing: ctx.payload.typing }, { excludeSelf: true })
    }))
  .rpc(LoadOlder, (ctx) =>
    Effect.gen(function*() {
      yield* requireMember(ctx)
      const history = yield* ChatHistory
      const total = Math.min(olderLimit, yield* history.countBefore(ctx.payload.before))
      let lines: Array<ChatLine> = []
      while (lines.length < total) {
        const chunk = yield* history.before(lines[0]?.id ?? ctx.payload.before, Math.min(olderChunk, total - lines.length))
        if (chunk.length === 0) break
        lines = [...chunk, ...lines]
        ctx.progress({ loaded: lines.length, total })
      }
      ctx.reply({ lines })
    }))
  .on(Kick, (ctx) =>
    Effect.gen(function*() {
      const me = yield* requireMember(ctx)
      const everyone = yield* present
      if (everyone[0]?.clientId !== me.clientId) {
        return yield* new WsError({ code: "PERMISSION_DENIED", message: "Only the room's host can remove members" })
      }
      const targets = everyone.filter((m) => m.name === ctx.payload.name && m.clientId !== me.clientId)
      if (targets.length === 0) {
        return yield* new WsError({ code: "NOT_FOUND", message: `No one called ${ctx.payload.name} is here` })
      }
      const connections = yield* Connections
      // A terminal close: the removed member leaves the room's presence at once.
      for (const target of targets) yield* connections.close(target.clientId, CloseCodes.Forbidden, `Removed by ${me.name}`)
    }))

/** One chat room. Sockets are hibernatable: an idle room costs nothing. */
export class ChatRoom extends WebSocketDurableObject(router, {
  layer: ChatHistory.layer(historyLimit),
  maxPayloadBytes: 16 * 1024,
  rateLimit: { capacity: 20, refillPerSecond: 5 },
  recovery: { sessionTtlMs: 10 * 60_000, maxAgeMs: 10 * 60_000 },
  presence: { awayMs },
  span: { topics: (topic) => topic === announcementsTopic, home: (env) => env.ANNOUNCEMENTS, edge: "CHAT" }
}) {}

/** The home of the `announcements` topic: it numbers, logs and delivers every announcement to the rooms. */
export class Announcements extends SpanningTopicHome {}

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
