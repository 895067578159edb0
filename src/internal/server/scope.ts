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

/** How many messages a connection enters its scope with `run` before it captures it. */
const captureAfter = 8

/**
 * Enters one connection's scope for each of its messages. `run` builds a new
 * async context each time (about 1.5 µs per message in workerd); entering
 * one captured once costs a tenth of that, but the captured context holds
 * about 0.5 KiB of heap for as long as the connection lives. So a
 * connection enters with `run` for its first few messages and captures its
 * context after that: a busy connection pays the capture once and enters
 * cheaply from then on, and the many that send a message now and then (most
 * sockets of a big room) never hold one. A subclass says where its
 * publishes go: the entry is the scope too, one object per connection.
 */
export abstract class ScopeEntry implements PublishScope {
  private calls = 0
  private captured: Enter | undefined = undefined

  abstract publish(topic: string, message: MessageSchema, payload: unknown, options: PublishOptions | undefined): Promise<PublishResult>

  enter<A>(f: () => A): A {
    if (this.captured !== undefined) return this.captured(f)
    const storage = scopeStorage
    if (storage === undefined) return f()
    const snapshot = hooks?.AsyncLocalStorage.snapshot
    if (snapshot === undefined || ++this.calls < captureAfter) return storage.run(this, f)
    const captured = storage.run(this, () => snapshot())
    this.captured = captured
    return captured(f)
  }
}

/** Runs `f` once inside `scope`: for a scope that lives as long as one message. */
export const runInScope = <A>(scope: PublishScope, f: () => A): A =>
  scopeStorage === undefined ? f() : scopeStorage.run(scope, f)
