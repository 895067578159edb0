/**
 * The options of the Durable Object handler, `WebSocketDurableObject` and
 * `Testing.make`, and their defaults. They are validated once, whichever of
 * those front doors they came through: a bad value fails at construction
 * with a message naming it.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type { Connections } from "./Connections"
import type { ConnectionContext } from "./HandlerContext"
import type { Presence, PresenceOptions } from "./Presence"
import type { PubSub } from "./PubSub"
import type { SpanOptions } from "./SpanningTopic"
import type { Storage } from "./Storage"

/**
 * Per-connection rate limit: a token bucket that starts full.
 *
 * @since 0.1.0
 * @category models
 */
export interface RateLimit {
  /** The burst a connection may send at once. */
  readonly capacity: number
  /** Tokens added back per second. */
  readonly refillPerSecond: number
  /**
   * A connection whose bucket has not refilled to full for this long since
   * its first refusal is closed with 1008 (default 10 000 ms; `Infinity`
   * never closes).
   */
  readonly closeAfterMs?: number
}

/**
 * The `recovery` option: `true` for the defaults, or any of these.
 *
 * @since 0.1.0
 * @category models
 */
export interface RecoveryOptions {
  /** Log entries kept per topic (default 1000). */
  readonly maxMessages?: number
  /** Log entries older than this are pruned (default 120 000 ms). */
  readonly maxAgeMs?: number
  /** How long a session stays resumable after its socket closed (default 120 000 ms). */
  readonly sessionTtlMs?: number
  /** RPC requests (and their replies) remembered per session (default 100). */
  readonly replyCacheSize?: number
  /** Bytes of replayed frames one resume may send (default 1 MiB); past it the replay stops and says `truncated`. */
  readonly maxReplayBytes?: number
  /** Sessions kept per object (default 10 000); past it the one closed longest ago is dropped. */
  readonly maxSessions?: number
  /**
   * Who a session belongs to, from `authenticate`'s result: a resume is
   * granted only to the same identity. Default: the canonical JSON of the
   * result (keys sorted), or `""` without `authenticate`.
   */
  readonly identity?: (authData: unknown) => string
  /** Resumes of one session: a burst of `burst` (default 5), then one per `intervalMs` (default 2000); beyond it HTTP 429. */
  readonly resumeRate?: { readonly burst?: number; readonly intervalMs?: number }
}

/**
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  maxConnections: 1000,
  maxPayloadBytes: 1024 * 1024,
  /** `rateLimit.closeAfterMs` */
  closeAfterMs: 10_000,
  recovery: {
    maxMessages: 1000,
    maxAgeMs: 120_000,
    sessionTtlMs: 120_000,
    replyCacheSize: 100,
    maxReplayBytes: 1024 * 1024,
    maxSessions: 10_000,
    resumeBurst: 5,
    resumeIntervalMs: 2000
  }
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
  /**
   * Topics that span objects (a home object per topic sequences, logs and
   * delivers them to every object with subscribers); needs `state`.
   */
  readonly span?: SpanOptions
  /**
   * Presence: who is in each topic (`ctx.presence`, the `Presence` service,
   * `$presence` frames to subscribers); off by default.
   */
  readonly presence?: boolean | PresenceOptions
}

/**
 * The built-in services a user layer may depend on: they are provided to it
 * when the instance builds it (the current `Connection` is not, since a
 * layer belongs to the instance, not to one connection).
 *
 * @since 0.1.0
 * @category models
 */
export type InstanceServices = Connections | PubSub | Presence | Storage

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

