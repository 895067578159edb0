/**
 * The edge side of presence across objects (SPEC §15 over §14): the
 * members of a spanning topic sit on many edges, and every subscriber sees
 * one list.
 *
 * Out: this object's own members of a spanning topic go to the topic's
 * home as the local presence flushes them (one coalesced change per
 * flush), numbered within this process's `epoch`. The first update of an
 * epoch, and any update after a failure or a refusal, carries the whole
 * part, so a home that lost track (a restart, a gap) is always repaired
 * by the next update, and the home's periodic check repairs it when
 * nothing changes here.
 *
 * In: the home sends the topic's members on every object as changes
 * numbered by a version (or the whole list). The edge keeps that union in
 * memory, applies the changes in order, and sends its local subscribers
 * the same `$presence` / `$presence_diff` frames as for a local topic
 * (counts-only included). A gap, or no copy at all (a wake), is closed by
 * fetching the whole list from the home; local subscribers then get it as
 * a `$presence` state, which a client turns into the difference from what
 * it showed, so a wake causes no leave/join flap.
 */
import type {
  PresenceChanges,
  PresencePart,
  PresencePartAnswer,
  PresencePartCheck,
  SpannedPresence,
  SpannedPresenceAnswer
} from "../../Presence"
import type { PresenceMembers } from "../../Protocol"
import type { EdgeAddress, SpanningTopicHome } from "../../SpanningTopic"
import type { LiveConnection } from "./connection"
import type { InstancePresence, PresenceSpan } from "./presence"
import { newRef, sendChanges, stateFrameOf, TopicMembers } from "./presence"
import { Lanes } from "./lanes"
import type { ResolvedSpan } from "./span"
import { homeOf } from "./span"

/** What the edge needs from its instance. */
export interface SpanPresenceHost {
  readonly presence: InstancePresence
  readonly subscriberCount: (topic: string) => number
  readonly fanOut: (topic: string, frame: string, exclude: LiveConnection | undefined) => void
}

/** The topic's members on every object, as this edge last heard them from the home. */
interface Union {
  epoch: string
  version: number
  readonly members: TopicMembers
}

/** A failed update to the home is retried with backoff (100 ms doubling to 5 s) for about five minutes. */
const maxRetries = 64
const firstRetryMs = 100
const maxRetryMs = 5_000

export class SpanPresence implements PresenceSpan {
  /** This process: a home that knows another epoch of this edge needs the whole part. */
  private readonly epoch = newRef()
  /** Per topic, the number of this epoch's last update (it only grows, so the home never takes one for stale). */
  private readonly counters = new Map<string, number>()
  /** Topics whose last update the home took; for any other, the next update is the whole part. */
  private readonly synced = new Set<string>()
  private readonly unions = new Map<string, Union>()
  private readonly lanes = new Lanes()
  private readonly retries = new Map<string, number>()
  private readonly address: EdgeAddress

  constructor(
    private readonly span: ResolvedSpan,
    state: DurableObjectState,
    private readonly env: Cloudflare.Env,
    private readonly host: SpanPresenceHost
  ) {
    this.address = { id: state.id.toString(), binding: span.edge }
  }

  spans(topic: string): boolean {
    return this.span.spans(topic)
  }

  union(topic: string): PresenceMembers | undefined {
    return this.unions.get(topic)?.members.snapshot()
  }

  private homeOf(topic: string): DurableObjectStub<SpanningTopicHome> {
    return homeOf(this.span, this.env, topic)
  }

  private get countsOnlyAbove(): number {
    return this.host.presence.options.countsOnlyAbove
  }

  /** Runs `step` after every earlier step of the same lane (`out:` or `in:` a topic). */
  private serially<A>(lane: string, step: () => Promise<A>): Promise<A> {
    return this.lanes.run(lane, step)
  }

  // -- Out: this edge's part -----------------------------------------------------

  localChanged(topic: string, changes: PresenceChanges): void {
    void this.serially(`out:${topic}`, () => this.sendPart(topic, changes))
  }

  /** Sends the home this edge's change (or, with none, or when the home may have lost track, its whole part). */
  private async sendPart(topic: string, changes: PresenceChanges | undefined): Promise<void> {
    const counter = this.nextCounter(topic)
    const part: PresencePart = !this.synced.has(topic) || changes === undefined
      ? { epoch: this.epoch, counter, members: this.host.presence.localList(topic) }
      : { epoch: this.epoch, counter, changes }
    this.synced.delete(topic)
    let answer: PresencePartAnswer
    try {
      answer = await this.homeOf(topic).presenceUpdate(topic, this.address, part)
    } catch (error) {
      this.retryLater(topic, error)
      return
    }
    this.retries.delete(topic)
    if (answer.ok) {
      this.synced.add(topic)
      return
    }
    if ("refused" in answer) {
      console.error(`durable-ws: the home of "${topic}" refused this object's presence: ${answer.refused}`)
      return
    }
    if (part.members === undefined) await this.sendPart(topic, undefined)
  }

