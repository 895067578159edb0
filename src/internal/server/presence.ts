/**
 * Presence (SPEC §15): who is in each topic of one instance, derived only
 * from what outlives the process — each live socket's attachment (its
 * entries: topic → key, ref, meta) and, with recovery, a table of entries
 * whose socket is away but whose session may still be resumed.
 *
 * Nothing here survives a restart by itself: after one, the runtime's
 * socket list no longer holds the sockets that did not come back, so their
 * entries are simply not there (no ghost, no cleanup to wait for). Entries
 * of sockets that closed resumably are held for `awayMs` so a resume takes
 * its place back without a leave and a join; a terminal close leaves at once.
 *
 * Changes are not sent as they happen: each topic collects them and sends
 * one `$presence_diff` to its subscribers `flushMs` later, so a burst of
 * joins costs one frame per subscriber, not one per join. The library never
 * takes the object's alarm; held entries are expired by a timer while the
 * object is awake and checked on the first use after a wake or a restart.
 */
import * as Effect from "effect/Effect"
import { TopicError } from "../../Errors"
import type { PresenceChanges } from "../../Presence"
import type { PresenceMembers, PresenceMeta } from "../../Protocol"
import { encodePresenceDiff, encodePresenceState, utf8Length } from "../../Protocol"
import { checkTopic } from "../../PubSub"
import type { LiveConnection, PresenceEntry } from "./connection"
import { noPresence } from "./connection"
import type { Authorize } from "./pubsub"
import { allowed } from "./pubsub"

export interface ResolvedPresence {
  readonly maxKeyLength: number
  readonly maxMetaBytes: number
  readonly flushMs: number
  readonly countsOnlyAbove: number
  readonly awayMs: number
}

/** Where the diffs go and who may see a topic: the instance's pub/sub. */
export interface PresenceHost {
  readonly connections: () => Iterable<LiveConnection>
  readonly fanOut: (topic: string, frame: string) => number
  readonly authorize: Authorize | undefined
  /** With recovery: the object's SQLite, for entries held while their session may be resumed. */
  readonly sql: SqlStorage | undefined
}

/**
 * Where the presence of a topic that spans objects goes (SPEC §14–§15):
 * this object's changes go to the topic's home, and its subscribers hear
 * the members of every object, as the home sends them.
 */
export interface PresenceSpan {
  readonly spans: (topic: string) => boolean
  /** This object's own members of a spanning topic changed by `diff`. */
  readonly localChanged: (topic: string, diff: PresenceChanges) => void
  /** The topic's members across objects, as last heard from its home (none before the first). */
  readonly union: (topic: string) => PresenceMembers | undefined
}

export const absent: unique symbol = Symbol("absent")
type Slot = unknown | typeof absent

/** One topic: its members (key → ref → meta) and what changed since the last diff was sent. */
export class TopicMembers {
  readonly members = new Map<string, Map<string, unknown>>()
  /** ref → its key and its meta as subscribers last heard it. */
  readonly changes = new Map<string, { readonly key: string; readonly before: Slot }>()
  timer: ReturnType<typeof setTimeout> | undefined = undefined
  /** Subscribers last heard a count, not members. */
  counted = false

  get(key: string, ref: string): Slot {
    const metas = this.members.get(key)
    return metas !== undefined && metas.has(ref) ? metas.get(ref) : absent
  }

  set(key: string, ref: string, meta: Slot): void {
    if (!this.changes.has(ref)) this.changes.set(ref, { key, before: this.get(key, ref) })
    let metas = this.members.get(key)
    if (meta === absent) {
      metas?.delete(ref)
      if (metas?.size === 0) this.members.delete(key)
      return
    }
    if (metas === undefined) this.members.set(key, metas = new Map())
    metas.set(ref, meta)
  }

  /** Applies a diff: its leaves, then its joins. */
  apply(diff: PresenceChanges): void {
    for (const key of Object.keys(diff.leaves)) for (const { ref } of diff.leaves[key]!) this.set(key, ref, absent)
    for (const key of Object.keys(diff.joins)) for (const { ref, meta } of diff.joins[key]!) this.set(key, ref, meta)
  }

