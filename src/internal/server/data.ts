/**
 * Connection data as the engine builds it, and the socket surface the
 * engine talks to.
 */
import type { SystemData } from "../../Connection"

/**
 * The subset of `WebSocket` the engine talks to.
 */
export interface Socket {
  readonly readyState: number
  send(message: string): void
  close(code?: number, reason?: string): void
}

const systemKeys: ReadonlySet<string> = new Set(["clientId", "resourceId", "connectedAt"])

/**
 * Merges user data into connection data. Own-key copy only: `__proto__` and
 * `constructor` arrive as plain keys and never touch a prototype; the
 * system fields always win.
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
