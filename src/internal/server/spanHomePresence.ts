/**
 * The home's side of presence across objects (SPEC §15 over §14): one
 * member list for a spanning topic whose members sit on many edges.
 *
 * Each edge sends its own part (its members, by ref): whole when the home
 * may not hold it (the first update of the edge's process, after a resync,
 * in answer to a check), else as a change, which the home applies to the
 * refs it names alone, so a join costs the same on an edge of one member
 * and of ten thousand. The home keeps every part and their union, in
 * memory. Refs are random per connection, so the union of the parts is the
 * union of their refs, and a key on two edges leaves only when its last ref
 * does. Changes of the union are collected for `presenceFlushMs`,
 * numbered by a version, and sent to every edge registered for the topic's
 * messages: one call in flight per edge, acknowledged, retried with
 * backoff; an edge that is behind gets the changes it missed (the last few
 * are kept) or the whole list, made once for all the edges that need it.
 * Presence is state, not history: none of it goes into the topic's log.
 *
 * Which edges have a part is written to SQLite (one row per edge and topic,
 * written when its part appears and deleted when it goes). A restarted home
 * asks each of them for its whole part before it sends any change, so a
 * restart costs no leave/join flap. While a part has members, the home asks
 * its edge every `presenceCheckMs` whether its copy is current (a restarted
 * edge answers with its whole part, which is how its dead sockets leave),
 * and drops the part of an edge that has not answered for `presenceDropMs`.
 * An edge also names its process in every answer to a delivery, so one that
 * restarted is asked for its part at the next change of the union.
 */
import type {
  PresenceChanges,
  PresenceEdge,
  PresencePart,
  PresencePartAnswer,
  PresencePartCheck,
  SpannedPresence,
  SpannedPresenceAnswer
} from "../../Presence"
import type { PresenceMembers } from "../../Protocol"
import { utf8Length } from "../../Protocol"
import { checkTopic } from "../../PubSub"
import type { EdgeAddress, HomeSettings } from "../../SpanningTopic"
import { absent, newRef, TopicMembers } from "./presence"
import { edgeStubOf, namespaceOf } from "./bindings"
import { backOff, withTimeout } from "./spanHome"

/** What the presence part of a home needs from the home. */
export interface PresenceHomeHost {
  readonly state: DurableObjectState
  readonly env: Cloudflare.Env
  readonly settings: HomeSettings
  /** The edges registered for the topic's messages: they hear its presence. */
  readonly edgesOf: (topic: string) => ReadonlyArray<EdgeAddress>
  /** The edge `id`, if it is registered for the topic. */
  readonly edgeOf: (topic: string, id: string) => EdgeAddress | undefined
  /** Makes sure the home's alarm fires by `at`. */
  readonly watch: (at: number) => void
  readonly edge: (address: EdgeAddress) => PresenceEdge
}

/** A member's connection in a part, by ref: its key and meta. */
type Entry = { readonly key: string; readonly meta: unknown }

/** One edge's members of a topic, by ref, as the edge last said. */
interface Part {
  readonly address: EdgeAddress
  epoch: string
  counter: number
  readonly refs: Map<string, Entry>
  heardAt: number
  checking: boolean
}

/** How far an edge has the union, and its delivery state. */
interface Cursor {
  epoch: string
  version: number
  inFlight: boolean
  failures: number
  retryAt: number
}

/** A change of one part, read and checked: the refs that leave, then those that join (or change meta). */
interface Change {
  readonly leaves: ReadonlyMap<string, Entry>
  readonly joins: ReadonlyMap<string, Entry>
}

interface TopicState {
  readonly parts: Map<string, Part>
  /** ref → the edge whose part holds it: an edge changes only its own refs. */
  readonly owners: Map<string, string>
  readonly union: TopicMembers
  /** The union as a list, made at most once between two changes of it: every edge that needs the whole list gets this one. */
  snapshot: PresenceMembers | undefined
  version: number
  /** The last changes, by version, for edges a few versions behind. */
  readonly recent: Array<{ readonly version: number; readonly changes: PresenceChanges }>
  readonly cursors: Map<string, Cursor>
  timer: ReturnType<typeof setTimeout> | undefined
  /** Set while a restarted home asks the edges it knew for their parts: no change goes out meanwhile. */
  rebuilding: Promise<void> | undefined
}

interface PartRow {
  readonly [key: string]: SqlStorageValue
  readonly topic: string
  readonly edge: string
  readonly binding: string
}

const keptChanges = 32
const refPattern = /^[0-9a-f]{16}$/

