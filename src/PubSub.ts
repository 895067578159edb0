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
import * as Schema from "effect/Schema"
import { Connection } from "./Connection"
import type { ErrorCode } from "./Errors"
import { TopicError } from "./Errors"
import type { PublishScope } from "./internal/server/scope"
import { currentScope } from "./internal/server/scope"
import type { MessageLike, MessageSchema, PayloadArgs, PayloadResult } from "./Message"
import { encodePayload, isPendingResult, message, messageOf } from "./Message"
import { isReservedType } from "./Protocol"

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
 * the frame was handed to. For a topic that spans objects, the publish is
 * done once the topic's home logged it: `seq` is its place in the topic's
 * order and `matched` counts the edge objects it is being delivered to.
 *
 * @since 0.1.0
 * @category models
 */
export type PublishResult =
  | { readonly ok: true; readonly matched: number; readonly seq?: number }
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
  readonly publish: <M extends MessageLike>(
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
            published?.push({ topic, type: messageOf(message).type, payload: encoded.value })
            return { ok: true, matched: of(topic).size }
          }
          const encoded = encodePayload(messageOf(message), payload)
          return isPendingResult(encoded) ? Effect.promise(() => encoded.then(record)) : Effect.sync(() => record(encoded))
        },
        subscriberCount: (topic) => Effect.sync(() => of(topic).size)
      })
    })
}

/**
 * A listener of a {@link DurablePubSub} channel: it gets each message as
 * published (a string as it was, anything else as JSON text).
 *
 * @since 0.1.0
 * @category models
 */
export type ChannelListener = (message: unknown) => void | Promise<void>

const adHocTypes = 256

/**
 * WS-Kit's `DurablePubSub`, with the API its Cloudflare adapter documents:
 * `publish(channel, message)`, `subscribe(channel, listener)`,
 * `unsubscribe(channel, listener)` and `destroy()`.
 *
 * Listeners are in-memory and belong to this object: create one per
 * Durable Object (in its constructor) for per-instance channels. A publish
 * made while a handler of a durable-ws router runs also reaches the sockets
 * of that instance subscribed to the topic `channel` (`ctx.topics.subscribe`),
 * through the same path as `ctx.publish` — `authorizePublish`, and with
 * `recovery` the log — when the message is a frame: a JSON object (or its
 * text) with a string `type` (its `payload` and `meta` are sent; durable-ws
 * frames carry nothing else). The Effect-native service is {@link PubSub}.
 *
 * @example
 * const pubsub = new DurablePubSub()
 * pubsub.subscribe("notifications", (message) => console.log(message))
 * await pubsub.publish("notifications", JSON.stringify({ type: "NOTIFICATION", payload: { text: "Hello" } }))
 *
 * @since 0.1.0
 * @category constructors
 */
export class DurablePubSub {
  readonly #channels = new Map<string, Set<ChannelListener>>()
  readonly #messages = new Map<string, MessageSchema>()
  #destroyed = false

  /**
   * Publishes to this object's listeners of `channel` (each awaited; one
   * that throws is logged) and, inside a handler, to the instance's
   * subscribers of the topic. Never rejects.
   */
  async publish(channel: string, message: unknown): Promise<void> {
    if (this.#destroyed) return
    const data = typeof message === "string" || message instanceof ArrayBuffer || message instanceof Uint8Array
      ? message
      : JSON.stringify(message)
    const scope = currentScope()
    if (scope !== undefined && typeof data === "string") await this.#toSockets(scope, channel, data)
    for (const listener of Array.from(this.#channels.get(channel) ?? [])) {
      try {
        await listener(data)
      } catch (error) {
        console.error(`durable-ws: a DurablePubSub listener of "${channel}" threw`, error)
      }
    }
  }

  /** Calls `listener` with every message published to `channel` through this object. */
  subscribe(channel: string, listener: ChannelListener): void {
    if (this.#destroyed) return
    let listeners = this.#channels.get(channel)
    if (listeners === undefined) this.#channels.set(channel, listeners = new Set())
    listeners.add(listener)
  }

  unsubscribe(channel: string, listener: ChannelListener): void {
    const listeners = this.#channels.get(channel)
    if (listeners === undefined) return
    listeners.delete(listener)
    if (listeners.size === 0) this.#channels.delete(channel)
  }

  /** Drops every listener; publishing through this object does nothing from then on. */
  destroy(): void {
    this.#destroyed = true
    this.#channels.clear()
    this.#messages.clear()
  }

  async #toSockets(scope: PublishScope, channel: string, text: string): Promise<void> {
    let frame: unknown
    try {
      frame = JSON.parse(text)
    } catch {
      return
    }
    if (frame === null || typeof frame !== "object" || Array.isArray(frame)) return
    const { type, payload, meta } = frame as { type?: unknown; payload?: unknown; meta?: unknown }
    if (typeof type !== "string" || isReservedType(type) || type.length === 0) return
    const definition = this.#messageFor(type)
    const options = meta !== null && typeof meta === "object" && !Array.isArray(meta)
      ? { meta: meta as Readonly<Record<string, unknown>> }
      : undefined
    const result = await scope.publish(channel, definition, payload, options)
    if (!result.ok && result.error !== "INVALID_ARGUMENT") {
      console.error(`durable-ws: DurablePubSub could not publish to "${channel}": ${result.message}`)
    }
  }

  // The frame is the server's own: its payload goes out as it is, checked by no schema.
  #messageFor(type: string): MessageSchema {
    let definition = this.#messages.get(type)
    if (definition === undefined) {
      if (this.#messages.size >= adHocTypes) this.#messages.clear()
      definition = message(type, Schema.Unknown)
      this.#messages.set(type, definition)
    }
    return definition
  }
}
