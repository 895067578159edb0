/**
 * The engine behind the `PubSub` service: subscriptions are stored in each
 * socket's attachment (so they survive hibernation) and mirrored in an
 * in-memory index from topic to connections, rebuilt lazily on the first
 * use after a wake. A publish validates the payload, serializes it once,
 * and sends the same string to every subscriber; a subscriber whose socket
 * is gone is skipped.
 */
import * as Effect from "effect/Effect"
import type { ErrorCode } from "../../Errors"
import { TopicError } from "../../Errors"
import type { MessageSchema, PayloadResult } from "../../Message"
import { encodePayload, isPendingResult } from "../../Message"
import { encodeBatchFrame, encodeFrame } from "../../Protocol"
import type { PublishOptions, PublishResult } from "../../PubSub"
import { checkTopic, maxTopicsPerConnection } from "../../PubSub"
import type { LiveConnection } from "./connection"
import type { RecoveryStore } from "./recovery"
import type { SpanEdge } from "./span"
import { isEffect } from "./generators"

/** A topic authorization hook, given the connection and the topic. */
export type Authorize = (connection: LiveConnection, topic: string) => boolean | PromiseLike<boolean>

const failed = (error: ErrorCode, message: string): PublishResult => ({ ok: false, error, message })

/** A result given now as the Effect of it. */
const asEffect = (result: PublishResult | Effect.Effect<PublishResult>): Effect.Effect<PublishResult> =>
  isEffect(result) ? result as Effect.Effect<PublishResult> : Effect.succeed(result)

// A publish never throws, not even when a validator does: that is the server's fault, reported as such.
const validatorFailed = (message: MessageSchema, error: unknown): PublishResult => {
  console.error(`durable-ws: the validator of "${message.type}" failed`, error)
  return failed("INTERNAL", `The validator of "${message.type}" failed`)
}

export const allowed = (authorize: Authorize | undefined, connection: LiveConnection | undefined, topic: string) =>
  authorize === undefined || connection === undefined
    ? Effect.succeed(true)
    : Effect.tryPromise(async () => (await authorize(connection, topic)) === true).pipe(
      Effect.catch(() => Effect.succeed(false))
    )

/**
 * The pub/sub of one instance: the topic index over its connections, the
 * authorization hooks, and with recovery the log every publish is appended
 * to before it is sent.
 */
export class InstancePubSub {
  private readonly index = new Map<string, Set<LiveConnection>>()
  private indexed = false
  /** Set when the instance has spanning topics: their publishes go to their home, and registration follows the index. */
  span: Pick<SpanEdge, "spans" | "publish" | "joined" | "left" | "handOver"> | undefined

  constructor(
    private readonly connections: () => Iterable<LiveConnection>,
    private readonly authorizeSubscribe?: Authorize,
    private readonly authorizePublish?: Authorize,
    /** With recovery, every publish is logged first and its frame carries `meta.topic` and `meta.seq`. */
    private readonly log?: Pick<RecoveryStore, "append">,
    /** Told of every new subscription (presence sends the topic's state). */
    private readonly subscribed?: (connection: LiveConnection, topic: string) => void
  ) {}

  /** After a wake the index is empty: rebuild it from the attachments once, on first use. */
  private ensureIndex(): void {
    if (this.indexed) return
    this.indexed = true
    for (const connection of this.connections()) {
      // A resuming connection joins once its replay is sent (see `track`).
      if (!connection.closed && !connection.resuming) for (const topic of connection.topicNames()) this.add(topic, connection)
    }
  }

  private add(topic: string, connection: LiveConnection): void {
    let subscribers = this.index.get(topic)
    if (subscribers === undefined) this.index.set(topic, subscribers = new Set())
    subscribers.add(connection)
  }

  /** Registers a connection that just opened or resumed (its topics, if any, are already in its attachment). */
  /** A resumed connection joins the fan-out on every topic it has (its replay is about to be sent). */
  join(connection: LiveConnection): void {
    this.ensureIndex()
    for (const topic of connection.topicNames()) this.add(topic, connection)
  }

