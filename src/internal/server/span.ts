/**
 * The edge side of spanning topics (SPEC §14): this WebSocket object
 * registers with a topic's home on its first local subscriber, unregisters
 * on its last, sends publishes to the home, and fans out what the home
 * delivers.
 *
 * Each topic has a durable watermark here: the last `seq` sent to local
 * subscribers. It is written in the same SQLite transaction as the
 * entries' recovery log rows, before any frame leaves (Durable Object
 * output gates hold the sends until the write is stored), so an edge that
 * is evicted, or whose answer to the home is lost, drops the redelivered
 * entries instead of sending them twice. Work on one topic runs one step at
 * a time (register, deliver, unregister), so a delivery never overtakes the
 * registration it depends on.
 */
import type { PublishResult } from "../../PubSub"
import type {
  EdgeAddress,
  SpannedAnswer,
  SpannedDelivery,
  SpannedEntry,
  SpanningTopicHome,
  SpanOptions
} from "../../SpanningTopic"

export interface ResolvedSpan {
  readonly spans: (topic: string) => boolean
  readonly home: SpanOptions["home"]
  readonly edge: string
}

/** What the edge needs from its instance's pub/sub. */
export interface LocalTopics {
  readonly subscriberCount: (topic: string) => number
  /** Whether `frameOf` logs the entry (recovery is on). */
  readonly logged: boolean
  /** Serializes an entry once (into the recovery log when it is on). */
  readonly frameOf: (topic: string, entry: SpannedEntry) => string
  readonly fanOut: (topic: string, frame: string, origin: string | undefined) => void
}

/** A home reaches this object through `env[edge]`: a wrong name would fail only there, retried forever. */
const checkOwnBinding = (env: Cloudflare.Env, edge: string, id: DurableObjectId): void => {
  const namespace = (env as unknown as Record<string, Partial<DurableObjectNamespace> | undefined>)[edge]
  if (typeof namespace?.idFromString !== "function") {
    throw new TypeError(`durable-ws: span.edge is "${edge}", but env has no Durable Object binding of that name`)
  }
  try {
    namespace.idFromString(id.toString())
  } catch {
    throw new TypeError(`durable-ws: span.edge must be this object's own binding; "${edge}" is another class's`)
  }
}

const unavailable = (topic: string): PublishResult => ({
  ok: false,
  error: "UNAVAILABLE",
  message: `The home of "${topic}" could not be reached`
})

export class SpanEdge {
  private ready = false
  private readonly marks = new Map<string, number>()
  private readonly registered = new Set<string>()
  private readonly queues = new Map<string, Promise<void>>()
  private readonly address: EdgeAddress

  constructor(
    private readonly span: ResolvedSpan,
    private readonly state: DurableObjectState,
    private readonly env: Cloudflare.Env,
    private readonly local: LocalTopics
  ) {
    this.address = { id: state.id.toString(), binding: span.edge }
    checkOwnBinding(env, span.edge, state.id)
  }

  spans(topic: string): boolean {
    return this.span.spans(topic)
  }

  private homeOf(topic: string): DurableObjectStub<SpanningTopicHome> {
    const namespace = this.span.home(this.env)
    return namespace.get(namespace.idFromName(topic))
  }

  private init(): void {
    if (this.ready) return
    this.ready = true
    this.state.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS _dws_span_marks (topic TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID"
    )
  }

  private mark(topic: string): number | undefined {
    if (this.marks.has(topic)) return this.marks.get(topic)
    this.init()
    const seq = this.state.storage.sql.exec<{ seq: number }>("SELECT seq FROM _dws_span_marks WHERE topic = ?", topic)
      .toArray()[0]?.seq
    if (seq !== undefined) this.marks.set(topic, seq)
    return seq
  }

  private setMark(topic: string, seq: number): void {
    this.init()
    this.state.storage.sql.exec("INSERT OR REPLACE INTO _dws_span_marks (topic, seq) VALUES (?, ?)", topic, seq)
    this.marks.set(topic, seq)
  }

  private dropMark(topic: string): void {
    this.init()
    this.state.storage.sql.exec("DELETE FROM _dws_span_marks WHERE topic = ?", topic)
    this.marks.delete(topic)
  }

