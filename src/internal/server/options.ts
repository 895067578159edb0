import type * as Layer from "effect/Layer"
import type { HandlerOptions, RecoveryOptions } from "../../Options"
import { defaults } from "../../Options"
import type { HandlerContext } from "./context"
import type { ResolvedRecovery } from "./recovery"
import type { ResolvedRateLimit } from "./rateLimit"
import { checkRateLimit } from "./rateLimit"

type TopicHook = (ctx: HandlerContext, topic: string) => boolean | PromiseLike<boolean>

/** The options after validation, as the engine reads them. */
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
  if (value === true) return defaults.recovery
  if (typeof value !== "object" || value === null) {
    throw new TypeError("durable-ws: recovery must be true or an object of options")
  }
  const options = value as RecoveryOptions
  return {
    maxMessages: positiveInteger("recovery.maxMessages", options.maxMessages, defaults.recovery.maxMessages),
    maxAgeMs: positiveInteger("recovery.maxAgeMs", options.maxAgeMs, defaults.recovery.maxAgeMs),
    sessionTtlMs: positiveInteger("recovery.sessionTtlMs", options.sessionTtlMs, defaults.recovery.sessionTtlMs),
    replyCacheSize: positiveInteger("recovery.replyCacheSize", options.replyCacheSize, defaults.recovery.replyCacheSize)
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
