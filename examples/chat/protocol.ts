/**
 * The chat's messages, shared by the Durable Object and the page: both
 * sides validate against the same schemas.
 */
import * as Schema from "effect/Schema"
import { message, rpc } from "../../src/Message"

/** A display name: trimmed, 1 to 32 characters. */
export const Name = Schema.String.check(Schema.isTrimmed(), Schema.isMinLength(1), Schema.isMaxLength(32))

/** A message body: 1 to 2000 characters. */
export const Text = Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(2000))

export const Member = Schema.Struct({ clientId: Schema.String, name: Schema.String })
export type Member = typeof Member.Type

/** A stored chat line. `sentAt` travels as epoch millis and is a `Date` on both ends. */
export const ChatLine = Schema.Struct({
  id: Schema.Number,
  clientId: Schema.String,
  name: Schema.String,
  text: Schema.String,
  sentAt: Schema.DateFromMillis
})
export type ChatLine = typeof ChatLine.Type

/** How many recent lines a join brings; a page that got this many may load older ones. */
export const joinHistory = 20

/** The most lines one "Load older messages" brings. */
export const olderLimit = 100

/** Every member of a room is subscribed to this topic of the room's object; its presence is who is here. */
export const roomTopic = "room"

/** A member's meta in the room's presence (its key is the member's name): the connection it came with. */
export const PresenceMeta = Schema.Struct({ clientId: Schema.String })

/**
 * Joins the room under a name; the reply carries the recent history. Who
 * is here arrives as the room topic's presence.
 */
export const Join = rpc("JOIN", { name: Name }, "JOINED", {
  you: Member,
  history: Schema.Array(ChatLine)
})

/** Leaves the room but keeps the connection. */
export const Leave = message("LEAVE")

/**
 * Says a line. An rpc, so the page knows the line arrived (its reply is the
 * line's id) and keeps it, visibly pending, until it did.
 */
export const Say = rpc("SAY", { text: Text }, "HEARD", { id: Schema.Number })

/** Sent when the user starts or stops typing. */
export const Typing = message("TYPING", { typing: Schema.Boolean })

/** Broadcast: a new chat line (the sender gets it too, with its id and time). */
export const Said = message("SAID", ChatLine)

export const TypingChanged = message("TYPING_CHANGED", { member: Member, typing: Schema.Boolean })

/**
 * The room's host (its longest-present member) removes everyone of that
 * name: their sockets close with `CloseCodes.Forbidden`, so their pages
 * stay away instead of reconnecting.
 */
export const Kick = message("KICK", { name: Name })

/** Lines older than `before` (an id), up to 100, read in chunks with progress; oldest first. */
export const LoadOlder = rpc("LOAD_OLDER", { before: Schema.Number }, "OLDER", { lines: Schema.Array(ChatLine) }, {
  progress: { loaded: Schema.Number, total: Schema.Number }
})

/** Sent to every room at once: `/announce <text>` in any room (a spanning topic, see worker.ts). */
export const Announce = message("ANNOUNCE", { text: Text })

/** Broadcast on the site-wide announcements topic, in every room, in one order. */
export const Announced = message("ANNOUNCED", { name: Schema.String, text: Schema.String })