  /** Becomes `members`: what is not in it leaves, what is joins (by ref). */
  replace(members: PresenceMembers): void {
    const next = new Set<string>()
    for (const key of Object.keys(members)) for (const { ref } of members[key]!) next.add(ref)
    for (const [key, metas] of Array.from(this.members)) {
      for (const ref of Array.from(metas.keys())) if (!next.has(ref)) this.set(key, ref, absent)
    }
    for (const key of Object.keys(members)) for (const { ref, meta } of members[key]!) this.set(key, ref, meta)
  }

  snapshot(): PresenceMembers {
    const out: Record<string, Array<PresenceMeta>> = {}
    for (const [key, metas] of this.members) {
      defineOwn(out, key, Array.from(metas, ([ref, meta]) => ({ ref, meta })))
    }
    return out
  }

  /** The net change since the last diff; leaves first, then joins (an update is both, under one ref). */
  takeDiff(): PresenceChanges | undefined {
    const joins: Record<string, Array<PresenceMeta>> = {}
    const leaves: Record<string, Array<PresenceMeta>> = {}
    let any = false
    for (const [ref, { key, before }] of this.changes) {
      const after = this.get(key, ref)
      if (before === after || (before !== absent && after !== absent && sameJson(before, after))) continue
      any = true
      if (before !== absent) push(leaves, key, { ref, meta: before })
      if (after !== absent) push(joins, key, { ref, meta: after })
    }
    this.changes.clear()
    return any ? { joins, leaves } : undefined
  }
}

const sameJson = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b)

const defineOwn = (target: Record<string, unknown>, key: string, value: unknown): void => {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
}

const push = (into: Record<string, Array<PresenceMeta>>, key: string, meta: PresenceMeta): void => {
  const list = Object.hasOwn(into, key) ? into[key] : undefined
  if (list === undefined) defineOwn(into, key, [meta])
  else list.push(meta)
}

/** 64 random bits, hex: a ref tells one connection's meta from another's without naming the connection. */
export const newRef = (): string => Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("")

const rowKey = (clientId: string, topic: string): string => `${clientId}\u0000${topic}`

const invalid = (topic: string, message: string) => new TopicError({ topic, code: "INVALID_ARGUMENT", message })

/** Entries of one client whose socket is away, and until when they are held. */
interface Away {
  readonly entries: ReadonlyMap<string, PresenceEntry>
  readonly until: number
}

interface HeldRow extends Record<string, SqlStorageValue> {
  client: string
  topic: string
  key: string
  ref: string
  meta: string
  until: number | null
}

/**
 * The presence of one instance. Built lazily on first use after a wake
 * from the live sockets' attachments and the held entries.
 */
export class InstancePresence {
  private readonly topics = new Map<string, TopicMembers>()
  private readonly away = new Map<string, Away>()
  private awayTimer: ReturnType<typeof setTimeout> | undefined = undefined
  private indexed = false
  private tableReady = false
  /** Set when the instance has spanning topics: their presence is kept across objects by their home. */
  span: PresenceSpan | undefined = undefined

  constructor(private readonly host: PresenceHost, readonly options: ResolvedPresence) {}

  private topic(topic: string): TopicMembers {
    let members = this.topics.get(topic)
    if (members === undefined) this.topics.set(topic, members = new TopicMembers())
    return members
  }

  private get sql(): SqlStorage | undefined {
    const { sql } = this.host
    if (sql !== undefined && !this.tableReady) {
      this.tableReady = true
      sql.exec(
        `CREATE TABLE IF NOT EXISTS _dws_presence (client TEXT NOT NULL, topic TEXT NOT NULL, key TEXT NOT NULL, ref TEXT NOT NULL, meta TEXT NOT NULL, until INTEGER, PRIMARY KEY (client, topic))`
      )
    }
    return sql
  }

