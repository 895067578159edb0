/**
 * Typed access to the Durable Object's storage, as an Effect service.
 *
 * Every operation fails with {@link StorageError} instead of throwing, so
 * a storage fault reaches the client as `UNAVAILABLE` and `onError` sees the
 * typed error. Values may be decoded with a schema on the way out.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type * as Schema from "effect/Schema"
import * as SchemaParser from "effect/SchemaParser"
import { StorageError } from "./Errors"

/**
 * A schema usable for decoding stored values.
 *
 * @since 0.1.0
 * @category models
 */
export type StoredSchema<A> = Schema.Codec<A, unknown, never, never>

/**
 * @since 0.1.0
 * @category services
 */
export class Storage extends Context.Service<Storage, {
  /** The underlying `DurableObjectStorage`, for what the service does not cover. */
  readonly raw: DurableObjectStorage
  readonly get: {
    (key: string): Effect.Effect<unknown, StorageError>
    <A>(key: string, schema: StoredSchema<A>): Effect.Effect<A | undefined, StorageError>
  }
  readonly put: (key: string, value: unknown) => Effect.Effect<void, StorageError>
  readonly delete: (key: string) => Effect.Effect<boolean, StorageError>
  readonly list: (options?: DurableObjectListOptions) => Effect.Effect<ReadonlyMap<string, unknown>, StorageError>
  readonly transaction: <A>(
    body: (transaction: DurableObjectTransaction) => Promise<A>
  ) => Effect.Effect<A, StorageError>
  readonly sql: {
    (query: string, ...bindings: ReadonlyArray<SqlStorageValue>): Effect.Effect<
      ReadonlyArray<Record<string, SqlStorageValue>>,
      StorageError
    >
  }
  readonly sqlAs: <A>(
    schema: StoredSchema<A>,
    query: string,
    ...bindings: ReadonlyArray<SqlStorageValue>
  ) => Effect.Effect<ReadonlyArray<A>, StorageError>
}>()("durable-ws/Storage") {
  /**
   * A layer over the given storage (usually `this.ctx.storage`).
   *
   * @since 0.1.0
   * @category layers
   */
  static readonly layer = (storage: DurableObjectStorage): Layer.Layer<Storage> => Layer.succeed(Storage, make(storage))

  /**
   * An in-memory storage for unit tests of Effect code: key-value operations
   * work on a `Map`; `sql`, `transaction` and `raw` fail with `StorageError`.
   *
   * @since 0.1.0
   * @category layers
   */
  static readonly layerTest = (initial: Iterable<readonly [string, unknown]> = []): Layer.Layer<Storage> =>
    Layer.sync(Storage, () => makeInMemory(new Map(initial)))
}

const unsupported = (operation: string) =>
  Effect.fail(new StorageError({ operation, message: `Storage ${operation} is not available in Storage.layerTest` }))

const makeInMemory = (entries: Map<string, unknown>): Storage["Service"] => {
  function get(key: string): Effect.Effect<unknown, StorageError>
  function get<A>(key: string, schema: StoredSchema<A>): Effect.Effect<A | undefined, StorageError>
  function get<A>(key: string, schema?: StoredSchema<A>): Effect.Effect<unknown, StorageError> {
    const value = entries.get(key)
    return schema === undefined || value === undefined ? Effect.succeed(value) : decodeWith("get", schema, value)
  }
  return Storage.of({
    get raw(): DurableObjectStorage {
      throw new Error("durable-ws: Storage.layerTest has no raw DurableObjectStorage")
    },
    get,
    put: (key, value) => Effect.sync(() => void entries.set(key, structuredClone(value))),
    delete: (key) => Effect.sync(() => entries.delete(key)),
    list: (options) =>
      Effect.sync(() => {
        const keys = [...entries.keys()].filter((key) => options?.prefix === undefined || key.startsWith(options.prefix)).sort()
        return new Map(keys.map((key) => [key, entries.get(key)]))
      }),
    transaction: () => unsupported("transaction"),
    sql: () => unsupported("sql"),
    sqlAs: () => unsupported("sql")
  })
}

const failure = (operation: string) => (cause: unknown) =>
  new StorageError({
    operation,
    message: `Storage ${operation} failed`,
    cause
  })

/** A query's rows, read when the Effect runs. */
const rowsOf = (storage: DurableObjectStorage, query: string, bindings: ReadonlyArray<SqlStorageValue>) => () =>
  storage.sql.exec<Record<string, SqlStorageValue>>(query, ...bindings).toArray()

const attempt = <A>(operation: string, run: () => Promise<A>): Effect.Effect<A, StorageError> =>
  Effect.tryPromise({ try: run, catch: failure(operation) })

const decodeWith = <A>(operation: string, schema: StoredSchema<A>, value: unknown): Effect.Effect<A, StorageError> => {
  const exit = SchemaParser.decodeUnknownExit(schema)(value)
  return Exit.isSuccess(exit)
    ? Effect.succeed(exit.value)
    : Effect.fail(new StorageError({ operation, message: `Stored value does not match the schema (${operation})` }))
}

/**
 * Builds the service over a `DurableObjectStorage`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (storage: DurableObjectStorage): Storage["Service"] => {
  function get(key: string): Effect.Effect<unknown, StorageError>
  function get<A>(key: string, schema: StoredSchema<A>): Effect.Effect<A | undefined, StorageError>
  function get<A>(key: string, schema?: StoredSchema<A>): Effect.Effect<unknown, StorageError> {
    const read = attempt("get", () => storage.get(key))
    return schema === undefined
      ? read
      : Effect.flatMap(read, (value) => value === undefined ? Effect.undefined : decodeWith("get", schema, value))
  }
  const sqlFailure = failure("sql")
  const sql = (query: string, ...bindings: ReadonlyArray<SqlStorageValue>) =>
    Effect.try({ try: rowsOf(storage, query, bindings), catch: sqlFailure })
  return Storage.of({
    raw: storage,
    get,
    put: (key, value) => attempt("put", () => storage.put(key, value)),
    delete: (key) => attempt("delete", () => storage.delete(key)),
    list: (options) => attempt("list", () => storage.list(options)),
    transaction: (body) => attempt("transaction", () => storage.transaction(body)),
    sql,
    sqlAs: (schema, query, ...bindings) =>
      Effect.flatMap(sql(query, ...bindings), (rows) => Effect.forEach(rows, (row) => decodeWith("sql", schema, row)))
  })
}
