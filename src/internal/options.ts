import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type { Connections } from "../Connections"
import type { ConnectionContext } from "../HandlerContext"
import type { PubSub } from "../PubSub"
import type { Storage } from "../Storage"
import type { HandlerContext } from "./context"
import type { RecoveryOptions, ResolvedRecovery } from "./recovery"
import { recoveryDefaults } from "./recovery"
import type { RateLimit, ResolvedRateLimit } from "./rateLimit"
import { checkRateLimit } from "./rateLimit"

/**
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  maxConnections: 1000,
  maxPayloadBytes: 1024 * 1024
} as const

/**
 * What `authenticate` may return: the connection's data, or
 * `undefined`/`null` to refuse (HTTP 401).
 *
 * @since 0.1.0
 * @category models
 */
export type AuthResult<TData, R> =
  | TData
  | undefined
  | null
  | PromiseLike<TData | undefined | null>
  | Effect.Effect<TData | undefined | null, unknown, R>

/**
 * The options every front door takes (`createDurableObjectHandler`,
 * `WebSocketDurableObject`, `Testing.make`).
 *
 * @since 0.1.0
 * @category models
 */
export interface HandlerOptions<TData, R> {
  /** The object's state. With it the Hibernation API is used. */
  readonly state?: DurableObjectState
  readonly env?: Cloudflare.Env
  /** Runs on every upgrade; refusing, throwing or failing answers 401. */
  readonly authenticate?: (request: Request) => AuthResult<TData, R>
  /** Open sockets per instance (default 1000); beyond it upgrades get 503. */
  readonly maxConnections?: number
  /** Largest inbound frame in bytes (default 1 MiB). */
  readonly maxPayloadBytes?: number
  /** When set, upgrades from any other `Origin` get 403. */
  readonly allowedOrigins?: ReadonlyArray<string>
  /** Answers requests that are not WebSocket upgrades (default: 426). */
  readonly onRequest?: (request: Request) => Response | Promise<Response>
  /** Per-connection token bucket; off by default. */
  readonly rateLimit?: RateLimit
  /** Return `true` to allow a subscription. */
  readonly authorizeSubscribe?: (ctx: ConnectionContext<TData>, topic: string) => boolean | PromiseLike<boolean>
  /** Return `true` to allow a publish from a connection. */
  readonly authorizePublish?: (ctx: ConnectionContext<TData>, topic: string) => boolean | PromiseLike<boolean>
  /** Handlers running longer get `DEADLINE_EXCEEDED`; off by default. */
  readonly handlerTimeoutMs?: number
  /**
   * Resumable delivery (sessions, a publish log and a reply cache in the
   * object's SQLite); off by default, needs `state`.
   */
  readonly recovery?: boolean | RecoveryOptions
}

/**
 * The built-in services a user layer may depend on: they are provided to it
 * when the instance builds it (the current `Connection` is not, since a
 * layer belongs to the instance, not to one connection).
 *
 * @since 0.1.0
 * @category models
 */
export type InstanceServices = Connections | PubSub | Storage

/**
 * The `layer` option: required, and required to provide every service the
 * router's Effect handlers need, when the router declares any.
 *
 * @since 0.1.0
 * @category models
 */
export type LayerOption<R> = [R] extends [never] ? { readonly layer?: Layer.Layer<never, unknown, InstanceServices> }
  : { readonly layer: Layer.Layer<R, unknown, InstanceServices> }

/**
 * @since 0.1.0
 * @category models
 */
export type DurableObjectHandlerOptions<TData, R> = HandlerOptions<TData, R> & LayerOption<R>

type TopicHook = (ctx: HandlerContext, topic: string) => boolean | PromiseLike<boolean>

/** The options after validation, as the runtime reads them. */
export interface InstanceConfig {
  readonly state: DurableObjectState | undefined
  readonly env: Cloudflare.Env
  readonly storage: DurableObjectStorage | undefined
  readonly authenticate: ((request: Request) => unknown) | undefined
  readonly maxConnections: number
  readonly maxPayloadBytes: number
  readonly allowedOrigins: ReadonlySet<string> | undefined
  readonly onRequest: ((request: Request) => Response | Promise<Response>) | undefined
  readonly handlerTimeoutMs: number | undefined
  readonly rateLimit: ResolvedRateLimit | undefined
  readonly authorizeSubscribe: TopicHook | undefined
  readonly authorizePublish: TopicHook | undefined
  readonly layer: Layer.Layer<unknown, unknown, unknown> | undefined
  readonly recovery: ResolvedRecovery | undefined
}