  /**
   * After a wake (or a restart) the index is empty: rebuild it from the live
   * attachments, then from the held entries. A remembered entry whose socket
   * is not live and that was never marked away lost its socket to a restart:
   * it is held from now on, like any away entry; an expired one leaves (live
   * subscribers still believe it present).
   */
  private ensureIndex(closing?: LiveConnection): void {
    if (this.indexed) return
    this.indexed = true
    const tracked = new Set<string>()
    const connections = closing === undefined ? this.host.connections() : [...this.host.connections(), closing]
    for (const connection of connections) {
      for (const [topic, entry] of connection.presence) {
        tracked.add(rowKey(connection.clientId, topic))
        this.topic(topic).set(entry.key, entry.ref, entry.meta)
      }
    }
    const sql = this.sql
    if (sql !== undefined) {
      const until = Date.now() + this.options.awayMs
      for (const row of sql.exec<HeldRow>("SELECT client, topic, key, ref, meta, until FROM _dws_presence").toArray()) {
        // A live socket's own attachment is the truth; a resuming one has none yet and takes these back.
        if (tracked.has(rowKey(row.client, row.topic))) continue
        if (row.until === null) sql.exec("UPDATE _dws_presence SET until = ? WHERE client = ? AND topic = ?", until, row.client, row.topic)
        const meta = JSON.parse(row.meta) as unknown
        const away = this.away.get(row.client)
        const entries = new Map(away?.entries).set(row.topic, { key: row.key, ref: row.ref, meta })
        this.away.set(row.client, { entries, until: Math.min(away?.until ?? Infinity, row.until ?? until) })
        this.topic(row.topic).set(row.key, row.ref, meta)
      }
    }
    // What was just read is what subscribers already heard: no diff for it.
    for (const members of this.topics.values()) members.changes.clear()
    this.expireAway()
  }

  /**
   * Any socket event after a wake: entries held past their time while the
   * object slept leave now (the library never takes the object's alarm).
   */
  wake(): void {
    this.ensureIndex()
  }

  // -- What handlers do --------------------------------------------------------

  track(connection: LiveConnection, topic: string, key: string, meta: unknown): Effect.Effect<void, TopicError> {
    const problem = checkTopic(topic) ?? this.checkKey(key)
    if (problem !== undefined) return Effect.fail(invalid(String(topic), problem))
    const metaProblem = this.checkMeta(meta)
    if (metaProblem !== undefined) return Effect.fail(invalid(topic, metaProblem))
    return allowed(this.host.authorize, connection, topic).pipe(
      Effect.flatMap((ok) =>
        ok
          ? Effect.suspend(() => {
            const old = connection.presence.get(topic)
            const entry: PresenceEntry = { key, ref: old !== undefined && old.key === key ? old.ref : newRef(), meta }
            return this.put(connection, topic, entry, old)
          })
          : Effect.fail(new TopicError({ topic, code: "PERMISSION_DENIED", message: `Not allowed in the presence of "${topic}"` }))
      )
    )
  }

  update(connection: LiveConnection, topic: string, meta: unknown): Effect.Effect<void, TopicError> {
    return Effect.suspend(() => {
      const old = connection.presence.get(topic)
      if (old === undefined) return Effect.fail(invalid(topic, `This connection is not tracked in "${topic}"`))
      const problem = this.checkMeta(meta)
      if (problem !== undefined) return Effect.fail(invalid(topic, problem))
      return this.put(connection, topic, { key: old.key, ref: old.ref, meta }, old)
    })
  }

  untrack(connection: LiveConnection, topic: string): void {
    this.ensureIndex()
    const old = connection.presence.get(topic)
    if (old === undefined) return
    const next = new Map(connection.presence)
    next.delete(topic)
    connection.persist(connection.data, connection.topicNames(), next)
    connection.presence = next
    this.sql?.exec("DELETE FROM _dws_presence WHERE client = ? AND topic = ?", connection.clientId, topic)
    this.change(topic, old.key, old.ref, absent)
  }

  /** The topic's members; for a spanning topic, those of every object once its home was heard from. */
  list(topic: string): PresenceMembers {
    return this.span?.spans(topic) === true ? this.span.union(topic) ?? this.localList(topic) : this.localList(topic)
  }