/** The default way a home reaches an edge's presence methods: a stub through the edge's binding. */
export const presenceStubOf = (env: Cloudflare.Env, address: EdgeAddress): PresenceEdge => edgeStubOf<PresenceEdge>(env, address)

export class HomePresence {
  /** This process: versions of another epoch do not follow these. */
  private readonly epoch = newRef()
  private readonly topics = new Map<string, TopicState>()
  /** Whether the topics with stored parts were read back (the first alarm of a process does it). */
  private scanned = false
  private ready = false

  constructor(private readonly host: PresenceHomeHost) {}

  private get sql(): SqlStorage {
    const sql = this.host.state.storage.sql
    if (!this.ready) {
      this.ready = true
      sql.exec(
        "CREATE TABLE IF NOT EXISTS _dws_span_presence (topic TEXT NOT NULL, edge TEXT NOT NULL, binding TEXT NOT NULL, PRIMARY KEY (topic, edge)) WITHOUT ROWID"
      )
    }
    return sql
  }

  /** The topic's state; on first use after a restart, rebuilt from the edges that had a part. */
  private topic(topic: string): TopicState {
    let state = this.topics.get(topic)
    if (state !== undefined) return state
    state = {
      parts: new Map(),
      owners: new Map(),
      union: new TopicMembers(),
      snapshot: undefined,
      version: 0,
      recent: [],
      cursors: new Map(),
      timer: undefined,
      rebuilding: undefined
    }
    this.topics.set(topic, state)
    const rows = this.sql.exec<PartRow>("SELECT topic, edge, binding FROM _dws_span_presence WHERE topic = ?", topic).toArray()
    if (rows.length > 0) {
      for (const row of rows) state.parts.set(row.edge, this.newPart({ id: row.edge, binding: row.binding }))
      const settled = state
      state.rebuilding = Promise.all(rows.map((row) => this.check(topic, settled, row.edge))).then(() => {
        settled.rebuilding = undefined
        // The edges' copies are of the home's previous process: each gets the whole list once, and
        // tells its subscribers only what differs from what they were shown.
        settled.union.changes.clear()
        settled.version++
        this.deliverAll(topic, settled)
      })
      this.host.watch(Date.now() + this.host.settings.presenceCheckMs)
    }
    return state
  }

  private newPart(address: EdgeAddress): Part {
    return { address, epoch: "", counter: 0, refs: new Map(), heardAt: Date.now(), checking: false }
  }

  // -- What edges call ------------------------------------------------------------

  /** An edge's part changed (or here is all of it). */
  update(topic: string, address: EdgeAddress, part: PresencePart): PresencePartAnswer {
    const refused = this.refusal(topic, address)
    if (refused !== undefined) return { ok: false, refused }
    return this.take(topic, this.topic(topic), address, part)
  }

  /** The topic's members on every object, for an edge that has no copy (or a stale one). */
  async state(topic: string, address: EdgeAddress): Promise<SpannedPresence & { readonly members: PresenceMembers }> {
    const refused = this.refusal(topic, address)
    if (refused !== undefined) throw new TypeError(`durable-ws: ${refused}`)
    const state = this.topic(topic)
    if (state.rebuilding !== undefined) await state.rebuilding
    const cursor = this.cursor(state, address.id)
    cursor.epoch = this.epoch
    cursor.version = state.version
    return { epoch: this.epoch, version: state.version, members: this.snapshotOf(state) }
  }

  /** For tests and operators: the topic's version, the edges with a part, and its member count. */
  status(topic: string): { readonly version: number; readonly edges: ReadonlyArray<string>; readonly members: number } {
    const state = this.topic(topic)
    const edges = Array.from(state.parts.values()).filter((part) => part.refs.size > 0).map((part) => part.address.id)
    return { version: state.version, edges, members: state.union.members.size }
  }

  /** Only an edge of a bound namespace: an address that names no object of the binding is refused. */
  private refusal(topic: string, address: EdgeAddress): string | undefined {
    const problem = checkTopic(topic)
    if (problem !== undefined) return problem
    if (typeof address !== "object" || address === null || typeof address.id !== "string" || typeof address.binding !== "string") {
      return "an edge address is { id, binding }"
    }
    const namespace = namespaceOf(this.host.env, address.binding)
    if (namespace === undefined) return `"${address.binding}" is no Durable Object binding of this home's env`
    try {
      namespace.idFromString(address.id)
      return undefined
    } catch {
      return `"${address.id}" is no object of "${address.binding}"`
    }
  }

