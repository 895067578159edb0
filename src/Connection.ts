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
import { mergeData } from "./internal/server/data"
import type { MessageLike, MessageSchema, PayloadArgs, PayloadResult } from "./Message"
import { encodePayload, isPendingResult, messageOf } from "./Message"

/**
 * The fields durable-ws sets on every connection; `authenticate` cannot
 * overwrite them.
 *
 * @since 0.1.0
 * @category models
 */
export interface SystemData {
  readonly clientId: string
  readonly resourceId?: string
  readonly connectedAt: number
}

/**
 * The data of a connection: the system fields next to what `authenticate`
 * returned and `assignData` added.
 *
 * @since 0.1.0
 * @category models
 */
export type ConnectionData<TData = {}> = SystemData & TData

/**
 * The name WS-Kit's Cloudflare adapter documents for the data of a
 * connection: `clientId` (UUID v7), `resourceId?`, `connectedAt`, and what
 * `authenticate` returned. The same type as {@link ConnectionData}.
 *
 * @since 0.1.0
 * @category models
 */
export type DurableObjectWebSocketData<T = Record<string, unknown>> = ConnectionData<T>

/**
 * Options for `send`.
 *
 * @since 0.1.0
 * @category models
 */
export interface SendOptions {
  /** Extra fields for the frame's `meta`. */
  readonly meta?: Readonly<Record<string, unknown>>
  /** A send whose signal is already aborted is skipped. */
  readonly signal?: AbortSignal | undefined
  /** In a handler: copies the message's `correlationId` (when it has one) into the frame's `meta`. */
  readonly inheritCorrelationId?: boolean | undefined
  /**
   * In a handler: makes `send` return a Promise of whether the frame was
   * handed to the socket (after an asynchronous validator, if any).
   * workerd shows no send buffer, so `"drain"` and `"ack"` both mean that.
   */
  readonly waitFor?: "drain" | "ack" | undefined
}

/**
 * The largest serialized connection state (data plus subscriptions) a
 * connection may have: workerd keeps at most this much per hibernatable
 * socket.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxAttachmentBytes = 16 * 1024

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