  /** Runs `step` after every earlier step on `topic`. */
  private serially<A>(topic: string, step: () => Promise<A>): Promise<A> {
    const result = (this.queues.get(topic) ?? Promise.resolve()).then(step)
    const done = result.then(() => undefined, () => undefined)
    this.queues.set(topic, done)
    void done.then(() => {
      if (this.queues.get(topic) === done) this.queues.delete(topic)
    })
    return result
  }

  publish(
    topic: string,
    type: string,
    payload: unknown,
    meta: Readonly<Record<string, unknown>> | undefined,
    origin: string | undefined
  ): Promise<PublishResult> {
    return this.homeOf(topic).publish(topic, type, payload, meta, origin).then(
      ({ seq, edges }): PublishResult => ({ ok: true, matched: edges, seq }),
      (error: unknown) => {
        console.error(`durable-ws: the publish to spanning topic "${topic}" failed`, error)
        return unavailable(topic)
      }
    )
  }

  /** A local subscriber joined `topic`: make sure the home delivers here (idempotent). */
  joined(topic: string): Promise<void> {
    if (this.registered.has(topic)) return Promise.resolve()
    return this.serially(topic, async () => {
      if (this.registered.has(topic)) return
      const registration = await this.homeOf(topic).register(topic, this.address)
      // A fresh registration starts at the home's current seq; one the home already had keeps its watermark.
      if (registration.fresh || this.mark(topic) === undefined) this.setMark(topic, registration.seq)
      this.registered.add(topic)
    })
  }

  /** The last local subscriber of `topic` may have left: stop the home's deliveries here. */
  left(topic: string): void {
    void this.serially(topic, async () => {
      if (this.local.subscriberCount(topic) > 0) return
      this.registered.delete(topic)
      this.dropMark(topic)
      await this.homeOf(topic).unregister(topic, this.address.id)
    }).catch((error: unknown) => {
      // The home stops on its own: the next delivery finds no subscriber here and unregisters again.
      console.warn(`durable-ws: unregistering from spanning topic "${topic}" failed`, error)
    })
  }

  async deliver(delivery: SpannedDelivery): Promise<SpannedAnswer> {
    const topics: Array<{ topic: string; seq: number }> = []
    for (const { topic, entries } of delivery.topics) {
      if (entries.length === 0 || !this.spans(topic)) continue
      topics.push({ topic, seq: await this.serially(topic, () => this.deliverTopic(topic, entries)) })
    }
    return { topics }
  }

  private async deliverTopic(topic: string, entries: ReadonlyArray<SpannedEntry>): Promise<number> {
    const last = entries[entries.length - 1]!.seq
    if (this.local.subscriberCount(topic) === 0 && !this.registered.has(topic)) {
      // A registration this object no longer stands behind (its sockets went while it was away).
      this.left(topic)
      return last
    }
    this.registered.add(topic)
    const mark = this.mark(topic) ?? entries[0]!.seq - 1
    let fresh = entries.filter((entry) => entry.seq > mark)
    if (fresh.length === 0) return mark
    const missing = fresh[0]!.seq - mark - 1
    if (missing > 0) fresh = [...await this.fetchGap(topic, mark, missing), ...fresh]
    const end = fresh[fresh.length - 1]!.seq
    if (!this.local.logged) {
      // The frames leave before the watermark is written, in the same synchronous turn: nothing,
      // an eviction included, comes between the two, and the write does not hold the frames back
      // behind the output gate. The answer to the home is held until the write is stored.
      for (const entry of fresh) this.local.fanOut(topic, this.local.frameOf(topic, entry), entry.origin)
      this.setMark(topic, end)
      return end
    }
    let frames: Array<string> = []
    // One transaction: the watermark moves with the recovery log's rows, or neither does; the
    // frames wait for it, as every logged publish does.
    this.state.storage.transactionSync(() => {
      frames = fresh.map((entry) => this.local.frameOf(topic, entry))
      this.setMark(topic, end)
    })
    for (let i = 0; i < fresh.length; i++) this.local.fanOut(topic, frames[i]!, fresh[i]!.origin)
    return end
  }

  private async fetchGap(topic: string, mark: number, missing: number): Promise<ReadonlyArray<SpannedEntry>> {
    const { entries, from } = await this.homeOf(topic).read(topic, mark, missing)
    if (from > mark + 1) {
      console.warn(`durable-ws: spanning topic "${topic}" lost entries ${mark + 1}..${from - 1} to the home's log limit`)
    }
    return entries
  }
}
