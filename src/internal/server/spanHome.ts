/**
 * The home of spanning topics (SPEC §14): it numbers every publish of its
 * topics, logs it in SQLite and delivers it to the edges that registered.
 *
 * A publish costs one row: the log entry (the topic's `seq` is the log's
 * largest, kept in memory). Which edges want a topic is written once per
 * registration; how far each edge acknowledged is kept in memory and
 * written only every `ackWriteEvery` entries, so a restarted home resends
 * at most that many entries to an edge, which drops them by its watermark.
 * Deliveries run one call per edge at a time; a failed or timed-out call
 * is retried from the alarm with exponential backoff, and the alarm is set
 * whenever a delivery is owed, so a home that restarts mid-delivery picks
 * it up again. While publishes come faster than an edge answers (a call
 * carried several entries), the next call to that edge waits `lingerMs`
 * after the answer, so each call carries more: a lone publish goes at once.
 */
import type {
  EdgeAddress,
  HomeSettings,
  LoggedEntries,
  Registration,
  SpannedAnswer,
  SpannedDelivery,
  SpannedEntry
} from "../../SpanningTopic"

interface LogRow {
  readonly [key: string]: SqlStorageValue
  readonly seq: number
  readonly type: string
  readonly payload: string | null
  readonly meta: string | null
  readonly origin: string | null
}

interface EdgeRow {
  readonly [key: string]: SqlStorageValue
  readonly topic: string
  readonly edge: string
  readonly binding: string
  readonly acked: number
}

/** One edge's standing with this home: what it acknowledged per topic, and its delivery state. */
interface EdgeCursor {
  readonly address: EdgeAddress
  /** Per topic: the last seq acknowledged, and the last one written to SQLite. */
  readonly topics: Map<string, { acked: number; written: number }>
  inFlight: boolean
  failures: number
  retryAt: number
  /**
   * While traffic is dense: a publish sends no call to this edge before this
   * time (`lingerMs` after the last answer); a short timer sends it sooner
   * when the home has a quiet moment.
   */
  lingerUntil: number
}

/** The newest entries of a topic, in memory: deliveries read here, not from SQLite. */
interface Tail {
  seq: number
  readonly recent: Array<SpannedEntry>
}

const tailLength = 2048
/**
 * While traffic is dense, a call to an edge goes this long after the last
 * answer if the home has a quiet moment (its timer runs only between the
 * publishes it is handling); at the latest `lingerMs` after it.
 */
const quietMs = 5
/** While deliveries are owed, the alarm looks at them at least this often. */
const watchMs = 2_000

const toEntry = (row: LogRow): SpannedEntry => ({
  seq: row.seq,
  type: row.type,
  payloadJson: row.payload ?? undefined,
  meta: row.meta === null ? undefined : JSON.parse(row.meta) as Record<string, unknown>,
  origin: row.origin ?? undefined
})

/**
 * A call to an edge failed: the next try waits twice as long as the last
 * (from `retryDelayMs` up to `maxRetryDelayMs`, with jitter), and the 1st
 * and every 10th failure in a row is logged.
 */
export const backOff = (
  cursor: { failures: number; retryAt: number },
  settings: Pick<HomeSettings, "retryDelayMs" | "maxRetryDelayMs">,
  failed: string,
  error: unknown
): void => {
  cursor.failures++
  const delay = Math.min(settings.maxRetryDelayMs, settings.retryDelayMs * 2 ** (cursor.failures - 1))
  cursor.retryAt = Date.now() + Math.round(delay * (0.5 + Math.random() / 2))
  if (cursor.failures === 1 || cursor.failures % 10 === 0) {
    console.warn(`durable-ws: ${failed} (${cursor.failures} in a row)`, error)
  }
}

export const withTimeout = <A>(promise: Promise<A>, ms: number): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`durable-ws: the edge did not answer within ${ms} ms`)), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(error)
      }
    )
  })

export class TopicHome {
  private ready = false
  private readonly tails = new Map<string, Tail>()
  private readonly edges = new Map<string, EdgeCursor>()
  private alarmAt: number | undefined
  private readonly sql: SqlStorage

  constructor(
    private readonly state: DurableObjectState,
    private readonly settings: HomeSettings,
    private readonly call: (edge: EdgeAddress, delivery: SpannedDelivery) => Promise<SpannedAnswer>
  ) {
    this.sql = state.storage.sql
  }

