/**
 * Topics that span objects (SPEC §14): one topic, subscribers on many
 * Durable Objects, every subscriber seeing the topic's messages in one
 * order, each once.
 *
 * A spanning topic has a **home**: one object of a namespace the
 * application binds (a class extending {@link SpanningTopicHome}), chosen
 * with `idFromName(topic)`. The home numbers each publish, logs it in its
 * SQLite and delivers it to the **edges** (the application's WebSocket
 * objects) that have local subscribers: batched, one call in flight per
 * edge, acknowledged, retried with backoff from the home's alarm (so a
 * restarted home picks its deliveries up again). An edge keeps a
 * watermark per topic (in memory and a subscriber's socket attachment, or
 * in its recovery log), so a delivery that arrives twice is dropped and a
 * gap is fetched from the home before anything after it is sent.
 *
 * Every call between the two is a Durable Object RPC (a method called
 * through a stub): no public request reaches it, since neither class
 * answers those methods through `fetch`.
 *
 * @since 0.1.0
 */
import { DurableObject } from "cloudflare:workers"
import type { PresenceEdge, PresencePart, PresencePartAnswer, SpannedPresence } from "./Presence"
import type { PresenceMembers } from "./Protocol"
import { HomePresence, presenceStubOf } from "./internal/server/spanHomePresence"
import { edgeStubOf } from "./internal/server/bindings"
import { TopicHome } from "./internal/server/spanHome"

/**
 * The `span` option of a WebSocket object: which topics span objects,
 * where their homes live, and how the homes reach this object back.
 *
 * ```ts
 * span: {
 *   topics: (topic) => topic.startsWith("announcements"),
 *   home: (env) => env.TOPIC_HOME,
 *   edge: "ROOMS"
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface SpanOptions {
  /** The topics that span objects: a predicate, or a RegExp (used with `test`, so anchor it: `/^news(:|$)/`). */
  readonly topics: ((topic: string) => boolean) | RegExp
  /** The namespace of the home objects (a class extending {@link SpanningTopicHome}). */
  readonly home: (env: Cloudflare.Env) => DurableObjectNamespace<SpanningTopicHome>
  /**
   * The name of this object's own binding in `env` (e.g. `"ROOMS"`): a home
   * calls an edge back through `env[edge].get(id)`.
   */
  readonly edge: string
}

/**
 * One logged publish of a spanning topic, as a home hands it to an edge.
 *
 * @since 0.1.0
 * @category models
 */
export interface SpannedEntry {
  readonly seq: number
  readonly type: string
  /**
   * The payload as the JSON text the home logged (`undefined` for none): an
   * edge puts it in its frames as it is, never parsing it again.
   */
  readonly payloadJson: string | undefined
  readonly meta: Readonly<Record<string, unknown>> | undefined
  /** The publishing connection when it excluded itself. */
  readonly origin: string | undefined
}

/**
 * What a home sends an edge in one call: for each topic, entries in
 * increasing `seq` with no hole between them.
 *
 * @since 0.1.0
 * @category models
 */
export interface SpannedDelivery {
  readonly topics: ReadonlyArray<{ readonly topic: string; readonly entries: ReadonlyArray<SpannedEntry> }>
}

/**
 * An edge's acknowledgement: for each topic, the last `seq` it has sent to
 * its subscribers (its watermark).
 *
 * @since 0.1.0
 * @category models
 */
export interface SpannedAnswer {
  readonly topics: ReadonlyArray<{ readonly topic: string; readonly seq: number }>
}

/**
 * How a home reaches an edge: its id and the binding of its namespace.
 *
 * @since 0.1.0
 * @category models
 */
export interface EdgeAddress {
  readonly id: string
  readonly binding: string
}

/**
 * A home's answer to a registration: the topic's current `seq` (a new edge
 * receives everything after it), whether the edge was new to the home, and
 * the last `seq` the edge acknowledged (the current one when it was new).
 *
 * @since 0.1.0
 * @category models
 */
