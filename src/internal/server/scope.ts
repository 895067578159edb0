import * as Context from "effect/Context"
import * as Fiber from "effect/Fiber"
import type { MessageSchema } from "../../Message"
import type { PublishOptions, PublishResult } from "../../PubSub"

/**
 * Where a publish made without a context (`router.publish`) goes: the
 * instance and the connection whose message or hook is running.
 */
export interface PublishScope {
  publish(topic: string, message: MessageSchema, payload: unknown, options: PublishOptions | undefined): Promise<PublishResult>
}

/**
 * The scope in an Effect handler's context. A fiber can be resumed by a
 * scheduler flush that some other connection's work started, so its own
 * context, not the async context, says whose it is.
 */
export class CurrentScope extends Context.Service<CurrentScope, PublishScope>()("durable-ws/internal/CurrentScope") {}

interface AsyncLocalStorageLike<T> {
  run<A>(store: T, f: () => A): A
  getStore(): T | undefined
}

interface AsyncHooks {
  readonly AsyncLocalStorage: {
    new<T>(): AsyncLocalStorageLike<T>
    readonly snapshot?: () => <A>(f: () => A) => A
  }
}

// Reached through `getBuiltinModule` on the global process object, so the bundle never imports a
// `node:` module: present in workerd at our compatibility date even without
// nodejs_compat, absent in browsers (where there are no instances anyway).
const hooks = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } })
  .process?.getBuiltinModule?.("node:async_hooks") as AsyncHooks | undefined

/**
 * A router defined at module level serves every instance of its class in
 * the isolate, so the scope must travel with the async context, never sit
 * in a shared variable.
 */
const scopeStorage: AsyncLocalStorageLike<PublishScope> | undefined = hooks === undefined
  ? undefined
  : new hooks.AsyncLocalStorage<PublishScope>()

/** The scope of the running handler: the fiber's when an Effect is running, else the async context's. */
export const currentScope = (): PublishScope | undefined => {
  const fiber = Fiber.getCurrent()
  if (fiber !== undefined) {
    const scope = Context.getOrUndefined(fiber.context, CurrentScope)
    if (scope !== undefined) return scope
  }
  return scopeStorage?.getStore()
}

/** Runs a function with a fixed scope as the current one. */
export type Enter = <A>(f: () => A) => A

/**
 * Enters `scope` for each call. `run` builds a new async context each time
 * (about 1.5 µs per message in workerd); entering one captured once, here,
 * costs a tenth of that. So a connection captures its scope once and reuses
 * it for every message.
 */
export const captureScope = (scope: PublishScope): Enter => {
  const storage = scopeStorage
  if (storage === undefined) return (f) => f()
  const snapshot = hooks?.AsyncLocalStorage.snapshot
  if (snapshot === undefined) return (f) => storage.run(scope, f)
  return storage.run(scope, () => snapshot())
}

/** Runs `f` once inside `scope`: for a scope that lives as long as one message. */
export const runInScope = <A>(scope: PublishScope, f: () => A): A =>
  scopeStorage === undefined ? f() : scopeStorage.run(scope, f)