  private init(): void {
    if (this.ready) return
    this.ready = true
    this.sql.exec(
      `CREATE TABLE IF NOT EXISTS _dws_span_log (topic TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,
         payload TEXT, meta TEXT, origin TEXT, PRIMARY KEY (topic, seq)) WITHOUT ROWID;
       CREATE TABLE IF NOT EXISTS _dws_span_edges (topic TEXT NOT NULL, edge TEXT NOT NULL, binding TEXT NOT NULL,
         acked INTEGER NOT NULL, PRIMARY KEY (topic, edge)) WITHOUT ROWID;`
    )
    for (const row of this.sql.exec<EdgeRow>("SELECT topic, edge, binding, acked FROM _dws_span_edges")) {
      this.cursor({ id: row.edge, binding: row.binding }).topics.set(row.topic, { acked: row.acked, written: row.acked })
    }
  }

  private cursor(address: EdgeAddress): EdgeCursor {
    let cursor = this.edges.get(address.id)
    if (cursor === undefined) {
      this.edges.set(address.id, cursor = { address, topics: new Map(), inFlight: false, failures: 0, retryAt: 0, lingerUntil: 0 })
    }
    return cursor
  }

  private tail(topic: string): Tail {
    let tail = this.tails.get(topic)
    if (tail === undefined) {
      const seq = this.sql.exec<{ seq: number | null }>("SELECT MAX(seq) AS seq FROM _dws_span_log WHERE topic = ?", topic)
        .one().seq ?? 0
      this.tails.set(topic, tail = { seq, recent: [] })
    }
    return tail
  }

  publish(
    topic: string,
    type: string,
    payload: unknown,
    meta: Readonly<Record<string, unknown>> | undefined,
    origin: string | undefined
  ): { readonly seq: number; readonly edges: number } {
    this.init()
    const tail = this.tail(topic)
    const seq = tail.seq + 1
    // Encoded once: the log row and every delivery carry this text.
    const payloadJson = payload === undefined ? undefined : JSON.stringify(payload)
    this.sql.exec(
      "INSERT INTO _dws_span_log (topic, seq, type, payload, meta, origin) VALUES (?, ?, ?, ?, ?, ?)",
      topic,
      seq,
      type,
      payloadJson ?? null,
      meta === undefined ? null : JSON.stringify(meta),
      origin ?? null
    )
    tail.seq = seq
    // The tail holds a contiguous run ending at `seq`.
    tail.recent.push({ seq, type, payloadJson, meta, origin })
    if (tail.recent.length > tailLength) tail.recent.splice(0, tail.recent.length - tailLength)
    if (seq % Math.max(1, Math.floor(this.settings.maxMessages / 10)) === 0) this.prune(topic, seq)
    let edges = 0
    for (const cursor of this.edges.values()) {
      if (!cursor.topics.has(topic)) continue
      edges++
      this.pump(cursor)
    }
    if (edges > 0) this.watch(Date.now() + watchMs)
    return { seq, edges }
  }

  private prune(topic: string, seq: number): void {
    this.sql.exec("DELETE FROM _dws_span_log WHERE topic = ? AND seq <= ?", topic, seq - this.settings.maxMessages)
  }

  register(topic: string, edge: EdgeAddress): Registration {
    this.init()
    const seq = this.tail(topic).seq
    const cursor = this.cursor(edge)
    const known = cursor.topics.get(topic)
    if (known !== undefined) return { seq, fresh: false, acked: known.acked }
    cursor.topics.set(topic, { acked: seq, written: seq })
    this.sql.exec(
      "INSERT OR REPLACE INTO _dws_span_edges (topic, edge, binding, acked) VALUES (?, ?, ?, ?)",
      topic,
      edge.id,
      edge.binding,
      seq
    )
    return { seq, fresh: true, acked: seq }
  }

  unregister(topic: string, edgeId: string): void {
    this.init()
    const cursor = this.edges.get(edgeId)
    if (cursor === undefined || !cursor.topics.delete(topic)) return
    this.sql.exec("DELETE FROM _dws_span_edges WHERE topic = ? AND edge = ?", topic, edgeId)
    if (cursor.topics.size === 0 && !cursor.inFlight) this.edges.delete(edgeId)
  }

  read(topic: string, after: number, limit: number): LoggedEntries {
    this.init()
    const tail = this.tail(topic)
    const first = tail.recent[0]
    const count = Math.max(0, Math.min(limit, tail.seq - after))
    if (first !== undefined && after + 1 >= first.seq) {
      const start = after + 1 - first.seq
      return { entries: tail.recent.slice(start, start + count), from: first.seq }
    }
    const entries = this.sql.exec<LogRow>(
      "SELECT seq, type, payload, meta, origin FROM _dws_span_log WHERE topic = ? AND seq > ? ORDER BY seq LIMIT ?",
      topic,
      after,
      count
    ).toArray().map(toEntry)
    const from = this.sql.exec<{ seq: number | null }>("SELECT MIN(seq) AS seq FROM _dws_span_log WHERE topic = ?", topic)
      .one().seq ?? tail.seq + 1
    return { entries, from }
  }

