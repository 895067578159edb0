import type { MessageSchema } from "../../Message"
import type { HandlerContext } from "./context"

/** Handlers with their context types erased: the engine hands every one a {@link HandlerContext}. */
export type AnyHandler = (ctx: HandlerContext) => unknown
export type AnyMiddleware = (ctx: HandlerContext, next: () => Promise<void>) => unknown
export type AnyErrorHook = (error: unknown, ctx: HandlerContext | undefined) => void

export interface Route {
  readonly message: MessageSchema
  readonly handler: AnyHandler
  readonly response: MessageSchema | undefined
}

/** What a router holds, as the engine reads it. */
export class RouterTables {
  readonly routes = new Map<string, Route>()
  readonly middleware: Array<AnyMiddleware> = []
  readonly openHooks: Array<AnyHandler> = []
  readonly closeHooks: Array<AnyHandler> = []
  readonly errorHooks: Array<AnyErrorHook> = []

  add(message: MessageSchema, handler: AnyHandler, response: MessageSchema | undefined): void {
    if (this.routes.has(message.type)) {
      throw new Error(`durable-ws: a handler for "${message.type}" is already registered`)
    }
    this.routes.set(message.type, { message, handler, response })
  }
}

// Kept beside the router rather than on it, so the public class shows its methods and nothing else.
const tables = new WeakMap<object, RouterTables>()

export const registerTables = (router: object): RouterTables => {
  const own = new RouterTables()
  tables.set(router, own)
  return own
}

export const tablesOf = (router: object): RouterTables => {
  const own = tables.get(router)
  if (own === undefined) throw new TypeError("durable-ws: expected a router made by createRouter()")
  return own
}