export interface Registration {
  readonly seq: number
  readonly fresh: boolean
  readonly acked: number
}

/**
 * A home's answer to a gap fetch: the logged entries after the given
 * `seq`, and `from`, the first `seq` the log still holds.
 *
 * @since 0.1.0
 * @category models
 */
export interface LoggedEntries {
  readonly entries: ReadonlyArray<SpannedEntry>
  readonly from: number
}

/**
 * The method a home calls on an edge. `WebSocketDurableObject` classes
 * have it; a class built with `createDurableObjectHandler` forwards it to
 * its handler's `deliverSpanned`.
 *
 * @since 0.1.0
 * @category models
 */
export interface SpanningEdge {
  deliverSpanned(delivery: SpannedDelivery): Promise<SpannedAnswer>
}

/**
 * A home's tuning; a subclass overrides {@link SpanningTopicHome.settings}.
 *
 * @since 0.1.0
 * @category models
 */
export interface HomeSettings {
  /** Entries per call to one edge (default 256). */
  readonly maxBatch: number
  /**
   * While publishes come faster than an edge answers (its last call carried
   * several entries), the next call to it waits for a quiet moment of the
   * home (5 ms without a publish to handle) or this long after the answer,
   * whichever comes first, so each call carries more entries (default 50
   * ms; 0 turns it off). A publish after a quiet spell goes at once.
   */
  readonly lingerMs: number
  /** A call to an edge not answered within this counts as failed and is retried (default 10 000 ms). */
  readonly edgeTimeoutMs: number
  /** The first retry's delay; each next one doubles, with jitter (default 100 ms). */
  readonly retryDelayMs: number
  /** The longest delay between retries (default 5 000 ms). */
  readonly maxRetryDelayMs: number
  /** Log entries kept per topic for gap fetches and redelivery (default 10 000). */
  readonly maxMessages: number
  /**
   * An edge's acknowledged position is written to SQLite once it is this
   * many entries ahead of the written one (default 1 000): after a restart
   * the home redelivers at most that many entries, which the edge drops.
   */
  readonly ackWriteEvery: number
  /** Presence across objects: how long changes from the edges are collected before one goes out (default 20 ms). */
  readonly presenceFlushMs: number
  /** Every this often, each edge with members not heard from lately is asked whether the home's copy is current (default 60 000 ms). */
  readonly presenceCheckMs: number
  /** An edge with members that has not answered for this long is dropped: its members leave (default 180 000 ms). */
  readonly presenceDropMs: number
  /** Connections (metas) one edge may have in one topic's presence (default 10 000). */
  readonly maxPresencePerEdge: number
  /** Largest meta an edge may send, in bytes of its JSON (default 1024, as the edge's own default). */
  readonly maxPresenceMetaBytes: number
  /** Longest key an edge may send (default 256, as the edge's own default). */
  readonly maxPresenceKeyLength: number
}

/**
 * @since 0.1.0
 * @category constants
 */
export const defaultHomeSettings: HomeSettings = {
  maxBatch: 256,
  lingerMs: 50,
  edgeTimeoutMs: 10_000,
  retryDelayMs: 100,
  maxRetryDelayMs: 5_000,
  maxMessages: 10_000,
  ackWriteEvery: 1_000,
  presenceFlushMs: 20,
  presenceCheckMs: 60_000,
  presenceDropMs: 180_000,
  maxPresencePerEdge: 10_000,
  maxPresenceMetaBytes: 1024,
  maxPresenceKeyLength: 256
}

/**
 * The home of spanning topics. Export a subclass from the Worker and bind
 * it as a SQLite-backed Durable Object:
 *
 * ```ts
 * export class TopicHome extends SpanningTopicHome {}
 * ```
 *
 * Its methods are called by edges through stubs; its `fetch` answers 404,
 * so a public request routed to it reaches nothing. Its alarm is the
 * library's: the home retries deliveries from it.
 *
 * @since 0.1.0
 * @category constructors
 */
