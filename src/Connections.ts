/**
 * All open connections of the current instance, hibernation-aware: after a
 * wake they are read back from the runtime's own socket list.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { LiveConnection } from "./internal/connection"
import { outboundError, sendEffect } from "./internal/connection"
import type { ConnectionData, SendOptions } from "./internal/data"
import type { MessageSchema, PayloadArgs, PayloadResult } from "./Message"
import { encodeFrame, encodePayload, isPendingResult } from "./Message"

/**
 * A snapshot of one connection.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConnectionInfo<TData = Readonly<Record<string, unknown>>> {
  readonly clientId: string
  readonly data: ConnectionData<TData>
  readonly topics: ReadonlyArray<string>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface BroadcastOptions extends SendOptions {
  /** clientIds that should not receive the frame. */
  readonly exclude?: ReadonlyArray<string>
}

/**
 * @since 0.1.0
 * @category services
 */
export class Connections extends Context.Service<Connections, {
  readonly count: Effect.Effect<number>
  readonly list: Effect.Effect<ReadonlyArray<ConnectionInfo>>
  /** Sends to one connection; false when no open connection has that clientId. */
  readonly send: <M extends MessageSchema>(
    clientId: string,
    message: M,
    ...args: PayloadArgs<M, SendOptions>
  ) => Effect.Effect<boolean>
  /** Sends to every open connection; returns how many were reached. */
  readonly broadcast: <M extends MessageSchema>(
    message: M,
    ...args: PayloadArgs<M, BroadcastOptions>
  ) => Effect.Effect<number>
  /**
   * Closes one connection (e.g. kicks it with `CloseCodes.Forbidden`, which
   * tells the client not to come back). With `recovery`, a terminal code
   * (1000, 1008, 4400–4499 except 4409) also ends its session, and ends the
   * session of a client that is away (no open socket), so it cannot resume.
   * False when there was neither an open connection nor a session to end.
   */
  readonly close: (clientId: string, code?: number, reason?: string) => Effect.Effect<boolean>
}>()("durable-ws/Connections") {
  /**
   * A fixed set of connections for unit tests of Effect code; what is sent
   * to them is pushed to `sent`.
   *
   * @since 0.1.0
   * @category layers
   */
  static readonly layerTest = (
    connections: ReadonlyArray<ConnectionInfo>,
    sent?: Array<{ readonly clientId: string; readonly type: string; readonly payload: unknown }>
  ): Layer.Layer<Connections> =>
    Layer.succeed(
      Connections,
      Connections.of({
        count: Effect.sync(() => connections.length),
        list: Effect.sync(() => connections),
        send: (clientId, message, ...[payload]) =>
          Effect.sync(() => {
            if (!connections.some((c) => c.clientId === clientId)) return false
            sent?.push({ clientId, type: message.type, payload })
            return true
          }),
        broadcast: (message, ...[payload, options]) =>
          Effect.sync(() => {
            const excluded = new Set((options as BroadcastOptions | undefined)?.exclude ?? [])
            let reached = 0
            for (const c of connections) {
              if (excluded.has(c.clientId)) continue
              sent?.push({ clientId: c.clientId, type: message.type, payload })
              reached++
            }
            return reached
          }),
        close: (clientId) => Effect.sync(() => connections.some((c) => c.clientId === clientId))
      })
    )
}

/**
 * What {@link make} reads: the instance's open connections, after a wake
 * read back from the runtime's own socket list.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConnectionSource {
  readonly connections: () => Iterable<LiveConnection>
  readonly count: () => number
  /** With recovery: ends the session of a client that is away, when `code` ends sessions. */
  readonly endSession?: (clientId: string, code: number) => boolean
}

/**
 * A snapshot of one live connection.
 *
 * @since 0.1.0
 * @category constructors
 */
export const infoOf = (connection: LiveConnection): ConnectionInfo => ({
  clientId: connection.clientId,
  data: connection.data,
  topics: Array.from(connection.topics)
})

/**
 * The service over one instance's connections.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (source: ConnectionSource): Connections["Service"] => {
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
        return Effect.as(sendEffect(connection, message, payload, options as SendOptions | undefined), true)
      }),
    broadcast: (message, ...[payload, options]) =>
      Effect.suspend(() => {
        const opts = options as BroadcastOptions | undefined
        const meta = { timestamp: Date.now(), ...opts?.meta }
        // Validated and serialized once for everyone.
        const deliver = (encoded: PayloadResult): number => {
          if (!encoded.ok) throw outboundError(encoded.error.message)
          const frame = encodeFrame(message.type, encoded.value, meta)
          const excluded = new Set(opts?.exclude ?? [])
          let reached = 0
          for (const connection of source.connections()) {
            if (!excluded.has(connection.clientId) && connection.sendFrame(frame)) reached++
          }
          return reached
        }
        const encoded = encodePayload(message, payload)
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

/**
 * A layer providing {@link Connections} over the given source.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (source: ConnectionSource): Layer.Layer<Connections> => Layer.succeed(Connections, make(source))