  track(connection: LiveConnection): void {
    if (this.indexed && !connection.resuming) for (const topic of connection.topicNames()) this.add(topic, connection)
    // A resumed session may bring a spanning topic this object had unregistered from.
    const span = this.span
    if (span === undefined) return
    for (const topic of connection.topicNames()) {
      if (span.spans(topic)) {
        span.joined(topic).catch((error: unknown) => console.error(`durable-ws: registering for "${topic}" failed`, error))
      }
    }
  }

  subscribe(connection: LiveConnection, topic: string): Effect.Effect<void, TopicError> {
    const problem = checkTopic(topic)
    if (problem !== undefined) {
      return Effect.fail(new TopicError({ topic: String(topic), code: "INVALID_ARGUMENT", message: problem }))
    }
    if (connection.hasTopic(topic)) return Effect.void
    return allowed(this.authorizeSubscribe, connection, topic).pipe(
      Effect.flatMap((ok) => {
        if (!ok) {
          return Effect.fail(
            new TopicError({ topic, code: "PERMISSION_DENIED", message: `Not allowed to subscribe to "${topic}"` })
          )
        }
        if (connection.hasTopic(topic)) return Effect.void
        if (connection.topicCount >= maxTopicsPerConnection) {
          return Effect.fail(
            new TopicError({
              topic,
              code: "RESOURCE_EXHAUSTED",
              message: `A connection may subscribe to at most ${maxTopicsPerConnection} topics`
            })
          )
        }
        this.ensureIndex()
        const tooLarge = connection.addTopic(topic)
        if (tooLarge !== undefined) {
          return Effect.fail(new TopicError({ topic, code: "RESOURCE_EXHAUSTED", message: tooLarge.message }))
        }
        this.add(topic, connection)
        // The subscriber hears the topic's presence once its subscription holds.
        return Effect.tap(this.joinSpanning(connection, topic), () => Effect.sync(() => this.subscribed?.(connection, topic)))
      })
    )
  }

  /** A spanning topic's subscription holds once the home delivers here; if it cannot be reached, it is undone. */
  private joinSpanning(connection: LiveConnection, topic: string): Effect.Effect<void, TopicError> {
    const span = this.span
    if (span === undefined || !span.spans(topic)) return Effect.void
    return Effect.tryPromise(() => span.joined(topic)).pipe(
      Effect.catch((error) => {
        console.error(`durable-ws: registering with the home of "${topic}" failed`, error)
        this.unsubscribe(connection, topic)
        return Effect.fail(
          new TopicError({ topic, code: "UNAVAILABLE", message: `The home of "${topic}" could not be reached` })
        )
      })
    )
  }

  private drop(topic: string, connection: LiveConnection): void {
    const subscribers = this.index.get(topic)
    if (subscribers === undefined || !subscribers.delete(connection)) return
    if (subscribers.size > 0) {
      if (connection.spanMarks?.has(topic) === true) this.span?.handOver(topic, connection)
      return
    }
    this.index.delete(topic)
    if (this.span?.spans(topic) === true) this.span.left(topic)
  }

  unsubscribe(connection: LiveConnection, topic: string): void {
    if (!connection.topics.delete(topic)) return
    connection.persist()
    this.drop(topic, connection)
  }

  /** Drops a closed connection from every topic (its attachment dies with the socket). */
  remove(connection: LiveConnection): void {
    for (const topic of connection.topicNames()) this.drop(topic, connection)
  }

  /** The connections in the fan-out of `topic`. */
  subscribers(topic: string): Iterable<LiveConnection> {
    this.ensureIndex()
    return this.index.get(topic) ?? []
  }

  subscriberCount(topic: string): number {
    this.ensureIndex()
    return this.index.get(topic)?.size ?? 0
  }

  /**
   * Sends frames that came from a spanning topic's home, in order; `origins[i]`
   * is the clientId that excluded itself from `frames[i]`. A subscriber that
   * reads `$batch` frames gets them as one frame, built once for all of them
   * (again only for a subscriber some frame excludes); any other gets one
   * frame per message.
   */
  fanOutFrom(topic: string, frames: ReadonlyArray<string>, origins: ReadonlyArray<string | undefined>): void {
    this.ensureIndex()
    const subscribers = this.index.get(topic)
    if (subscribers === undefined || frames.length === 0) return
    const excluded = new Set<string | undefined>(origins)
    excluded.delete(undefined)
    let whole: string | undefined
    for (const connection of subscribers) {
      // Only a subscriber some frame excludes gets its own list; every other one shares `frames`.
      const own = excluded.has(connection.clientId) ? frames.filter((_, i) => origins[i] !== connection.clientId) : frames
      if (connection.batches && own.length > 1) {
        connection.deliver(own === frames ? whole ??= encodeBatchFrame(frames) : encodeBatchFrame(own))
      } else {
        for (const frame of own) connection.deliver(frame)
      }
    }
  }