  private take(topic: string, state: TopicState, address: EdgeAddress, part: PresencePart): PresencePartAnswer {
    const known = state.parts.get(address.id)
    if (typeof part.epoch !== "string" || !Number.isSafeInteger(part.counter)) return { ok: false, refused: "malformed update" }
    const sameEpoch = known !== undefined && known.epoch === part.epoch
    // Stale or repeated: already taken.
    if (sameEpoch && part.counter <= known.counter) return { ok: true }
    if (part.members === undefined && (!sameEpoch || part.counter !== known.counter + 1)) return { ok: false, resync: true }
    let target: Part
    if (part.members !== undefined) {
      const refs = this.entriesOf(part.members)
      if (typeof refs === "string") return { ok: false, refused: refs }
      const foreign = this.foreignRef(state, address.id, refs.keys())
      if (foreign !== undefined) return { ok: false, refused: foreign }
      target = known ?? this.newPart(address)
      if (known === undefined) state.parts.set(address.id, target)
      this.replacePart(topic, state, target, refs)
    } else {
      // The next change of a part the home holds: only the refs it names are touched.
      target = known!
      const change = this.changeOf(target, part.changes ?? { joins: {}, leaves: {} })
      if (typeof change === "string") return { ok: false, refused: change }
      const foreign = this.foreignRef(state, address.id, change.joins.keys())
      if (foreign !== undefined) return { ok: false, refused: foreign }
      this.applyChange(topic, state, target, change)
    }
    target.epoch = part.epoch
    target.counter = part.counter
    target.heardAt = Date.now()
    return { ok: true }
  }

  /** Why an edge may not hold one of `refs` (another edge holds it), if so. */
  private foreignRef(state: TopicState, id: string, refs: Iterable<string>): string | undefined {
    for (const ref of refs) {
      const owner = state.owners.get(ref)
      if (owner !== undefined && owner !== id) return `ref ${ref} belongs to another edge`
    }
    return undefined
  }

  /** Reads a whole part, checking every bound; a string says why it is refused. */
  private entriesOf(members: PresenceMembers): Map<string, Entry> | string {
    const refs = new Map<string, Entry>()
    if (typeof members !== "object" || members === null) return "malformed members"
    for (const key of Object.keys(members)) {
      const metas = members[key]
      if (!Array.isArray(metas)) return "malformed members"
      for (const entry of metas as ReadonlyArray<{ ref: unknown; meta: unknown }>) {
        const problem = this.checkEntry(key, entry)
        if (problem !== undefined) return problem
        refs.set(entry.ref as string, { key, meta: entry.meta })
        if (refs.size > this.host.settings.maxPresencePerEdge) {
          return `more than ${this.host.settings.maxPresencePerEdge} members' connections from one edge`
        }
      }
    }
    return refs
  }

  /**
   * A change to a part, read with the bounds of a whole part, and refused
   * when the part it makes would pass them; a string says why. Costs the
   * change's size, not the part's.
   */
  private changeOf(part: Part, changes: PresenceChanges): Change | string {
    const leaves = this.entriesOf(changes.leaves)
    if (typeof leaves === "string") return leaves
    const joins = this.entriesOf(changes.joins)
    if (typeof joins === "string") return joins
    let size = part.refs.size
    for (const ref of leaves.keys()) if (part.refs.has(ref)) size--
    for (const ref of joins.keys()) if (!part.refs.has(ref) || leaves.has(ref)) size++
    if (size > this.host.settings.maxPresencePerEdge) {
      return `more than ${this.host.settings.maxPresencePerEdge} members' connections from one edge`
    }
    return { leaves, joins }
  }

  private checkEntry(key: string, entry: unknown): string | undefined {
    if (key.length === 0 || key.length > this.host.settings.maxPresenceKeyLength) {
      return `a presence key is 1 to ${this.host.settings.maxPresenceKeyLength} characters`
    }
    if (typeof entry !== "object" || entry === null) return "malformed members"
    const { ref, meta } = entry as { ref: unknown; meta: unknown }
    if (typeof ref !== "string" || !refPattern.test(ref)) return "malformed ref"
    let json: string | undefined
    try {
      json = JSON.stringify(meta)
    } catch {
      json = undefined
    }
    if (json === undefined) return "presence meta must be JSON"
    return utf8Length(json) > this.host.settings.maxPresenceMetaBytes
      ? `presence meta past ${this.host.settings.maxPresenceMetaBytes} bytes`
      : undefined
  }

