/**
 * Topics and publishing, scoped to one Durable Object instance.
 *
 * Subscriptions survive hibernation (they are kept with each socket); a
 * publish validates the payload, serializes it once, and sends the same
 * string to every subscriber of the topic in this instance. Inside a
 * handler a publish is the current connection's: `authorizePublish` is
 * consulted and `excludeSelf` applies.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Connection } from "./Connection"
import type { ErrorCode } from "./Errors"
import { TopicError } from "./Errors"
import type { MessageSchema, PayloadArgs, PayloadResult } from "./Message"
import { encodePayload, isPendingResult } from "./Message"

/**
 * @since 0.1.0
 * @category models
 */
export interface PublishOptions {
  /** Do not deliver to the connection that is publishing. */
  readonly excludeSelf?: boolean
  /** Extra fields for the published frame's `meta`. */
  readonly meta?: Readonly<Record<string, unknown>>
}

/**
 * The outcome of a publish; it never throws. `matched` counts the sockets
 * the frame was handed to.
 *
 * @since 0.1.0
 * @category models
 */
export type PublishResult =
  | { readonly ok: true; readonly matched: number }
  | { readonly ok: false; readonly error: ErrorCode; readonly message: string }

/**
 * @since 0.1.0
 * @category constants
 */
export const maxTopicsPerConnection = 100

/**
 * @since 0.1.0
 * @category constants
 */
export const maxTopicLength = 256

/**
 * Why a topic name is refused (empty, too long, not a string), or
 * `undefined` for a valid one: the check every subscribe and publish makes.
 *
 * @since 0.1.0
 * @category predicates
 */
export const checkTopic = (topic: unknown): string | undefined =>
  typeof topic !== "string"
    ? "Topic must be a string"
    : topic.length === 0
    ? "Topic must not be empty"
    : topic.length > maxTopicLength
    ? `Topic is longer than ${maxTopicLength} characters`
    : undefined

/**
 * Pub/sub for the current instance.
 *
 * @since 0.1.0
 * @category services
 */
export class PubSub extends Context.Service<PubSub, {
  readonly subscribe: (topic: string) => Effect.Effect<void, TopicError, Connection>
  readonly unsubscribe: (topic: string) => Effect.Effect<void, never, Connection>
  readonly publish: <M extends MessageSchema>(
    topic: string,
    message: M,
    ...args: PayloadArgs<M, PublishOptions>
  ) => Effect.Effect<PublishResult>
  readonly subscriberCount: (topic: string) => Effect.Effect<number>
}>()("durable-ws/PubSub") {
  /**
   * An in-memory pub/sub for unit tests of Effect code: subscriptions are
   * kept per clientId, and every successful publish is pushed to `published`.
   *
   * @since 0.1.0
   * @category layers
   */
  static readonly layerTest = (
    published?: Array<{ readonly topic: string; readonly type: string; readonly payload: unknown }>
  ): Layer.Layer<PubSub> =>
    Layer.sync(PubSub, () => {
      const subscribers = new Map<string, Set<string>>()
      const of = (topic: string) => {
        let set = subscribers.get(topic)
        if (set === undefined) subscribers.set(topic, set = new Set())
        return set
      }
      return PubSub.of({
        subscribe: (topic) =>
          Effect.flatMap(Connection, (connection) => {
            const problem = checkTopic(topic)
            if (problem !== undefined) return Effect.fail(new TopicError({ topic, code: "INVALID_ARGUMENT", message: problem }))
            of(topic).add(connection.clientId)
            return Effect.void
          }),
        unsubscribe: (topic) => Effect.map(Connection, (connection) => void of(topic).delete(connection.clientId)),
        publish: (topic, message, ...[payload]) => {
          const record = (encoded: PayloadResult): PublishResult => {
            if (!encoded.ok) return { ok: false, error: "INVALID_ARGUMENT", message: encoded.error.message }
            published?.push({ topic, type: message.type, payload: encoded.value })
            return { ok: true, matched: of(topic).size }
          }
          const encoded = encodePayload(message, payload)
          return isPendingResult(encoded) ? Effect.promise(() => encoded.then(record)) : Effect.sync(() => record(encoded))
        },
        subscriberCount: (topic) => Effect.sync(() => of(topic).size)
      })
    })
}

/**
 * The name WS-Kit's Cloudflare adapter gives the per-instance pub/sub: in
 * durable-ws it is the {@link PubSub} service, which every instance
 * provides to its handlers.
 *
 * @since 0.1.0
 * @category services
 */
export const DurablePubSub = PubSub

/**
 * @since 0.1.0
 * @category services
 */
export type DurablePubSub = PubSub