  /** Sends one already-serialized frame to every subscriber of `topic`. */
  fanOut(topic: string, frame: string, exclude: LiveConnection | undefined): number {
    this.ensureIndex()
    const subscribers = this.index.get(topic)
    if (subscribers === undefined) return 0
    let matched = 0
    for (const connection of subscribers) {
      if (connection !== exclude && connection.deliver(frame)) matched++
    }
    return matched
  }

  /** {@link start} as an Effect (the `PubSub` service's publish). */
  publish(
    topic: string,
    message: MessageSchema,
    payload: unknown,
    options: PublishOptions | undefined,
    from: LiveConnection | undefined
  ): Effect.Effect<PublishResult> {
    return Effect.suspend(() => asEffect(this.start(topic, message, payload, options, from)))
  }

  /**
   * A publish as far as it goes now: checked, encoded and sent, its result;
   * or, when it has to wait (a spanning topic's home, an authorization hook,
   * an asynchronous validator), the Effect that finishes it.
   */
  start(
    topic: string,
    message: MessageSchema,
    payload: unknown,
    options: PublishOptions | undefined,
    from: LiveConnection | undefined
  ): PublishResult | Effect.Effect<PublishResult> {
    const problem = checkTopic(topic)
    if (problem !== undefined) return failed("INVALID_ARGUMENT", problem)
    let encoded: PayloadResult | Promise<PayloadResult>
    try {
      encoded = encodePayload(message, payload)
    } catch (error) {
      return validatorFailed(message, error)
    }
    if (isPendingResult(encoded)) {
      const pending = encoded
      return Effect.tryPromise({ try: () => pending, catch: (error) => error }).pipe(
        Effect.matchEffect({
          onFailure: (error) => Effect.sync(() => validatorFailed(message, error)),
          onSuccess: (settled) => asEffect(this.deliver(topic, message, settled, options, from))
        })
      )
    }
    return this.deliver(topic, message, encoded, options, from)
  }

  private deliver(
    topic: string,
    message: MessageSchema,
    encoded: PayloadResult,
    options: PublishOptions | undefined,
    from: LiveConnection | undefined
  ): PublishResult | Effect.Effect<PublishResult> {
    if (!encoded.ok) return failed("INVALID_ARGUMENT", encoded.error.message)
    const span = this.span
    const spanning = span !== undefined && span.spans(topic)
    const authorize = this.authorizePublish
    const checked = authorize !== undefined && from !== undefined
    if (!spanning && !checked) return this.deliverHere(topic, message, encoded.value, options, from)
    const send = spanning
      ? () =>
        Effect.promise(() =>
          span.publish(topic, message.type, encoded.value, options?.meta, options?.excludeSelf === true ? from?.clientId : undefined)
        )
      : () => Effect.sync(() => this.deliverHere(topic, message, encoded.value, options, from))
    if (!checked) return send()
    return allowed(authorize, from, topic).pipe(
      Effect.flatMap((ok) => ok ? send() : Effect.succeed(failed("PERMISSION_DENIED", `Not allowed to publish to "${topic}"`)))
    )
  }

  private deliverHere(
    topic: string,
    message: MessageSchema,
    payload: unknown,
    options: PublishOptions | undefined,
    from: LiveConnection | undefined
  ): PublishResult {
    const exclude = options?.excludeSelf === true ? from : undefined
    let frame: string
    if (this.log === undefined) {
      frame = encodeFrame(message.type, payload, options?.meta)
    } else {
      try {
        // Appended before anything is sent: a frame no log holds is never delivered.
        frame = this.log.append(topic, message.type, payload, options?.meta, exclude?.clientId)
      } catch (error) {
        console.error("durable-ws: the publish could not be logged", error)
        return failed("UNAVAILABLE", "The publish could not be logged")
      }
    }
    return { ok: true, matched: this.fanOut(topic, frame, exclude) }
  }
}