  private nextCounter(topic: string): number {
    const counter = (this.counters.get(topic) ?? 0) + 1
    this.counters.set(topic, counter)
    return counter
  }

  private retryLater(topic: string, error: unknown): void {
    const attempt = (this.retries.get(topic) ?? 0) + 1
    if (attempt > maxRetries) {
      // The next local change sends the whole part; a home that knew this edge asks for it by itself.
      this.retries.delete(topic)
      console.warn(`durable-ws: presence of "${topic}" could not reach its home; giving up until the next change`, error)
      return
    }
    if (attempt === 1) console.warn(`durable-ws: presence of "${topic}" could not reach its home; retrying`, error)
    this.retries.set(topic, attempt)
    setTimeout(() => {
      void this.serially(`out:${topic}`, () => this.synced.has(topic) ? Promise.resolve() : this.sendPart(topic, undefined))
    }, Math.min(maxRetryMs, firstRetryMs * 2 ** (attempt - 1)))
  }

  /** The home asks whether its copy of this edge's part is current. */
  check(topic: string, epoch: string, counter: number): Promise<PresencePartCheck> {
    // A topic that does not span objects here has no part here.
    if (!this.spans(topic)) return Promise.resolve({ same: false, part: { epoch: this.epoch, counter: 0, members: {} } })
    return this.serially<PresencePartCheck>(`out:${topic}`, () => {
      if (epoch === this.epoch && this.counters.get(topic) === counter && this.synced.has(topic)) {
        return Promise.resolve({ same: true })
      }
      // The home takes this whole part; were the answer lost, the next change finds it behind and resyncs.
      const part: PresencePart = { epoch: this.epoch, counter: this.nextCounter(topic), members: this.host.presence.localList(topic) }
      this.synced.add(topic)
      return Promise.resolve({ same: false, part })
    })
  }

  // -- In: the members of every object -------------------------------------------

  /** The home sends the topic's members on every object: changes in order, or the whole list. */
  deliver(topic: string, update: SpannedPresence): Promise<SpannedPresenceAnswer> {
    // Ignored, with an answer of no epoch: the home stops sending it.
    if (!this.spans(topic)) return Promise.resolve({ epoch: "", version: 0, edgeEpoch: this.epoch })
    return this.serially(`in:${topic}`, async () => {
      const union = this.unions.get(topic)
      const same = union !== undefined && union.epoch === update.epoch
      if (same && union.version >= update.version) return this.answer(union.epoch, union.version)
      if (update.members !== undefined) return this.install(topic, update.epoch, update.version, update.members, undefined)
      const changes = update.changes ?? []
      if (same && union.version === update.version - changes.length) {
        for (const change of changes) union.members.apply(change)
        union.version = update.version
        sendChanges(topic, union.members, this.countsOnlyAbove, (frame) => this.host.fanOut(topic, frame, undefined))
        return this.answer(union.epoch, union.version)
      }
      // A gap, or no copy (this object woke up since): the whole list.
      return this.fetch(topic, undefined)
    })
  }

  /** Sends one subscriber the topic's whole presence across objects, fetching it first when needed. */
  sendState(connection: LiveConnection, topic: string): void {
    this.serially(`in:${topic}`, async () => {
      // The first local subscriber: this edge was not registered, so what it holds may be stale.
      if (this.host.subscriberCount(topic) <= 1) this.unions.delete(topic)
      if (!this.unions.has(topic)) await this.fetch(topic, connection)
      connection.sendFrame(stateFrameOf(topic, this.unions.get(topic)?.members, this.countsOnlyAbove))
    }).catch((error: unknown) => {
      console.error(`durable-ws: the presence of "${topic}" could not be fetched from its home`, error)
    })
  }

  private async fetch(topic: string, requester: LiveConnection | undefined): Promise<SpannedPresenceAnswer> {
    const { epoch, version, members } = await this.homeOf(topic).presenceState(topic, this.address)
    return this.install(topic, epoch, version, members, requester)
  }

  private install(
    topic: string,
    epoch: string,
    version: number,
    members: PresenceMembers,
    requester: LiveConnection | undefined
  ): SpannedPresenceAnswer {
    const union = this.unions.get(topic)
    if (union !== undefined) {
      union.members.replace(members)
      union.epoch = epoch
      union.version = version
      sendChanges(topic, union.members, this.countsOnlyAbove, (frame) => this.host.fanOut(topic, frame, undefined))
      return this.answer(epoch, version)
    }
    const fresh = new TopicMembers()
    fresh.replace(members)
    fresh.changes.clear()
    fresh.counted = fresh.members.size > this.countsOnlyAbove
    this.unions.set(topic, { epoch, version, members: fresh })
    // What the subscribers here were told before this object woke is not known: they get the whole
    // list, and their client reports the difference from what it showed.
    this.host.fanOut(topic, stateFrameOf(topic, fresh, this.countsOnlyAbove), requester)
    return this.answer(epoch, version)
  }

  private answer(epoch: string, version: number): SpannedPresenceAnswer {
    return { epoch, version, edgeEpoch: this.epoch }
  }
}
