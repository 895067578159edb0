/**
 * The built-in services over one instance: the values of the `Connection`,
 * `Connections` and `PubSub` tags that handlers `yield*`. The tags and
 * their test layers are public; these implementations need the engine's
 * live connections, so only the engine builds them.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Connection } from "../../Connection"
import type { ConnectionInfo } from "../../Connections"
import { Connections } from "../../Connections"
import type { BroadcastOptions } from "../../Connections"
import type { SendOptions } from "../../Connection"
import type { PayloadResult } from "../../Message"
import { encodePayload, isPendingResult, messageOf } from "../../Message"
import { encodeFrame } from "../../Protocol"
import { PubSub } from "../../PubSub"
import type { LiveConnection } from "./connection"
import { bindService, liveConnectionOf, outboundError, sendEffect } from "./connection"
import type { InstancePubSub } from "./pubsub"
import { Presence } from "../../Presence"
import type { Instance } from "./instance"

/**
 * The service for one live connection of an instance: what Effect handlers
 * see as `yield* Connection`.
 */
export const connectionService = (connection: LiveConnection): Connection["Service"] =>
  bindService(
    Connection.of({
      clientId: connection.clientId,
      get data() {
        return connection.data
      },
      // Read when asked: the connection makes its set of topics on first use.
      get topics() {
        return connection.topics
      },
      send: (message, ...[payload, options]) => sendEffect(connection, messageOf(message), payload, options),
      assignData: (partial) =>
        Effect.suspend(() => {
          const tooLarge = connection.assignData(partial)
          return tooLarge === undefined ? Effect.void : Effect.fail(tooLarge)
        }),
      close: (code, reason) => Effect.sync(() => connection.close(code, reason))
    }),
    connection
  )

/** What {@link connectionsService} reads: the open connections, after a wake read back from the runtime. */
export interface ConnectionSource {
  readonly connections: () => Iterable<LiveConnection>
  readonly count: () => number
  /** With recovery: ends the session of a client that is away, when `code` ends sessions. */
  readonly endSession?: (clientId: string, code: number) => boolean
}

/** A snapshot of one live connection. */
export const infoOf = (connection: LiveConnection): ConnectionInfo => ({
  clientId: connection.clientId,
  data: connection.data,
  topics: Array.from(connection.topics)
})

/** The service over one instance's connections. */
export const connectionsService = (source: ConnectionSource): Connections["Service"] => {
  const find = (clientId: string): LiveConnection | undefined => {
    for (const connection of source.connections()) if (connection.clientId === clientId) return connection
    return undefined
  }
  return Connections.of({
    count: Effect.sync(source.count),
    list: Effect.sync(() => Array.from(source.connections(), infoOf)),
    send: (clientId, message, ...[payload, options]) =>
      Effect.suspend(() => {
        const connection = find(clientId)
        if (connection === undefined) return Effect.succeed(false)
        return Effect.as(sendEffect(connection, messageOf(message), payload, options as SendOptions | undefined), true)
      }),
    broadcast: (message, ...[payload, options]) =>
      Effect.suspend(() => {
        const opts = options as BroadcastOptions | undefined
        const meta = { timestamp: Date.now(), ...opts?.meta }
        // Validated and serialized once for everyone.
        const deliver = (encoded: PayloadResult): number => {
          if (!encoded.ok) throw outboundError(encoded.error.message)
          const frame = encodeFrame(messageOf(message).type, encoded.value, meta)
          const excluded = new Set(opts?.exclude ?? [])
          let reached = 0
          for (const connection of source.connections()) {
            if (!excluded.has(connection.clientId) && connection.sendFrame(frame)) reached++
          }
          return reached
        }
        const encoded = encodePayload(messageOf(message), payload)
        return isPendingResult(encoded) ? Effect.promise(() => encoded.then(deliver)) : Effect.sync(() => deliver(encoded))
      }),
    close: (clientId, code, reason) =>
      Effect.sync(() => {
        const connection = find(clientId)
        if (connection !== undefined) {
          connection.close(code, reason)
          return true
        }
        return code !== undefined && source.endSession?.(clientId, code) === true
      })
  })
}

/** The live connection behind the current `Connection`; one made elsewhere cannot subscribe here. */
const currentConnection = Effect.flatMap(Connection, (service) => {
  const connection = liveConnectionOf(service)
  return connection === undefined
    ? Effect.die(new Error("durable-ws: this Connection does not belong to a durable-ws instance"))
    : Effect.succeed(connection)
})

/** The {@link PubSub} service over one instance's pub/sub. */
export const pubSubService = (pubsub: InstancePubSub): PubSub["Service"] =>
  PubSub.of({
    subscribe: (topic) => Effect.flatMap(currentConnection, (c) => pubsub.subscribe(c, topic)),
    unsubscribe: (topic) => Effect.map(currentConnection, (c) => pubsub.unsubscribe(c, topic)),
    // Inside a handler the publish is the current connection's: authorized, and excludeSelf applies.
    publish: (topic, message, ...[payload, options]) =>
      Effect.flatMap(
        Effect.serviceOption(Connection),
        (c) => pubsub.publish(topic, messageOf(message), payload, options, Option.isSome(c) ? liveConnectionOf(c.value) : undefined)
      ),
    subscriberCount: (topic) => Effect.sync(() => pubsub.subscriberCount(topic))
  })

/** The {@link Presence} service over one instance's presence: a connection tracks only itself. */
export const presenceService = (instance: Pick<Instance, "presenceOr" | "presence">): Presence["Service"] =>
  Presence.of({
    track: (topic, key, meta) =>
      Effect.flatMap(currentConnection, (c) => Effect.flatMap(instance.presenceOr(topic), (p) => p.track(c, topic, key, meta ?? null))),
    update: (topic, meta) =>
      Effect.flatMap(currentConnection, (c) => Effect.flatMap(instance.presenceOr(topic), (p) => p.update(c, topic, meta))),
    untrack: (topic) => Effect.map(currentConnection, (c) => instance.presence?.untrack(c, topic)),
    list: (topic) => Effect.sync(() => instance.presence?.list(topic) ?? {})
  })
