/**
 * The current connection: who it is, its data, and how to talk to it.
 *
 * Connection data always carries `clientId` (UUID v7), `connectedAt` and,
 * when the URL names one, `resourceId`, next to what `authenticate`
 * returned. It lives in the socket attachment, so it survives hibernation.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { PayloadTooLarge } from "./Errors"
import type { LiveConnection } from "./internal/connection"
import { bindService, sendEffect } from "./internal/connection"
import type { ConnectionData, SendOptions } from "./internal/data"
import { mergeData } from "./internal/data"
import type { MessageLike, PayloadArgs, PayloadResult } from "./Message"
import { encodePayload, isPendingResult, messageOf } from "./Message"

export type { ConnectionData, SendOptions, Socket, SystemData } from "./internal/data"
export { maxAttachmentBytes, mergeData, resourceIdOf } from "./internal/data"

/**
 * The connection whose message (or lifecycle event) is being handled.
 *
 * @since 0.1.0
 * @category services
 */
export class Connection extends Context.Service<Connection, {
  readonly clientId: string
  /** A live view of the connection data. */
  readonly data: ConnectionData<Readonly<Record<string, unknown>>>
  readonly topics: ReadonlySet<string>
  readonly send: <M extends MessageLike>(message: M, ...args: PayloadArgs<M, SendOptions>) => Effect.Effect<void>
  readonly assignData: (partial: Readonly<Record<string, unknown>>) => Effect.Effect<void, PayloadTooLarge>
  readonly close: (code?: number, reason?: string) => Effect.Effect<void>
}>()("durable-ws/Connection") {
  /**
   * A stand-in connection for unit tests of Effect code: what it is sent is
   * pushed to `sent` (validated like a real send), `close` is recorded too.
   *
   * @since 0.1.0
   * @category layers
   */
  static readonly layerTest = (options: {
    readonly clientId?: string
    readonly data?: Readonly<Record<string, unknown>>
    readonly sent?: Array<{ readonly type: string; readonly payload: unknown }>
    readonly closed?: Array<{ readonly code?: number; readonly reason?: string }>
  } = {}): Layer.Layer<Connection> =>
    Layer.sync(Connection, () => {
      const clientId = options.clientId ?? "test-client"
      let data = mergeData({ clientId, connectedAt: 0 }, options.data)
      return Connection.of({
        clientId,
        get data() {
          return data
        },
        topics: new Set<string>(),
        send: (message, ...[payload]) =>
          Effect.suspend(() => {
            const record = (encoded: PayloadResult) => {
              if (!encoded.ok) throw new Error(`durable-ws: outbound ${encoded.error.message}`)
              options.sent?.push({ type: messageOf(message).type, payload: encoded.value })
            }
            const encoded = encodePayload(messageOf(message), payload)
            return isPendingResult(encoded) ? Effect.promise(() => encoded.then(record)) : Effect.sync(() => record(encoded))
          }),
        assignData: (partial) => Effect.sync(() => void (data = mergeData(data, partial))),
        close: (code, reason) =>
          Effect.sync(() =>
            void options.closed?.push({
              ...(code === undefined ? {} : { code }),
              ...(reason === undefined ? {} : { reason })
            })
          )
      })
    })
}

/**
 * The service for one live connection of an instance: what Effect handlers
 * see as `yield* Connection`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (connection: LiveConnection): Connection["Service"] =>
  bindService(
    Connection.of({
      clientId: connection.clientId,
      get data() {
        return connection.data
      },
      topics: connection.topics,
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

/**
 * A layer providing {@link Connection} for one live connection.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (connection: LiveConnection): Layer.Layer<Connection> => Layer.succeed(Connection, make(connection))