  /** The members of this object alone. */
  localList(topic: string): PresenceMembers {
    this.ensureIndex()
    return this.topics.get(topic)?.snapshot() ?? {}
  }

  private put(
    connection: LiveConnection,
    topic: string,
    entry: PresenceEntry,
    old: PresenceEntry | undefined
  ): Effect.Effect<void, TopicError> {
    // Built before this change lands in the attachment, so the change is a diff against what was.
    this.ensureIndex()
    const next = new Map(connection.presence).set(topic, entry)
    const tooLarge = connection.persist(connection.data, connection.topicNames(), next)
    if (tooLarge !== undefined) {
      return Effect.fail(new TopicError({ topic, code: "RESOURCE_EXHAUSTED", message: tooLarge.message }))
    }
    connection.presence = next
    this.sql?.exec(
      "INSERT INTO _dws_presence (client, topic, key, ref, meta, until) VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT (client, topic) DO UPDATE SET key = excluded.key, ref = excluded.ref, meta = excluded.meta, until = NULL",
      connection.clientId,
      topic,
      entry.key,
      entry.ref,
      JSON.stringify(entry.meta)
    )
    if (old !== undefined && old.ref !== entry.ref) this.change(topic, old.key, old.ref, absent)
    this.change(topic, entry.key, entry.ref, entry.meta)
    return Effect.void
  }

  private checkKey(key: unknown): string | undefined {
    if (typeof key !== "string" || key.length === 0) return "A presence key must be a non-empty string"
    return key.length > this.options.maxKeyLength
      ? `A presence key is at most ${this.options.maxKeyLength} characters`
      : undefined
  }

  private checkMeta(meta: unknown): string | undefined {
    let json: string | undefined
    try {
      json = JSON.stringify(meta)
    } catch {
      return "Presence meta must be JSON"
    }
    if (json === undefined) return "Presence meta must be JSON"
    const size = utf8Length(json)
    return size > this.options.maxMetaBytes
      ? `Presence meta is ${size} bytes serialized; the limit is ${this.options.maxMetaBytes}`
      : undefined
  }

  // -- What the engine tells it ------------------------------------------------

  /**
   * A socket closed. Its entries are held while its session may be resumed
   * (`resumable`), else they leave now. A socket replaced by a resume hands
   * its entries to the socket that took its session over.
   */
  closed(connection: LiveConnection, resumable: boolean): void {
    if (connection.presence.size === 0) return
    this.ensureIndex(connection)
    const entries = connection.presence
    connection.presence = noPresence
    if (connection.replaced) {
      for (const other of this.host.connections()) {
        if (other !== connection && other.clientId === connection.clientId) return this.adoptEntries(other, entries)
      }
    }
    if (resumable) {
      const until = Date.now() + this.options.awayMs
      this.away.set(connection.clientId, { entries, until })
      this.sql?.exec("UPDATE _dws_presence SET until = ? WHERE client = ?", until, connection.clientId)
      this.scheduleExpiry()
      return
    }
    this.sql?.exec("DELETE FROM _dws_presence WHERE client = ?", connection.clientId)
    for (const [topic, entry] of entries) this.change(topic, entry.key, entry.ref, absent)
  }

  /** A socket resumed a session: it takes back the entries held for it, with no diff. */
  resumed(connection: LiveConnection): void {
    this.ensureIndex()
    const away = this.away.get(connection.clientId)
    if (away === undefined) return
    this.away.delete(connection.clientId)
    this.adoptEntries(connection, away.entries)
  }

  /** A session ended while away (signed out, kicked): its held entries leave now. */
  ended(clientId: string): void {
    this.ensureIndex()
    const away = this.away.get(clientId)
    if (away === undefined) return
    this.away.delete(clientId)
    this.sql?.exec("DELETE FROM _dws_presence WHERE client = ?", clientId)
    for (const [topic, entry] of away.entries) this.change(topic, entry.key, entry.ref, absent)
  }

