/**
 * Connection data and the socket surface, shared by the public services and
 * the runtime (kept apart from both so neither has to import the other).
 */

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
