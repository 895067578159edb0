/**
 * All open connections of the current instance, hibernation-aware: after a
 * wake they are read back from the runtime's own socket list.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { ConnectionData, SendOptions } from "./Connection"
import type { MessageLike, MessageSchema, PayloadArgs } from "./Message"
import { messageOf } from "./Message"

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
  readonly send: <M extends MessageLike>(
    clientId: string,
    message: M,
    ...args: PayloadArgs<M, SendOptions>
  ) => Effect.Effect<boolean>
  /** Sends to every open connection; returns how many were reached. */
  readonly broadcast: <M extends MessageLike>(
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
            sent?.push({ clientId, type: messageOf(message).type, payload })
            return true
          }),
        broadcast: (message, ...[payload, options]) =>
          Effect.sync(() => {
            const excluded = new Set((options as BroadcastOptions | undefined)?.exclude ?? [])
            let reached = 0
            for (const c of connections) {
              if (excluded.has(c.clientId)) continue
              sent?.push({ clientId: c.clientId, type: messageOf(message).type, payload })
              reached++
            }
            return reached
          }),
        close: (clientId) => Effect.sync(() => connections.some((c) => c.clientId === clientId))
      })
    )
}
