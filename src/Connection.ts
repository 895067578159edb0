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
import type { MessageSchema, PayloadArgs } from "./Message"
import { encodePayload } from "./Message"

/**
 * The fields the runtime sets on every connection; `authenticate` cannot
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
 * @since 0.1.0
 * @category models
 */
export type ConnectionData<TData = {}> = SystemData & TData

/**
 * The subset of `WebSocket` the runtime talks to.
 *
 * @since 0.1.0
 * @category models
 */
export interface Socket {
  readonly readyState: number
  send(message: string): void
  close(code?: number, reason?: string): void
}

/**
 * Options for `send`.
 *
 * @since 0.1.0
 * @category models
 */
export interface SendOptions {
  /** Extra fields for the frame's `meta`. */
  readonly meta?: Readonly<Record<string, unknown>>
}

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
  readonly send: <M extends MessageSchema>(message: M, ...args: PayloadArgs<M, SendOptions>) => Effect.Effect<void>
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
          Effect.sync(() => {
            const encoded = encodePayload(message, payload)
            if (!encoded.ok) throw new Error(`durable-ws: outbound ${encoded.error.message}`)
            options.sent?.push({ type: message.type, payload: encoded.value })
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
 * The largest serialized attachment workerd keeps per socket.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxAttachmentBytes = 16 * 1024

const systemKeys: ReadonlySet<string> = new Set(["clientId", "resourceId", "connectedAt"])

/**
 * Merges user data into connection data. Own-key copy only: `__proto__` and
 * `constructor` arrive as plain keys and never touch a prototype; the
 * system fields always win.
 *
 * @since 0.1.0
 * @category utils
 */
export const mergeData = <T extends SystemData>(
  base: T,
  partial: Readonly<Record<string, unknown>> | undefined
): T => {
  const next: Record<string, unknown> = {}
  for (const key of Object.keys(base)) defineOwn(next, key, (base as Record<string, unknown>)[key])
  if (partial !== undefined) {
    for (const key of Object.keys(partial)) {
      if (!systemKeys.has(key)) defineOwn(next, key, partial[key])
    }
  }
  return next as T
}

const defineOwn = (target: Record<string, unknown>, key: string, value: unknown) => {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
}

/**
 * `resourceId` from the upgrade URL: `?room`, else `?id`, else the last
 * non-empty path segment.
 *
 * @since 0.1.0
 * @category utils
 */
export const resourceIdOf = (url: URL): string | undefined => {
  const fromQuery = url.searchParams.get("room") ?? url.searchParams.get("id")
  if (fromQuery !== null && fromQuery !== "") return fromQuery
  const segments = url.pathname.split("/").filter((s) => s.length > 0)
  const last = segments[segments.length - 1]
  if (last === undefined) return undefined
  try {
    return decodeURIComponent(last)
  } catch {
    return last
  }
}