  /** Makes `refs` the edge's part (a whole part): a change that leaves the refs it no longer holds and joins every one it does. */
  private replacePart(
    topic: string,
    state: TopicState,
    part: Part,
    refs: ReadonlyMap<string, Entry>
  ): void {
    const leaves = new Map<string, Entry>()
    for (const [ref, entry] of part.refs) if (!refs.has(ref)) leaves.set(ref, entry)
    this.applyChange(topic, state, part, { leaves, joins: refs })
  }

  /**
   * Applies a change to the edge's part, touching only the refs the change
   * names: a leave of a ref the part does not hold changes nothing, and a
   * ref leaves under the key the part holds it by, whatever key the change
   * says.
   */
  private applyChange(topic: string, state: TopicState, part: Part, change: Change): void {
    const wasEmpty = part.refs.size === 0
    for (const ref of change.leaves.keys()) {
      const old = part.refs.get(ref)
      // A ref that leaves and joins again is the join's below.
      if (old === undefined || change.joins.has(ref)) continue
      state.union.set(old.key, ref, absent)
      state.owners.delete(ref)
      part.refs.delete(ref)
    }
    for (const [ref, entry] of change.joins) {
      const old = part.refs.get(ref)
      if (old !== undefined && old.key !== entry.key) state.union.set(old.key, ref, absent)
      state.union.set(entry.key, ref, entry.meta)
      state.owners.set(ref, part.address.id)
      part.refs.set(ref, entry)
    }
    this.changed(topic, state, part, wasEmpty)
  }

  /** After a part changed: its row is written when it gained its first member or lost its last, and the change is sent. */
  private changed(topic: string, state: TopicState, part: Part, wasEmpty: boolean): void {
    state.snapshot = undefined
    if (wasEmpty && part.refs.size > 0) {
      this.sql.exec(
        "INSERT OR IGNORE INTO _dws_span_presence (topic, edge, binding) VALUES (?, ?, ?)",
        topic,
        part.address.id,
        part.address.binding
      )
      this.host.watch(Date.now() + this.host.settings.presenceCheckMs)
    } else if (part.refs.size === 0) {
      // An edge without members needs no watching: its next change sends its whole part.
      this.sql.exec("DELETE FROM _dws_span_presence WHERE topic = ? AND edge = ?", topic, part.address.id)
      if (state.parts.get(part.address.id) === part) state.parts.delete(part.address.id)
    }
    this.schedule(topic, state)
  }

  // -- What edges hear --------------------------------------------------------------

  private schedule(topic: string, state: TopicState): void {
    if (state.timer !== undefined || state.union.changes.size === 0) return
    state.timer = setTimeout(() => this.flush(topic, state), this.host.settings.presenceFlushMs)
  }

  private flush(topic: string, state: TopicState): void {
    state.timer = undefined
    if (state.rebuilding !== undefined) return
    const changes = state.union.takeDiff()
    if (changes === undefined) return
    state.version++
    state.recent.push({ version: state.version, changes })
    if (state.recent.length > keptChanges) state.recent.shift()
    this.deliverAll(topic, state)
  }

  private deliverAll(topic: string, state: TopicState): void {
    const edges = this.host.edgesOf(topic)
    const registered = new Set(edges.map((edge) => edge.id))
    for (const id of state.cursors.keys()) if (!registered.has(id)) state.cursors.delete(id)
    for (const edge of edges) this.pump(topic, state, edge)
  }

  /** The union as a list: after a rebuild every edge gets the whole list, and it is made once for all of them. */
  private snapshotOf(state: TopicState): PresenceMembers {
    return state.snapshot ??= state.union.snapshot()
  }

  private cursor(state: TopicState, id: string): Cursor {
    let cursor = state.cursors.get(id)
    if (cursor === undefined) state.cursors.set(id, cursor = { epoch: "", version: -1, inFlight: false, failures: 0, retryAt: 0 })
    return cursor
  }

