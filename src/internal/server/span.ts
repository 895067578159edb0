/**
 * The edge side of spanning topics (SPEC §14): this WebSocket object
 * registers with a topic's home on its first local subscriber, unregisters
 * on its last, sends publishes to the home, and fans out what the home
 * delivers.
 *
 * Each topic has a watermark here: the last `seq` sent to local
 * subscribers. With it, an edge that is evicted, or whose answer to the
 * home is lost, drops the redelivered entries instead of sending them
 * twice. It costs no storage write of its own:
 * - without recovery, it is kept in memory and carried in the attachment of
 *   one local subscriber of the topic, written in the same synchronous turn
 *   as the frames, so it survives hibernation exactly as the sockets do;
 *   when that subscriber leaves, the mark moves to another one. A restart
 *   that loses the attachments closes the sockets too: a later subscriber
 *   registers again and starts at the home's current `seq`.
 * - with recovery, each entry's recovery log row carries the home's `seq`
 *   (one transaction for a delivery's rows), so the watermark is the last
 *   row's, and it survives restarts as the log does.
 * On a registration the home already had, the edge also takes the home's
 * acknowledged position: what it acknowledged without sending (nobody was
 * subscribed) is never fetched again. Work on one topic runs one step at a
 * time (register, deliver, unregister), so a delivery never overtakes the
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
import type { LiveConnection } from "./connection"
import { namespaceOf } from "./bindings"
import { Lanes } from "./lanes"

export interface ResolvedSpan {
  readonly spans: (topic: string) => boolean
  readonly home: SpanOptions["home"]
  readonly edge: string
}

/** The home object of `topic`: the one its name hashes to in the homes' namespace. */
export const homeOf = (span: ResolvedSpan, env: Cloudflare.Env, topic: string): DurableObjectStub<SpanningTopicHome> => {
  const namespace = span.home(env)
  return namespace.get(namespace.idFromName(topic))
}

/** What the edge needs from its instance's pub/sub. */
export interface LocalTopics {
  readonly subscriberCount: (topic: string) => number
  /** The topic's local subscribers (a watermark is carried by one of them). */
  readonly subscribers: (topic: string) => Iterable<LiveConnection>
  readonly connections: () => Iterable<LiveConnection>
  /** With recovery: the last home `seq` of the topic in the recovery log (`frameOf` writes it there). */
  readonly logged: ((topic: string) => number | undefined) | undefined
  /** Serializes an entry once (into the recovery log when it is on). */
  readonly frameOf: (topic: string, entry: SpannedEntry) => string
  /** Sends an entry's frames in order (`origins[i]`: the clientId `frames[i]` excludes). */
  readonly fanOut: (topic: string, frames: ReadonlyArray<string>, origins: ReadonlyArray<string | undefined>) => void
}

