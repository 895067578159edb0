import type * as Layer from "effect/Layer"
import type { HandlerOptions, RecoveryOptions } from "../../Options"
import type { SpanOptions } from "../../SpanningTopic"
import { defaults } from "../../Options"
import type { HandlerContext } from "./context"
import type { ResolvedRecovery } from "./recovery"
import { canonicalJson } from "./recovery"
import type { ResolvedPresence } from "./presence"
import type { PresenceOptions } from "../../Presence"
import { defaults as presenceDefaults } from "../../Presence"
import type { ResolvedRateLimit } from "./rateLimit"
import type { ResolvedSpan } from "./span"
import { checkRateLimit } from "./rateLimit"
import type { RouterLimits } from "../../Router"

type TopicHook = (ctx: HandlerContext, topic: string) => boolean | PromiseLike<boolean>

/** The options after validation, as the engine reads them. */
export interface InstanceConfig {
  readonly state: DurableObjectState | undefined
  readonly env: Cloudflare.Env
  readonly storage: DurableObjectStorage | undefined
  readonly authenticate: ((request: Request) => unknown) | undefined
  readonly maxConnections: number
  readonly maxPayloadBytes: number
  /** Frames one connection may have waiting or running at once (`createRouter({ limits: { maxPending } })`). */
  readonly maxPending: number | undefined
  readonly allowedOrigins: ReadonlySet<string> | undefined
  readonly onRequest: ((request: Request) => Response | Promise<Response>) | undefined
  readonly handlerTimeoutMs: number | undefined
  readonly rateLimit: ResolvedRateLimit | undefined
  readonly authorizeSubscribe: TopicHook | undefined
  readonly authorizePublish: TopicHook | undefined
  readonly layer: Layer.Layer<unknown, unknown, unknown> | undefined
  readonly recovery: ResolvedRecovery | undefined
  readonly presence: ResolvedPresence | undefined
  readonly span: ResolvedSpan | undefined
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
  if (value !== true && (typeof value !== "object" || value === null)) {
    throw new TypeError("durable-ws: recovery must be true or an object of options")
  }
  const options: RecoveryOptions = value === true ? {} : value as RecoveryOptions
  const fallback = defaults.recovery
  return {
    maxMessages: positiveInteger("recovery.maxMessages", options.maxMessages, fallback.maxMessages),
    maxAgeMs: positiveInteger("recovery.maxAgeMs", options.maxAgeMs, fallback.maxAgeMs),
    sessionTtlMs: positiveInteger("recovery.sessionTtlMs", options.sessionTtlMs, fallback.sessionTtlMs),
    replyCacheSize: positiveInteger("recovery.replyCacheSize", options.replyCacheSize, fallback.replyCacheSize),
    maxReplayBytes: positiveInteger("recovery.maxReplayBytes", options.maxReplayBytes, fallback.maxReplayBytes),
    maxSessions: positiveInteger("recovery.maxSessions", options.maxSessions, fallback.maxSessions),
    identity: checkIdentity(options.identity),
    resumeBurst: positiveInteger("recovery.resumeRate.burst", options.resumeRate?.burst, fallback.resumeBurst),
    resumeIntervalMs: positiveInteger(
      "recovery.resumeRate.intervalMs",
      options.resumeRate?.intervalMs,
      fallback.resumeIntervalMs
    )
  }
}

/** `recovery.identity`, checked; by default the canonical JSON of `authenticate`'s result. */
const checkIdentity = (identity: unknown): ResolvedRecovery["identity"] => {
  const given = optionalFunction<(authData: unknown) => unknown>("recovery.identity", identity)
  if (given === undefined) return canonicalJson
  return (authData) => {
    const value = given(authData)
    if (typeof value !== "string") throw new TypeError("durable-ws: recovery.identity must return a string")
    return value
  }
}