  /** Sends one edge what it lacks of the union, one call at a time. */
  private pump(topic: string, state: TopicState, address: EdgeAddress): void {
    const cursor = this.cursor(state, address.id)
    const current = cursor.epoch === this.epoch
    if (cursor.inFlight || Date.now() < cursor.retryAt || (current && cursor.version >= state.version)) return
    const first = state.recent[0]
    const update: SpannedPresence = current && first !== undefined && cursor.version >= first.version - 1
      ? {
        epoch: this.epoch,
        version: state.version,
        changes: state.recent.filter((entry) => entry.version > cursor.version).map((entry) => entry.changes)
      }
      : { epoch: this.epoch, version: state.version, members: this.snapshotOf(state) }
    cursor.inFlight = true
    const call = Promise.resolve().then(() => this.host.edge(address).deliverPresence(topic, update))
    void withTimeout(call, this.host.settings.edgeTimeoutMs).then(
      (answer: SpannedPresenceAnswer) => {
        cursor.inFlight = false
        cursor.failures = 0
        cursor.retryAt = 0
        if (answer.epoch !== this.epoch) {
          // The edge does not count the topic as spanning (its code changed): stop until the next change.
          state.cursors.delete(address.id)
          return
        }
        cursor.epoch = answer.epoch
        cursor.version = answer.version
        // An edge of another process than the one whose part the home holds (it restarted, or woke from an
        // eviction) is asked for its part now: a restart's dead sockets leave at the next change, not the next check.
        const part = state.parts.get(address.id)
        if (part !== undefined && part.epoch !== answer.edgeEpoch) void this.check(topic, state, address.id)
        if (this.host.edgeOf(topic, address.id) !== undefined) this.pump(topic, state, address)
        else state.cursors.delete(address.id)
      },
      (error: unknown) => {
        cursor.inFlight = false
        backOff(cursor, this.host.settings, `presence delivery to edge ${address.id} failed`, error)
        this.host.watch(cursor.retryAt)
      }
    )
  }

  // -- Liveness: the alarm ------------------------------------------------------------

  /** Asks an edge whether the home's copy of its part is current, and takes its whole part when not. */
  private check(topic: string, state: TopicState, id: string): Promise<void> {
    const part = state.parts.get(id)
    if (part === undefined || part.checking) return Promise.resolve()
    part.checking = true
    const call = Promise.resolve().then(() => this.host.edge(part.address).checkPresence(topic, part.epoch, part.counter))
    return withTimeout(call, this.host.settings.edgeTimeoutMs).then(
      (answer: PresencePartCheck) => {
        part.checking = false
        part.heardAt = Date.now()
        if (!answer.same) {
          const taken = this.take(topic, state, part.address, answer.part)
          if (!taken.ok && "refused" in taken) console.error(`durable-ws: edge ${id}'s presence refused: ${taken.refused}`)
        }
      },
      (error: unknown) => {
        part.checking = false
        console.warn(`durable-ws: presence check of edge ${id} failed`, error)
      }
    )
  }

  /** Drops the part of an edge that stopped answering: its members leave. */
  private drop(topic: string, state: TopicState, part: Part): void {
    console.warn(`durable-ws: edge ${part.address.id} did not answer for ${this.host.settings.presenceDropMs} ms; its members of "${topic}" leave`)
    this.replacePart(topic, state, part, new Map())
    state.parts.delete(part.address.id)
  }

  /**
   * Checks the edges whose parts have not been heard from for
   * `presenceCheckMs`, drops those silent for `presenceDropMs`, retries owed
   * deliveries; keeps watching while any part has members. After a restart,
   * this is what rebuilds the topics the home had members of.
   */
  alarm(): void {
    // Once per process: from then on every row is written from memory, and a topic leaves memory only
    // when it has no parts, so no rows.
    if (!this.scanned) {
      for (const row of this.sql.exec<{ topic: string }>("SELECT DISTINCT topic FROM _dws_span_presence").toArray()) {
        this.topic(row.topic)
      }
      this.scanned = true
    }
    const now = Date.now()
    const { presenceCheckMs, presenceDropMs } = this.host.settings
    let next = Infinity
    for (const [topic, state] of this.topics) {
      for (const part of Array.from(state.parts.values())) {
        if (now - part.heardAt >= presenceDropMs && state.rebuilding === undefined) {
          this.drop(topic, state, part)
          continue
        }
        // Once a period, unless the edge spoke within the last half of it.
        if (now - part.heardAt >= presenceCheckMs / 2) void this.check(topic, state, part.address.id)
        next = Math.min(next, now + presenceCheckMs)
      }
      for (const [id, cursor] of state.cursors) {
        if (cursor.epoch === this.epoch && cursor.version >= state.version) continue
        const edge = this.host.edgeOf(topic, id)
        if (edge === undefined) continue
        this.pump(topic, state, edge)
        next = Math.min(next, Math.max(cursor.retryAt, now + this.host.settings.maxRetryDelayMs))
      }
      if (state.parts.size === 0 && state.cursors.size === 0 && state.timer === undefined) this.topics.delete(topic)
    }
    if (next !== Infinity) this.host.watch(next)
  }
}
