import type { MessageSchema } from "../../Message"
import { isReservedType } from "../../Protocol"
import type { OnConflict, PublishRecord, RouterLimits } from "../../Router"
import type { HandlerContext } from "./context"

/** Handlers with their context types erased: the engine hands every one a {@link HandlerContext}. */
export type AnyHandler = (ctx: HandlerContext) => unknown
export type AnyMiddleware = (ctx: HandlerContext, next: () => Promise<void>) => unknown
/** `false` from a hook keeps the error frame from being sent. */
export type AnyErrorHook = (error: unknown, ctx: HandlerContext | undefined) => unknown

export interface Route {
  readonly message: MessageSchema
  readonly handler: AnyHandler
  readonly response: MessageSchema | undefined
  /** An rpc declared idempotent: with recovery, a resend after a restart cut it off runs it again. */
  readonly idempotent: boolean
  /** Middleware of this route only (`router.route(m).use(mw).on(h)`), after the router's own. */
  readonly middleware: ReadonlyArray<AnyMiddleware>
}

/** What `router.observe` is told, each callback optional. */
export interface AnyObserver {
  readonly onPublish?: (record: PublishRecord) => void
  readonly onError?: (error: unknown, meta?: { readonly clientId?: string; readonly type?: string }) => void
  readonly onConnectionOpen?: (clientId: string, data: Readonly<Record<string, unknown>>) => void
  readonly onConnectionClose?: (clientId: string, meta?: { readonly code?: number; readonly reason?: string }) => void
}

/** What a router holds, as the engine reads it. */
export class RouterTables {
  readonly routes = new Map<string, Route>()
  readonly middleware: Array<AnyMiddleware> = []
  readonly openHooks: Array<AnyHandler> = []
  readonly closeHooks: Array<AnyHandler> = []
  readonly errorHooks: Array<AnyErrorHook> = []
  readonly observers: Array<AnyObserver> = []

  constructor(readonly limits: RouterLimits = {}) {}

  add(
    message: MessageSchema,
    handler: AnyHandler,
    response: MessageSchema | undefined,
    middleware: ReadonlyArray<AnyMiddleware> = [],
    idempotent = false
  ): void {
    this.put({ message, handler, response, middleware, idempotent }, "error", "a handler")
  }

  /** Takes every route of `other`, each type under `prefix`; `other`'s router-wide middleware and hooks stay there. */
  adopt(other: RouterTables, prefix: string, onConflict: OnConflict = "error"): void {
    if (isReservedType(prefix)) {
      throw new TypeError(`durable-ws: mount prefix "${prefix}" is reserved ("$" and "__" prefixes belong to the protocol)`)
    }
    for (const route of other.routes.values()) {
      this.put(prefix === "" ? route : { ...route, message: { ...route.message, type: prefix + route.message.type } }, onConflict, prefix === "" ? "merge()" : `mount("${prefix}")`)
    }
  }

  private put(route: Route, onConflict: OnConflict, what: string): void {
    const { type } = route.message
    if (this.routes.has(type)) {
      if (onConflict === "skip") return
      if (onConflict === "error") throw new Error(`durable-ws: ${what} conflicts: "${type}" already has a handler`)
    }
    this.routes.set(type, route)
  }

  /**
   * Tells the `onError` hooks (and the observers) about an error: whether
   * any hook heard it, and whether one returned `false` (no error frame).
   * A hook that throws is logged; the others still run.
   */
  notifyError(
    error: unknown,
    ctx: HandlerContext | undefined,
    about: { readonly clientId?: string; readonly type?: string }
  ): { readonly heard: boolean; readonly suppressed: boolean } {
    let suppressed = false
    for (const hook of this.errorHooks) {
      try {
        const answer = hook(error, ctx)
        if (answer === false) suppressed = true
        else if (answer instanceof Promise) answer.catch((hookError: unknown) => console.error("durable-ws: onError hook threw", hookError))
      } catch (hookError) {
        console.error("durable-ws: onError hook threw", hookError)
      }
    }
    if (this.observers.length > 0) this.observe("onError", error, about)
    return { heard: this.errorHooks.length > 0, suppressed }
  }

  /** Tells every observer, in order; one that throws is logged and the others still hear of it. */
  observe<K extends keyof AnyObserver>(event: K, ...args: Parameters<NonNullable<AnyObserver[K]>>): void {
    for (const observer of this.observers.slice()) {
      const callback = observer[event] as ((...a: typeof args) => void) | undefined
      if (callback === undefined) continue
      try {
        callback(...args)
      } catch (error) {
        console.error(`durable-ws: an observer's ${event} threw`, error)
      }
    }
  }
}

// Kept beside the router rather than on it, so the public class shows its methods and nothing else.
const tables = new WeakMap<object, RouterTables>()

export const registerTables = (router: object, limits?: RouterLimits): RouterTables => {
  const own = new RouterTables(limits)
  tables.set(router, own)
  return own
}

export const tablesOf = (router: object): RouterTables => {
  const own = tables.get(router)
  if (own === undefined) throw new TypeError("durable-ws: expected a router made by createRouter()")
  return own
}