  status(topic: string): { readonly seq: number; readonly edges: ReadonlyArray<string> } {
    this.init()
    const edges: Array<string> = []
    for (const cursor of this.edges.values()) if (cursor.topics.has(topic)) edges.push(cursor.address.id)
    return { seq: this.tail(topic).seq, edges }
  }

  /** The edges registered for `topic`. */
  edgesOf(topic: string): ReadonlyArray<EdgeAddress> {
    this.init()
    const edges: Array<EdgeAddress> = []
    for (const cursor of this.edges.values()) if (cursor.topics.has(topic)) edges.push(cursor.address)
    return edges
  }

  /** The edge `id`, if it is registered for `topic`: one lookup, where {@link edgesOf} walks every edge. */
  edgeOf(topic: string, id: string): EdgeAddress | undefined {
    this.init()
    const cursor = this.edges.get(id)
    return cursor !== undefined && cursor.topics.has(topic) ? cursor.address : undefined
  }

  /** Sends an edge what it has not acknowledged, one call at a time, until it is caught up or a call fails. */
  private pump(cursor: EdgeCursor): void {
    const now = Date.now()
    if (cursor.inFlight || now < cursor.lingerUntil || now < cursor.retryAt) return
    const topics: Array<{ topic: string; entries: ReadonlyArray<SpannedEntry> }> = []
    let room = this.settings.maxBatch
    for (const [topic, position] of cursor.topics) {
      if (room === 0) break
      if (position.acked >= this.tail(topic).seq) continue
      const { entries } = this.read(topic, position.acked, room)
      if (entries.length === 0) continue
      topics.push({ topic, entries })
      room -= entries.length
    }
    if (topics.length === 0) return
    cursor.inFlight = true
    const carried = this.settings.maxBatch - room
    void withTimeout(this.call(cursor.address, { topics }), this.settings.edgeTimeoutMs).then(
      (answer) => {
        cursor.inFlight = false
        cursor.failures = 0
        cursor.retryAt = 0
        const answered = new Set<string>()
        for (const { topic, seq } of answer.topics) {
          answered.add(topic)
          const position = cursor.topics.get(topic)
          if (position === undefined || seq <= position.acked) continue
          position.acked = seq
          if (seq - position.written >= this.settings.ackWriteEvery) this.writeAck(topic, cursor, position)
        }
        // An edge that no longer counts a topic as spanning (its code changed) leaves it out of
        // the answer: stop sending it, or the same entries would go round forever.
        for (const { topic } of topics) if (!answered.has(topic)) this.unregister(topic, cursor.address.id)
        this.forgetIfIdle(cursor)
        if (carried <= 1 || this.settings.lingerMs <= 0) return this.pump(cursor)
        cursor.lingerUntil = Date.now() + this.settings.lingerMs
        setTimeout(() => {
          cursor.lingerUntil = 0
          this.pump(cursor)
        }, Math.min(quietMs, this.settings.lingerMs))
      },
      (error: unknown) => {
        cursor.inFlight = false
        backOff(cursor, this.settings, `delivery to edge ${cursor.address.id} failed`, error)
        this.forgetIfIdle(cursor)
        this.watch(cursor.retryAt)
      }
    )
  }

  private writeAck(topic: string, cursor: EdgeCursor, position: { acked: number; written: number }): void {
    this.sql.exec("UPDATE _dws_span_edges SET acked = ? WHERE topic = ? AND edge = ?", position.acked, topic, cursor.address.id)
    position.written = position.acked
  }

  private forgetIfIdle(cursor: EdgeCursor): void {
    if (cursor.topics.size === 0 && !cursor.inFlight) this.edges.delete(cursor.address.id)
  }

  /** Makes sure the alarm fires by `at` (earlier alarms stand). */
  watch(at: number): void {
    if (this.alarmAt !== undefined && this.alarmAt <= at && this.alarmAt > Date.now() - 60_000) return
    this.alarmAt = at
    void this.state.storage.setAlarm(at)
  }

  /** Retries the edges whose backoff is over; keeps watching while any delivery is owed. */
  async alarm(): Promise<void> {
    this.init()
    this.alarmAt = undefined
    const now = Date.now()
    let next = Infinity
    for (const cursor of this.edges.values()) {
      if (!this.behind(cursor)) continue
      if (cursor.retryAt <= now) this.pump(cursor)
      next = Math.min(next, cursor.retryAt > now ? cursor.retryAt : now + watchMs)
    }
    if (next !== Infinity) this.watch(next)
  }

  private behind(cursor: EdgeCursor): boolean {
    for (const [topic, position] of cursor.topics) if (position.acked < this.tail(topic).seq) return true
    return false
  }
}
