/**
 * Explicit fan-out across Durable Objects.
 *
 * Pub/sub never leaves the instance it runs in; reaching other objects is a
 * deliberate act. `federate` calls an action on each named shard with
 * bounded concurrency, a per-shard deadline and optional retries, and
 * reports every shard's outcome in input order: one failing or slow shard
 * never hides the others, and the whole call never fails.
 *
 * The Effect API (`federate`, `federateWithErrors`, `federateWithFilter`)
 * takes actions returning Effects; the `…Promise` variants take actions
 * returning Promises and are what the package root exports as `federate`,
 * `federateWithErrors` and `federateWithFilter`.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Predicate from "effect/Predicate"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import { FederationError } from "./Errors"

/**
 * A shard: a name (turned into an id with `idFromName`) or a
 * `DurableObjectId` used as is.
 *
 * @since 0.1.0
 * @category models
 */
export type Shard = string | DurableObjectId

/**
 * One shard's outcome: a `PromiseSettledResult` plus the shard's name (for
 * an id, its `toString()`).
 *
 * @since 0.1.0
 * @category models
 */
export type ShardResult<A, E = unknown> =
  | { readonly shard: string; readonly status: "fulfilled"; readonly value: A }
  | { readonly shard: string; readonly status: "rejected"; readonly reason: E }

/**
 * @since 0.1.0
 * @category models
 */
export interface FederateOptions {
  /** Shards called at the same time (default 6). */
  readonly concurrency?: number
  /**
   * Deadline for each shard, covering its retries and their backoff. A shard
   * past it is reported as a `FederationError` whose `cause` is a
   * `TimeoutError`; the call it was waiting on may still complete remotely.
   */
  readonly timeoutMs?: number
  /**
   * Extra attempts for a failure marked `retryable: true` and not
   * `overloaded: true` (default 0). Anything else is reported at once.
   */
  readonly retries?: number
  /** The first retry's delay before jitter; each next one doubles, up to 3 s (default 100). */
  readonly retryDelayMs?: number
}

/**
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  concurrency: 6,
  retries: 0,
  retryDelayMs: 100,
  maxRetryDelayMs: 3000
} as const

/**
 * The name a shard is reported under.
 *
 * @since 0.1.0
 * @category models
 */
export const shardName = (shard: Shard): string => typeof shard === "string" ? shard : shard.toString()

const flag = (error: unknown, key: "retryable" | "overloaded"): boolean =>
  Predicate.hasProperty(error, key) && error[key] === true

/**
 * Whether federation retries this failure: it says `retryable: true` and
 * not `overloaded: true` (retrying an overloaded object only adds load).
 * These are the properties workerd sets on Durable Object errors.
 *
 * @since 0.1.0
 * @category guards
 */
export const isRetryable = (error: unknown): boolean => flag(error, "retryable") && !flag(error, "overloaded")