/** A home reaches this object through `env[edge]`: a wrong name would fail only there, retried forever. */
const checkOwnBinding = (env: Cloudflare.Env, edge: string, id: DurableObjectId): void => {
  const namespace = namespaceOf(env, edge)
  if (namespace === undefined) {
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
  private readonly marks = new Map<string, number>()
  /** Without recovery: the subscriber whose attachment carries each topic's watermark. */
  private readonly carriers = new Map<string, LiveConnection>()
  private readonly registered = new Set<string>()
  private readonly lanes = new Lanes()
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
    return homeOf(this.span, this.env, topic)
  }

  /** The watermark in memory, or after a wake where it was kept: the recovery log, or a subscriber's attachment. */
  private mark(topic: string): number | undefined {
    const known = this.marks.get(topic)
    if (known !== undefined) return known
    let saved: number | undefined
    if (this.local.logged !== undefined) {
      saved = this.local.logged(topic)
    } else {
      for (const connection of this.local.connections()) {
        const carried = connection.spanMarks?.get(topic)
        if (carried !== undefined && (saved === undefined || carried > saved)) saved = carried
      }
    }
    if (saved !== undefined) this.marks.set(topic, saved)
    return saved
  }

  /**
   * Moves the watermark; without recovery, also into the attachment of one
   * local subscriber (the same one while it stays). Called in the same
   * synchronous turn as the frames it covers: no eviction comes between.
   */
  private setMark(topic: string, seq: number): void {
    this.marks.set(topic, seq)
    if (this.local.logged !== undefined) return
    const carrier = this.carriers.get(topic)
    if (carrier !== undefined && !carrier.closed && carrier.topics.has(topic) && this.carry(carrier, topic, seq)) return
    this.carriers.delete(topic)
    let full = false
    for (const connection of this.local.subscribers(topic)) {
      if (connection.closed) continue
      if (this.carry(connection, topic, seq)) return void this.carriers.set(topic, connection)
      full = true
    }
    // No subscriber left to carry it: nobody here can receive the topic twice. Every one's
    // attachment full: the mark holds in memory only, until an eviction.
    if (full) console.warn(`durable-ws: no subscriber of "${topic}" has room to carry its watermark (16 KiB attachments)`)
  }

  private carry(connection: LiveConnection, topic: string, seq: number): boolean {
    ;(connection.spanMarks ??= new Map()).set(topic, seq)
    if (connection.persist() === undefined) return true
    // Its attachment is full: the mark goes to another subscriber.
    connection.spanMarks?.delete(topic)
    return false
  }

  private dropMark(topic: string): void {
    this.marks.delete(topic)
    const carrier = this.carriers.get(topic)
    this.carriers.delete(topic)
    if (carrier !== undefined && carrier.spanMarks?.delete(topic) === true && !carrier.closed) carrier.persist()
  }

  /**
   * A subscriber of `topic` left (unsubscribed or closed) while others
   * stay: the watermark it carried moves to one of them.
   */
  handOver(topic: string, from: LiveConnection): void {
    const carried = from.spanMarks?.get(topic)
    if (carried === undefined) return
    from.spanMarks?.delete(topic)
    if (!from.closed) from.persist()
    if (this.carriers.get(topic) === from) this.carriers.delete(topic)
    if (this.local.logged !== undefined) return
    const mark = this.mark(topic)
    this.setMark(topic, mark === undefined ? carried : Math.max(mark, carried))
  }

  /** Runs `step` after every earlier step on `topic`. */
  private serially<A>(topic: string, step: () => Promise<A>): Promise<A> {
    return this.lanes.run(topic, step)
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
      this.registered.add(topic)
      // A fresh registration starts at the home's current seq. One the home already had goes on from the
      // watermark, or from what the home counts as acknowledged when that is further (entries acknowledged
      // while nobody here was subscribed). Without a watermark: with recovery, from the acknowledged
      // position (a resumed session gets what was owed); without, sockets were lost with it, so from now.
      const mark = registration.fresh ? undefined : this.mark(topic)
      this.setMark(
        topic,
        registration.fresh
          ? registration.seq
          : mark !== undefined
          ? Math.max(mark, registration.acked)
          : this.local.logged !== undefined
          ? registration.acked
          : registration.seq
      )
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
    if (this.local.logged === undefined) {
      // The frames leave and the watermark moves in the same synchronous turn: nothing, an
      // eviction included, comes between the two.
      this.local.fanOut(topic, fresh.map((entry) => this.local.frameOf(topic, entry)), fresh.map((entry) => entry.origin))
      this.setMark(topic, end)
      return end
    }
    let frames: Array<string> = []
    // One transaction: the rows (each with its home seq, so the watermark with them) are all
    // stored or none is; the frames wait for them, as every logged publish does.
    this.state.storage.transactionSync(() => {
      frames = fresh.map((entry) => this.local.frameOf(topic, entry))
    })
    this.marks.set(topic, end)
    this.local.fanOut(topic, frames, fresh.map((entry) => entry.origin))
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