  private adoptEntries(connection: LiveConnection, entries: ReadonlyMap<string, PresenceEntry>): void {
    const next = new Map(entries)
    for (const [topic, entry] of connection.presence) next.set(topic, entry)
    // Past the attachment's limit the resumed socket keeps its own entries; the others leave.
    if (connection.persist(connection.data, connection.topicNames(), next) !== undefined) {
      for (const [topic, entry] of entries) {
        if (!connection.presence.has(topic)) {
          this.sql?.exec("DELETE FROM _dws_presence WHERE client = ? AND topic = ?", connection.clientId, topic)
          this.change(topic, entry.key, entry.ref, absent)
        }
      }
      return
    }
    connection.presence = next
    this.sql?.exec("UPDATE _dws_presence SET until = NULL WHERE client = ?", connection.clientId)
  }

  private scheduleExpiry(): void {
    if (this.awayTimer !== undefined) clearTimeout(this.awayTimer)
    this.awayTimer = undefined
    let next = Number.POSITIVE_INFINITY
    for (const away of this.away.values()) next = Math.min(next, away.until)
    if (next === Number.POSITIVE_INFINITY) return
    this.awayTimer = setTimeout(() => {
      this.awayTimer = undefined
      this.expireAway()
    }, Math.max(0, next - Date.now()))
  }

  private expireAway(): void {
    const now = Date.now()
    for (const [clientId, away] of this.away) {
      if (away.until <= now) this.ended(clientId)
    }
    this.scheduleExpiry()
  }

  // -- What subscribers hear ---------------------------------------------------

  private change(topic: string, key: string, ref: string, meta: Slot): void {
    const members = this.topic(topic)
    members.set(key, ref, meta)
    if (members.timer === undefined) members.timer = setTimeout(() => this.flush(topic), this.options.flushMs)
  }

  /**
   * Sends a topic's collected changes as one diff to each of its
   * subscribers; a spanning topic's go to its home instead.
   */
  flush(topic: string): void {
    const members = this.topics.get(topic)
    if (members === undefined) return
    if (members.timer !== undefined) clearTimeout(members.timer)
    members.timer = undefined
    const span = this.span
    if (span !== undefined && span.spans(topic)) {
      const diff = members.takeDiff()
      if (diff !== undefined) span.localChanged(topic, diff)
    } else {
      sendChanges(topic, members, this.options.countsOnlyAbove, (frame) => void this.host.fanOut(topic, frame))
    }
    if (members.members.size === 0 && members.changes.size === 0) this.topics.delete(topic)
  }

  /** The whole presence of a topic, as one subscriber gets it (on subscribe, on resume, on request). */
  stateFrame(topic: string): string {
    this.ensureIndex()
    return stateFrameOf(topic, this.topics.get(topic), this.options.countsOnlyAbove)
  }
}

/** A topic's whole presence as one frame: its members, or past `countsOnlyAbove` their count. */
export const stateFrameOf = (topic: string, members: TopicMembers | undefined, countsOnlyAbove: number): string => {
  const count = members?.members.size ?? 0
  return count > countsOnlyAbove
    ? encodePresenceState({ topic, count })
    : encodePresenceState({ topic, members: members?.snapshot() ?? {} })
}

/**
 * Sends the changes a topic collected as one frame: a diff, the count past
 * `countsOnlyAbove`, or the whole state when it falls back under it.
 */
export const sendChanges = (
  topic: string,
  members: TopicMembers,
  countsOnlyAbove: number,
  send: (frame: string) => void
): void => {
  const count = members.members.size
  const counted = count > countsOnlyAbove
  const diff = members.takeDiff()
  if (counted) {
    if (diff !== undefined || !members.counted) send(encodePresenceDiff({ topic, count }))
  } else if (members.counted) {
    // Back under the threshold: subscribers need the members again, not a diff against a count.
    send(encodePresenceState({ topic, members: members.snapshot() }))
  } else if (diff !== undefined) {
    send(encodePresenceDiff({ topic, ...diff }))
  }
  members.counted = counted
}