const positiveInteger = (name: string, value: unknown, fallback: number): number => {
  if (value === undefined) return fallback
  if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
    throw new RangeError(`durable-ws: ${name} must be a positive integer`)
  }
  return value
}

const optionalFunction = <F>(name: string, value: unknown): F | undefined => {
  if (value === undefined) return undefined
  if (typeof value !== "function") throw new TypeError(`durable-ws: ${name} must be a function`)
  return value as F
}

const checkRecovery = (value: unknown): ResolvedRecovery | undefined => {
  if (value === undefined || value === false) return undefined
  if (value === true) return recoveryDefaults
  if (typeof value !== "object" || value === null) {
    throw new TypeError("durable-ws: recovery must be true or an object of options")
  }
  const options = value as RecoveryOptions
  return {
    maxMessages: positiveInteger("recovery.maxMessages", options.maxMessages, recoveryDefaults.maxMessages),
    maxAgeMs: positiveInteger("recovery.maxAgeMs", options.maxAgeMs, recoveryDefaults.maxAgeMs),
    sessionTtlMs: positiveInteger("recovery.sessionTtlMs", options.sessionTtlMs, recoveryDefaults.sessionTtlMs),
    replyCacheSize: positiveInteger("recovery.replyCacheSize", options.replyCacheSize, recoveryDefaults.replyCacheSize),
    maxReplayBytes: positiveInteger("recovery.maxReplayBytes", options.maxReplayBytes, recoveryDefaults.maxReplayBytes),
    maxSessions: positiveInteger("recovery.maxSessions", options.maxSessions, recoveryDefaults.maxSessions),
    identity: checkIdentity(options.identity),
    resumeBurst: positiveInteger("recovery.resumeRate.burst", options.resumeRate?.burst, recoveryDefaults.resumeBurst),
    resumeIntervalMs: positiveInteger(
      "recovery.resumeRate.intervalMs",
      options.resumeRate?.intervalMs,
      recoveryDefaults.resumeIntervalMs
    )
  }
}

const checkIdentity = (identity: unknown): ResolvedRecovery["identity"] => {
  if (identity === undefined) return recoveryDefaults.identity
  if (typeof identity !== "function") throw new TypeError("durable-ws: recovery.identity must be a function")
  return (authData) => {
    const value: unknown = identity(authData)
    if (typeof value !== "string") throw new TypeError("durable-ws: recovery.identity must return a string")
    return value
  }
}

/**
 * Validates the options once, in one place, whichever front door they came
 * through: a bad value fails at construction with a message naming it.
 */
export const resolveOptions = (
  options: HandlerOptions<unknown, unknown> & { readonly layer?: unknown; readonly storage?: DurableObjectStorage },
  /** True when the state is supplied later (a class defined before any object exists). */
  stateLater = false
): InstanceConfig => {
  const { state } = options
  if (options.allowedOrigins !== undefined && !Array.isArray(options.allowedOrigins)) {
    throw new TypeError("durable-ws: allowedOrigins must be an array of origins")
  }
  const storage = state?.storage ?? options.storage
  const recovery = checkRecovery(options.recovery)
  if (recovery !== undefined && !stateLater && typeof storage?.sql?.exec !== "function") {
    throw new TypeError(
      "durable-ws: recovery keeps its sessions and log in the object's SQLite: pass `state` (a SQLite-backed Durable Object's ctx)" +
        " or, with Testing.make, `storage`"
    )
  }
  return {
    state,
    env: options.env ?? ({} as Cloudflare.Env),
    storage,
    recovery,
    authenticate: optionalFunction("authenticate", options.authenticate),
    maxConnections: positiveInteger("maxConnections", options.maxConnections, defaults.maxConnections),
    maxPayloadBytes: positiveInteger("maxPayloadBytes", options.maxPayloadBytes, defaults.maxPayloadBytes),
    allowedOrigins: options.allowedOrigins === undefined ? undefined : new Set(options.allowedOrigins),
    onRequest: optionalFunction("onRequest", options.onRequest),
    handlerTimeoutMs: options.handlerTimeoutMs === undefined
      ? undefined
      : positiveInteger("handlerTimeoutMs", options.handlerTimeoutMs, 0),
    rateLimit: options.rateLimit === undefined ? undefined : checkRateLimit(options.rateLimit),
    authorizeSubscribe: optionalFunction("authorizeSubscribe", options.authorizeSubscribe),
    authorizePublish: optionalFunction("authorizePublish", options.authorizePublish),
    layer: options.layer as Layer.Layer<unknown, unknown, unknown> | undefined
  }
}
