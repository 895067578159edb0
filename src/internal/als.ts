import type { Instance } from "./instance"

interface AsyncLocalStorageLike<T> {
  run<A>(store: T, f: () => A): A
  getStore(): T | undefined
}

interface AsyncHooks {
  readonly AsyncLocalStorage: new<T>() => AsyncLocalStorageLike<T>
}

// Reached through process.getBuiltinModule so the bundle never imports a
// `node:` module: present in workerd at our compatibility date even without
// nodejs_compat, absent in browsers (where there are no instances anyway).
const hooks = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } })
  .process?.getBuiltinModule?.("node:async_hooks") as AsyncHooks | undefined

/**
 * The instance handling the current message. A router defined at module
 * level serves every instance of its class in the isolate, so the instance
 * must travel with the async context, never sit in a shared variable.
 */
const instanceStorage: AsyncLocalStorageLike<Instance> | undefined = hooks === undefined
  ? undefined
  : new hooks.AsyncLocalStorage<Instance>()

export const currentInstance = (): Instance | undefined => instanceStorage?.getStore()

export const withInstance = <A>(instance: Instance, f: () => A): A =>
  instanceStorage === undefined ? f() : instanceStorage.run(instance, f)