export class SpanningTopicHome extends DurableObject<Cloudflare.Env> {
  /** Override to tune batching, timeouts, retries and the log's length. */
  protected readonly settings: Partial<HomeSettings> = {}
  private engine: TopicHome | undefined

  private get home(): TopicHome {
    // Built on first use: a subclass's `settings` is not set yet while the base constructor runs.
    return this.engine ??= new TopicHome(this.ctx, { ...defaultHomeSettings, ...this.settings }, (edge, delivery) =>
      this.deliverTo(edge, delivery))
  }

  /**
   * Calls an edge. Tests override it to inject failures and timeouts; the
   * home treats a rejection or a call past `edgeTimeoutMs` as failed.
   */
  protected deliverTo(edge: EdgeAddress, delivery: SpannedDelivery): Promise<SpannedAnswer> {
    let stub: SpanningEdge
    try {
      stub = edgeStubOf<SpanningEdge>(this.env, edge)
    } catch (error) {
      return Promise.reject(error)
    }
    return stub.deliverSpanned(delivery)
  }

  /** Logs a publish and starts its delivery; resolves with its `seq` and the edges it goes to. */
  publish(
    topic: string,
    type: string,
    payload: unknown,
    meta: Readonly<Record<string, unknown>> | undefined,
    origin: string | undefined
  ): { readonly seq: number; readonly edges: number } {
    return this.home.publish(topic, type, payload, meta, origin)
  }

  /** An edge's first local subscriber to `topic`. */
  register(topic: string, edge: EdgeAddress): Registration {
    return this.home.register(topic, edge)
  }

  /** An edge's last local subscriber to `topic` left. */
  unregister(topic: string, edgeId: string): void {
    this.home.unregister(topic, edgeId)
  }

  /** Logged entries of `topic` after `after` (at most `limit`): what an edge fetches to close a gap. */
  read(topic: string, after: number, limit: number): LoggedEntries {
    return this.home.read(topic, after, limit)
  }

  /** The topic's current `seq`, and the edges registered for it. */
  status(topic: string): { readonly seq: number; readonly edges: ReadonlyArray<string> } {
    return this.home.status(topic)
  }

  private presenceEngine: HomePresence | undefined

  private get presence(): HomePresence {
    const home = this.home
    return this.presenceEngine ??= new HomePresence({
      state: this.ctx,
      env: this.env,
      settings: { ...defaultHomeSettings, ...this.settings },
      edgesOf: (topic) => home.edgesOf(topic),
      edgeOf: (topic, id) => home.edgeOf(topic, id),
      watch: (at) => home.watch(at),
      edge: (address) => this.presenceEdge(address)
    })
  }

  /** How the home reaches an edge's presence methods. Tests override it to make an edge fail. */
  protected presenceEdge(edge: EdgeAddress): PresenceEdge {
    return presenceStubOf(this.env, edge)
  }

  /** An edge's own members of `topic` changed (SPEC §15 across objects); only objects call this. */
  presenceUpdate(topic: string, edge: EdgeAddress, part: PresencePart): PresencePartAnswer {
    return this.presence.update(topic, edge, part)
  }

  /** The members of `topic` on every object, for an edge without a current copy. */
  presenceState(topic: string, edge: EdgeAddress): Promise<SpannedPresence & { readonly members: PresenceMembers }> {
    return this.presence.state(topic, edge)
  }

  /** The topic's presence version, the edges with members, and how many members. */
  presenceStatus(topic: string): { readonly version: number; readonly edges: ReadonlyArray<string>; readonly members: number } {
    return this.presence.status(topic)
  }

  override async alarm(): Promise<void> {
    await this.home.alarm()
    this.presence.alarm()
  }

  override fetch(): Response {
    return new Response("not found", { status: 404 })
  }
}