const checkPresence = (value: unknown, recovery: ResolvedRecovery | undefined): ResolvedPresence | undefined => {
  if (value === undefined || value === false) return undefined
  if (value !== true && (typeof value !== "object" || value === null)) {
    throw new TypeError("durable-ws: presence must be true or an object of options")
  }
  const options: PresenceOptions = value === true ? {} : value as PresenceOptions
  const countsOnlyAbove = options.countsOnlyAbove === undefined
    ? Number.POSITIVE_INFINITY
    : positiveInteger("presence.countsOnlyAbove", options.countsOnlyAbove, 0)
  const sessionTtlMs = recovery?.sessionTtlMs ?? 0
  const awayMs = options.awayMs === undefined ? sessionTtlMs : positiveInteger("presence.awayMs", options.awayMs, 0)
  return {
    maxMetaBytes: positiveInteger("presence.maxMetaBytes", options.maxMetaBytes, presenceDefaults.maxMetaBytes),
    maxKeyLength: positiveInteger("presence.maxKeyLength", options.maxKeyLength, presenceDefaults.maxKeyLength),
    flushMs: positiveInteger("presence.flushMs", options.flushMs, presenceDefaults.flushMs),
    countsOnlyAbove,
    // A session is never held past its own life.
    awayMs: Math.min(awayMs, sessionTtlMs)
  }
}

const checkSpan = (value: unknown): ResolvedSpan | undefined => {
  if (value === undefined) return undefined
  if (typeof value !== "object" || value === null) throw new TypeError("durable-ws: span must be an object")
  const { edge, home, topics } = value as Partial<SpanOptions>
  if (typeof home !== "function") throw new TypeError("durable-ws: span.home must be a function of env returning a namespace")
  if (typeof edge !== "string" || edge.length === 0) {
    throw new TypeError("durable-ws: span.edge must name this object's own binding in env")
  }
  if (topics instanceof RegExp) {
    // A copy without the global and sticky flags: `test` must not carry a position from one topic to the next.
    const pattern = new RegExp(topics.source, topics.flags.replace(/[gy]/g, ""))
    return { spans: (topic) => pattern.test(topic), home, edge }
  }
  if (typeof topics !== "function") throw new TypeError("durable-ws: span.topics must be a predicate or a RegExp")
  return { spans: (topic) => topics(topic) === true, home, edge }
}

/**
 * Validates the options once, in one place, whichever front door they came
 * through: a bad value fails at construction with a message naming it.
 */
export const resolveOptions = (
  options: HandlerOptions<unknown, unknown> & { readonly layer?: unknown; readonly storage?: DurableObjectStorage },
  /** True when the state is supplied later (a class defined before any object exists). */
  stateLater = false,
  /** The router's own limits (`createRouter({ limits })`): the handler's options win over them. */
  limits: RouterLimits = {}
): InstanceConfig => {
  const { state } = options
  if (options.allowedOrigins !== undefined && !Array.isArray(options.allowedOrigins)) {
    throw new TypeError("durable-ws: allowedOrigins must be an array of origins")
  }
  const storage = state?.storage ?? options.storage
  const recovery = checkRecovery(options.recovery)
  const span = checkSpan(options.span)
  if (span !== undefined && !stateLater && typeof state?.storage?.sql?.exec !== "function") {
    throw new TypeError(
      "durable-ws: span needs the object's state (a SQLite-backed Durable Object's ctx): a home calls an edge back by its id"
    )
  }
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
    presence: checkPresence(options.presence, recovery),
    span,
    authenticate: optionalFunction("authenticate", options.authenticate),
    maxConnections: positiveInteger("maxConnections", options.maxConnections, defaults.maxConnections),
    maxPayloadBytes: positiveInteger(
      "maxPayloadBytes",
      options.maxPayloadBytes ?? limits.maxPayloadBytes,
      defaults.maxPayloadBytes
    ),
    maxPending: limits.maxPending === undefined ? undefined : positiveInteger("limits.maxPending", limits.maxPending, 0),
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
