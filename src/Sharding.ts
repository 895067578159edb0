/**
 * Stable topic sharding: many topics spread over a fixed number of Durable
 * Objects, each topic always landing on the same one.
 *
 * One object per topic is the simplest layout, but some topics are too small
 * to deserve an object and some apps want a bounded number of routers. A
 * shard name is derived from the topic with the djb2 hash, so every Worker
 * (any isolate, any location) computes the same name without coordination.
 * Changing the shard count moves most topics to another object: treat it as
 * a migration, not a configuration tweak. The jump-consistent-hash helpers
 * ({@link topicToConsistentDoName}) move only the topics that must move:
 * going from `n` to `n + 1` shards moves about `1 / (n + 1)` of them, all
 * to the new shard.
 *
 * @since 0.1.0
 */

/**
 * The shard name prefix used when none is given: names are `ws-router-<n>`.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultPrefix = "ws-router"

/**
 * A Durable Object namespace, or an env whose `ROUTER` binding is the
 * namespace to shard over.
 *
 * @since 0.1.0
 * @category models
 */
export type NamespaceOrEnv<T extends Rpc.DurableObjectBranded | undefined = undefined> =
  | DurableObjectNamespace<T>
  | { readonly ROUTER: DurableObjectNamespace<T> }

/**
 * The djb2 hash of a string's UTF-16 code units, as a 32-bit unsigned
 * integer: `h = 5381; h = h * 33 + unit`, wrapping at 2^32.
 *
 * @since 0.1.0
 * @category hashing
 */
export const djb2 = (text: string): number => {
  let hash = 5381
  for (let i = 0; i < text.length; i++) {
    // Math.imul keeps the product exact in 32 bits; a plain `*` loses low bits past 2^53.
    hash = (Math.imul(hash, 33) + text.charCodeAt(i)) >>> 0
  }
  return hash
}

const checkShardCount = (shards: number): void => {
  if (!Number.isInteger(shards) || shards <= 0) {
    throw new RangeError(`durable-ws: the shard count must be a positive integer, got ${String(shards)}`)
  }
}

/**
 * The shard that owns `topic`: `` `${prefix}-${djb2(topic) % shards}` ``.
 * `("room:general", 10)` is `ws-router-2` and `("room:random", 10)` is
 * `ws-router-7`. Throws a `RangeError` when `shards` is not a positive
 * integer.
 *
 * @since 0.1.0
 * @category sharding
 */
export const topicToDoName = (topic: string, shards: number, prefix: string = defaultPrefix): string => {
  checkShardCount(shards)
  return `${prefix}-${djb2(topic) % shards}`
}

const fnvOffset = 0xcbf29ce484222325n
const fnvPrime = 0x100000001b3n

/**
 * The 64-bit FNV-1a hash of a string's UTF-8 bytes, as a `bigint`.
 *
 * @since 0.1.0
 * @category hashing
 */
export const fnv1a64 = (text: string): bigint => {
  let hash = fnvOffset
  for (const byte of new TextEncoder().encode(text)) hash = BigInt.asUintN(64, (hash ^ BigInt(byte)) * fnvPrime)
  return hash
}

/**
 * Lamping and Veach's jump consistent hash: the bucket in `[0, buckets)`
 * of a 64-bit key. When `buckets` grows by one, a key either stays where it
 * was or moves to the new bucket, and only about `1 / buckets` of the keys
 * move. Throws a `RangeError` when `buckets` is not a positive integer.
 *
 * @since 0.1.0
 * @category hashing
 */
export const jumpHash = (key: bigint, buckets: number): number => {
  checkShardCount(buckets)
  let state = BigInt.asUintN(64, key)
  let bucket = -1
  let next = 0
  while (next < buckets) {
    bucket = next
    state = BigInt.asUintN(64, state * 2862933555777941757n + 1n)
    // The reference's double arithmetic, which JavaScript numbers reproduce exactly.
    next = Math.floor((bucket + 1) * (2 ** 31 / (Number(state >> 33n) + 1)))
  }
  return bucket
}

/**
 * The shard that owns `topic` by jump consistent hashing:
 * `` `${prefix}-${jumpHash(fnv1a64(topic), shards)}` ``. Unlike
 * {@link topicToDoName} (djb2, kept for WS-Kit compatibility), adding a
 * shard moves only the topics that land on the new one.
 *
 * @since 0.1.0
 * @category sharding
 */
export const topicToConsistentDoName = (topic: string, shards: number, prefix: string = defaultPrefix): string =>
  `${prefix}-${jumpHash(fnv1a64(topic), shards)}`

const namespaceOf = <T extends Rpc.DurableObjectBranded | undefined>(
  nsOrEnv: NamespaceOrEnv<T>
): DurableObjectNamespace<T> => {
  // Bindings are host objects: there is no class to test with instanceof, so look for the method.
  if (typeof (nsOrEnv as Partial<DurableObjectNamespace<T>>).idFromName === "function") {
    return nsOrEnv as DurableObjectNamespace<T>
  }
  const router = (nsOrEnv as { readonly ROUTER?: DurableObjectNamespace<T> }).ROUTER
  if (router === undefined || typeof router.idFromName !== "function") {
    throw new TypeError("durable-ws: expected a Durable Object namespace or an env with a ROUTER binding")
  }
  return router
}

/**
 * The id of the object that owns `topic` (see {@link topicToDoName}). The
 * first argument is a namespace, or an env whose `ROUTER` binding is used.
 *
 * @since 0.1.0
 * @category sharding
 */
export const getShardedDoId = <T extends Rpc.DurableObjectBranded | undefined = undefined>(
  nsOrEnv: NamespaceOrEnv<T>,
  topic: string,
  shards: number,
  prefix?: string
): DurableObjectId => {
  const name = topicToDoName(topic, shards, prefix)
  return namespaceOf(nsOrEnv).idFromName(name)
}

/**
 * A stub for the object that owns `topic`, ready for `fetch` (for example a
 * WebSocket upgrade) or RPC. The first argument is a namespace, or an env
 * whose `ROUTER` binding is used.
 *
 * @since 0.1.0
 * @category sharding
 */
export const getShardedStub = <T extends Rpc.DurableObjectBranded | undefined = undefined>(
  nsOrEnv: NamespaceOrEnv<T>,
  topic: string,
  shards: number,
  prefix?: string
): DurableObjectStub<T> => {
  const name = topicToDoName(topic, shards, prefix)
  const namespace = namespaceOf(nsOrEnv)
  return namespace.get(namespace.idFromName(name))
}