/**
 * Describes any failure of a shard as a {@link FederationError}, keeping
 * the original as `cause` and its `retryable` / `overloaded` markers. A
 * `FederationError` is returned unchanged.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toFederationError = (shard: string, error: unknown): FederationError => {
  if (error instanceof FederationError) return error
  const message = Predicate.hasProperty(error, "message") && typeof error.message === "string"
    ? error.message
    : String(error)
  return new FederationError({
    shard,
    message,
    retryable: flag(error, "retryable"),
    overloaded: flag(error, "overloaded"),
    cause: error
  })
}

interface Settings {
  readonly concurrency: number
  readonly timeoutMs: number | undefined
  readonly retries: number
  readonly retryDelayMs: number
}

const check = (name: string, value: number | undefined, fallback: number, allowZero: boolean): number => {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < 0 || (!allowZero && value === 0)) {
    throw new RangeError(`durable-ws: federate ${name} must be a ${allowZero ? "non-negative" : "positive"} integer`)
  }
  return value
}

// Invalid options are programming errors: they throw at the call, before anything runs.
const settingsOf = (options: FederateOptions | undefined): Settings => ({
  concurrency: check("concurrency", options?.concurrency, defaults.concurrency, false),
  timeoutMs: options?.timeoutMs === undefined ? undefined : check("timeoutMs", options.timeoutMs, 0, false),
  retries: check("retries", options?.retries, defaults.retries, true),
  retryDelayMs: check("retryDelayMs", options?.retryDelayMs, defaults.retryDelayMs, true)
})

const backoff = (retryDelayMs: number) =>
  Schedule.min([
    Schedule.exponential(`${retryDelayMs} millis`),
    Schedule.spaced(`${defaults.maxRetryDelayMs} millis`)
  ]).pipe(Schedule.jittered)

const timedOut = (shard: string, timeoutMs: number) =>
  new FederationError({
    shard,
    message: `Shard ${shard} did not settle within ${timeoutMs} ms`,
    retryable: false,
    overloaded: false,
    cause: new Cause.TimeoutError(`Shard ${shard} timed out after ${timeoutMs} ms`)
  })

// A typed failure is reported as is; a defect or an interruption of the
// shard alone becomes a FederationError, so the caller always gets a result.
const settle = <A, E>(shard: string, exit: Exit.Exit<A, E>): ShardResult<A, E | FederationError> => {
  if (Exit.isSuccess(exit)) return { shard, status: "fulfilled", value: exit.value }
  const failure = Cause.findError(exit.cause)
  if (Result.isSuccess(failure)) return { shard, status: "rejected", reason: failure.success }
  const defect = Cause.findDefect(exit.cause)
  return {
    shard,
    status: "rejected",
    reason: Result.isSuccess(defect)
      ? toFederationError(shard, defect.success)
      : new FederationError({ shard, message: `Shard ${shard} was interrupted`, retryable: false, overloaded: false })
  }
}

const runShard = <T extends Rpc.DurableObjectBranded | undefined, A, E, R>(
  namespace: DurableObjectNamespace<T>,
  shard: Shard,
  action: (stub: DurableObjectStub<T>, shard: string) => Effect.Effect<A, E, R>,
  settings: Settings
): Effect.Effect<ShardResult<A, E | FederationError>, never, R> => {
  const name = shardName(shard)
  const attempt: Effect.Effect<A, E | FederationError, R> = Effect.suspend(() =>
    action(namespace.get(typeof shard === "string" ? namespace.idFromName(shard) : shard), name)
  )
  const retried = settings.retries === 0
    ? attempt
    : Effect.retry(attempt, { schedule: backoff(settings.retryDelayMs), times: settings.retries, while: isRetryable })
  const timeoutMs = settings.timeoutMs
  const bounded = timeoutMs === undefined
    ? retried
    : Effect.timeoutOrElse(retried, { duration: timeoutMs, orElse: () => Effect.fail(timedOut(name, timeoutMs)) })
  return Effect.map(Effect.exit(bounded), (exit) => settle(name, exit))
}

type Planned =
  | { readonly name: string; readonly shard: Shard }
  | { readonly name: string; readonly refused: FederationError }

const fanOut = <T extends Rpc.DurableObjectBranded | undefined, A, E, R>(
  namespace: DurableObjectNamespace<T>,
  planned: ReadonlyArray<Planned>,
  action: (stub: DurableObjectStub<T>, shard: string) => Effect.Effect<A, E, R>,
  settings: Settings
): Effect.Effect<Array<ShardResult<A, E | FederationError>>, never, R> =>
  Effect.forEach(
    planned,
    (entry): Effect.Effect<ShardResult<A, E | FederationError>, never, R> =>
      "refused" in entry
        ? Effect.succeed({ shard: entry.name, status: "rejected", reason: entry.refused })
        : runShard(namespace, entry.shard, action, settings),
    { concurrency: settings.concurrency }
  )

/**
 * Runs `action` on every shard, at most `concurrency` at a time (default 6),
 * and succeeds with each shard's outcome in input order. It never fails: a
 * typed failure of the action is reported as its `reason`; a defect, a
 * timeout or an interruption of one shard as a {@link FederationError}.
 * Failures marked `retryable` (and not `overloaded`) are retried up to
 * `retries` times with jittered exponential backoff. Invalid options throw
 * a `RangeError` at the call.
 *
 * @since 0.1.0
 * @category federation
 */
export const federate = <T extends Rpc.DurableObjectBranded | undefined, A, E, R>(
  namespace: DurableObjectNamespace<T>,
  shards: Iterable<Shard>,
  action: (stub: DurableObjectStub<T>, shard: string) => Effect.Effect<A, E, R>,
  options?: FederateOptions
): Effect.Effect<Array<ShardResult<A, E | FederationError>>, never, R> => {
  const settings = settingsOf(options)
  return fanOut(namespace, Array.from(shards, (shard) => ({ name: shardName(shard), shard })), action, settings)
}

const withFederationErrors = <A, E>(results: Array<ShardResult<A, E>>): Array<ShardResult<A, FederationError>> =>
  results.map((result) =>
    result.status === "fulfilled"
      ? result
      : { shard: result.shard, status: "rejected", reason: toFederationError(result.shard, result.reason) }
  )

/**
 * {@link federate}, with every `reason` a {@link FederationError}: the
 * action's own failure is kept as its `cause`, and `retryable` /
 * `overloaded` say whether trying again later makes sense.
 *
 * @since 0.1.0
 * @category federation
 */
