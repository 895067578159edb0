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
 * `ctx.presence` (promises) or this `Presence` service (Effects). A topic
 * that spans objects (`span`) has one member list across its edge objects,
 * kept by the topic's home; the models at the end of this module are what
 * edges and homes send each other for it.
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

/**
 * A change of a topic's presence: the metas that left, then those that
 * joined (an updated meta leaves and joins under one ref).
 *
 * @since 0.1.0
 * @category models
 */
export interface PresenceChanges {
  readonly joins: PresenceMembers
  readonly leaves: PresenceMembers
}

/**
 * What an edge tells a spanning topic's home about its own members
 * (SPEC §15 across objects). `epoch` names the edge's process (it changes
 * after an eviction or a restart) and `counter` numbers its updates within
 * it, so the home drops a stale or repeated update and asks for the whole
 * part on a gap. An update carries either the whole part (`members`) or a
 * change against the previous one (`changes`).
 *
 * @since 0.1.0
 * @category models
 */
export interface PresencePart {
  readonly epoch: string
  readonly counter: number
  readonly members?: PresenceMembers
  readonly changes?: PresenceChanges
}

/**
 * A home's answer to a {@link PresencePart}: taken, or `resync` (send the
 * whole part), or `refused` (past the home's bounds; not retried).
 *
 * @since 0.1.0
 * @category models
 */
export type PresencePartAnswer =
  | { readonly ok: true }
  | { readonly ok: false; readonly resync: true }
  | { readonly ok: false; readonly refused: string }

/**
 * What a home sends an edge about a spanning topic's members on every
 * object: the whole list at `version`, or the changes that lead to it (one
 * per version, the last one being `version`). `epoch` names the home's
 * process: versions of another epoch do not follow each other.
 *
 * @since 0.1.0
 * @category models
 */
export interface SpannedPresence {
  readonly epoch: string
  readonly version: number
  readonly members?: PresenceMembers
  readonly changes?: ReadonlyArray<PresenceChanges>
}

/**
 * An edge's answer to a home asking for its part: `same` when the home's
 * copy is current (`epoch` and `counter` match), else the whole part.
 *
 * @since 0.1.0
 * @category models
 */
export type PresencePartCheck =
  | { readonly same: true }
  | { readonly same: false; readonly part: PresencePart }

/**
 * An edge's acknowledgement of a {@link SpannedPresence}: the home's
 * epoch and version its copy of the members is now at, and the edge's own
 * epoch (a home holding this edge's part from another epoch asks for it).
 *
 * @since 0.1.0
 * @category models
 */
export interface SpannedPresenceAnswer {
  readonly epoch: string
  readonly version: number
  readonly edgeEpoch: string
}

/**
 * The presence methods a spanning topic's home calls on an edge.
 * `WebSocketDurableObject` classes have them; a class built with
 * `createDurableObjectHandler` forwards them to its handler.
 *
 * @since 0.1.0
 * @category models
 */
export interface PresenceEdge {
  /** The topic's members on every object changed (or here is the whole list). */
  deliverPresence(topic: string, update: SpannedPresence): Promise<SpannedPresenceAnswer>
  /** Whether the home's copy of this edge's part (`epoch`, `counter`) is current; else the whole part. */
  checkPresence(topic: string, epoch: string, counter: number): Promise<PresencePartCheck>
}
