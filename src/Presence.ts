/**
 * Presence: who is in each topic, kept by the library (SPEC §15).
 *
 * A connection enters a topic's presence with a key (a user id, say) and a
 * small JSON meta; every connection with one key is one member, with one
 * meta per connection (tabs, devices). Subscribers of the topic get its
 * whole presence once (`$presence`) and then diffs (`$presence_diff`),
 * collected for a few milliseconds so a burst of joins costs one frame per
 * subscriber. Entries live in each socket's attachment, so they survive
 * hibernation, and vanish with their socket: after a restart only the
 * sockets that came back are present. With `recovery`, a socket that
 * dropped keeps its place for `awayMs` while it may resume.
 *
 * Turn it on with the handler's `presence` option; handlers reach it as
 * `ctx.presence` (promises) or this `Presence` service (Effects).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Connection } from "./Connection"
import { TopicError } from "./Errors"
import type { PresenceMembers, PresenceMeta } from "./Protocol"
import { checkTopic } from "./PubSub"

export type { PresenceMembers, PresenceMeta } from "./Protocol"

/**
 * The `presence` option: `true` for the defaults, or any of these.
 *
 * @since 0.1.0
 * @category models
 */
export interface PresenceOptions {
  /** Largest meta, in bytes of its JSON (default 1024). */
  readonly maxMetaBytes?: number
  /** Longest key, in characters (default 256). */
  readonly maxKeyLength?: number
  /** How long changes are collected before one diff goes out (default 20 ms). */
  readonly flushMs?: number
  /** Past this many members a topic's subscribers get only the count (default: never). */
  readonly countsOnlyAbove?: number
  /**
   * With `recovery`: how long a dropped connection keeps its place while its
   * session may be resumed (default: the session's `sessionTtlMs`).
   */
  readonly awayMs?: number
}

/**
 * @since 0.1.0
 * @category constants
 */
export const defaults = { maxMetaBytes: 1024, maxKeyLength: 256, flushMs: 20 } as const

/**
 * Presence for the current connection (track, update, untrack) and any
 * topic of the instance (list). `track` is authorized like a subscription
 * (`authorizeSubscribe`), and a connection only ever tracks itself.
 *
 * @since 0.1.0
 * @category services
 */
export class Presence extends Context.Service<Presence, {
  /** Enters (or re-enters, with a new key or meta) the topic's presence; fails with a `TopicError`. */
  readonly track: (topic: string, key: string, meta?: unknown) => Effect.Effect<void, TopicError, Connection>
  /** Replaces the connection's meta in the topic: subscribers get it as a diff. */
  readonly update: (topic: string, meta: unknown) => Effect.Effect<void, TopicError, Connection>
  /** Leaves the topic's presence (nothing if not tracked there). */
  readonly untrack: (topic: string) => Effect.Effect<void, never, Connection>
  /** The topic's members, by key. */
  readonly list: (topic: string) => Effect.Effect<PresenceMembers>
}>()("durable-ws/Presence") {
  /**
   * An in-memory presence for unit tests of Effect code: one entry per
   * clientId and topic (its `ref` is the clientId), with the topic and key
   * checks; no diffs are sent.
   *
   * @since 0.1.0
   * @category layers
   */
  static readonly layerTest: Layer.Layer<Presence> = Layer.sync(Presence, () => {
    const topics = new Map<string, Map<string, { readonly key: string; readonly meta: unknown }>>()
    const of = (topic: string) => {
      let entries = topics.get(topic)
      if (entries === undefined) topics.set(topic, entries = new Map())
      return entries
    }
    const put = (topic: string, clientId: string, key: string, meta: unknown) => {
      const problem = checkTopic(topic) ?? (key.length === 0 ? "A presence key must be a non-empty string" : undefined)
      if (problem !== undefined) return Effect.fail(new TopicError({ topic, code: "INVALID_ARGUMENT", message: problem }))
      of(topic).set(clientId, { key, meta })
      return Effect.void
    }
    return Presence.of({
      track: (topic, key, meta) => Effect.flatMap(Connection, (c) => put(topic, c.clientId, key, meta ?? null)),
      update: (topic, meta) =>
        Effect.flatMap(Connection, (c) => {
          const entry = of(topic).get(c.clientId)
          return entry === undefined
            ? Effect.fail(new TopicError({ topic, code: "INVALID_ARGUMENT", message: `Not tracked in "${topic}"` }))
            : put(topic, c.clientId, entry.key, meta)
        }),
      untrack: (topic) => Effect.map(Connection, (c) => void of(topic).delete(c.clientId)),
      list: (topic) =>
        Effect.sync(() => {
          const members: Record<string, Array<PresenceMeta>> = {}
          for (const [ref, { key, meta }] of of(topic)) (members[key] ??= []).push({ ref, meta })
          return members
        })
    })
  })
}