export const federateWithErrors = <T extends Rpc.DurableObjectBranded | undefined, A, E, R>(
  namespace: DurableObjectNamespace<T>,
  shards: Iterable<Shard>,
  action: (stub: DurableObjectStub<T>, shard: string) => Effect.Effect<A, E, R>,
  options?: FederateOptions
): Effect.Effect<Array<ShardResult<A, FederationError>>, never, R> =>
  Effect.map(federate(namespace, shards, action, options), withFederationErrors)

/**
 * {@link federate} over the shards that pass `filter`, which is given the
 * shard's name and the shard as passed. Skipped shards are absent from the
 * result; a shard whose filter throws is reported as rejected with a
 * {@link FederationError} whose `cause` is what the filter threw.
 *
 * @since 0.1.0
 * @category federation
 */
export const federateWithFilter = <T extends Rpc.DurableObjectBranded | undefined, A, E, R>(
  namespace: DurableObjectNamespace<T>,
  shards: Iterable<Shard>,
  filter: (name: string, shard: Shard) => boolean,
  action: (stub: DurableObjectStub<T>, shard: string) => Effect.Effect<A, E, R>,
  options?: FederateOptions
): Effect.Effect<Array<ShardResult<A, E | FederationError>>, never, R> => {
  const settings = settingsOf(options)
  const list = Array.from(shards)
  return Effect.suspend(() => {
    const planned: Array<Planned> = []
    for (const shard of list) {
      const name = shardName(shard)
      try {
        if (filter(name, shard)) planned.push({ name, shard })
      } catch (error) {
        planned.push({ name, refused: toFederationError(name, error) })
      }
    }
    return fanOut(namespace, planned, action, settings)
  })
}

// -- Promise facade -----------------------------------------------------------

const fromPromise = <T extends Rpc.DurableObjectBranded | undefined, A>(
  action: (stub: DurableObjectStub<T>, shard: string) => A
) =>
(stub: DurableObjectStub<T>, shard: string): Effect.Effect<Awaited<A>, unknown> =>
  Effect.tryPromise({ try: async (): Promise<Awaited<A>> => await action(stub, shard), catch: (error) => error })

/**
 * Promise form of {@link federate}: resolves (never rejects) to every
 * shard's outcome in input order, as `Promise.allSettled` would, plus the
 * shard. `reason` is what the action threw; a timeout is a
 * `FederationError`. Exported from the package root as `federate`.
 *
 * ```ts
 * const results = await federate(env.ROOMS, ["lobby", "games"], (room) => room.announce(text))
 * ```
 *
 * @since 0.1.0
 * @category promise
 */
export const federatePromise = <T extends Rpc.DurableObjectBranded | undefined, A>(
  namespace: DurableObjectNamespace<T>,
  shards: Iterable<Shard>,
  action: (stub: DurableObjectStub<T>, shard: string) => A,
  options?: FederateOptions
): Promise<Array<ShardResult<Awaited<A>, unknown>>> =>
  Effect.runPromise(federate(namespace, shards, fromPromise(action), options))

/**
 * Promise form of {@link federateWithErrors}: like {@link federatePromise}
 * but every `reason` is a `FederationError` (`shard`, `message`,
 * `retryable`, `overloaded`, and the thrown value as `cause`). Exported
 * from the package root as `federateWithErrors`.
 *
 * @since 0.1.0
 * @category promise
 */
export const federateWithErrorsPromise = <T extends Rpc.DurableObjectBranded | undefined, A>(
  namespace: DurableObjectNamespace<T>,
  shards: Iterable<Shard>,
  action: (stub: DurableObjectStub<T>, shard: string) => A,
  options?: FederateOptions
): Promise<Array<ShardResult<Awaited<A>, FederationError>>> =>
  Effect.runPromise(federateWithErrors(namespace, shards, fromPromise(action), options))

/**
 * Promise form of {@link federateWithFilter}. Exported from the package
 * root as `federateWithFilter`.
 *
 * @since 0.1.0
 * @category promise
 */
export const federateWithFilterPromise = <T extends Rpc.DurableObjectBranded | undefined, A>(
  namespace: DurableObjectNamespace<T>,
  shards: Iterable<Shard>,
  filter: (name: string, shard: Shard) => boolean,
  action: (stub: DurableObjectStub<T>, shard: string) => A,
  options?: FederateOptions
): Promise<Array<ShardResult<Awaited<A>, unknown>>> =>
  Effect.runPromise(federateWithFilter(namespace, shards, filter, fromPromise(action), options))
