/**
 * One inbound frame, from bytes to its handler: decode → route → validate →
 * middleware → handler, with every failure turned into the wire error the
 * spec prescribes. Lifecycle hooks run here too, with the same reporting.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import { constant, identity } from "effect/Function"
import * as Predicate from "effect/Predicate"
import type { WireError } from "../../Errors"
import { HandlerTimeout, toWireError, TopicError, UnknownMessageType, ValidationError, WsError } from "../../Errors"
import type { PayloadResult, RpcSchema } from "../../Message"
import { declaresMeta, decodeMeta, decodeParsedPayload, isPendingResult } from "../../Message"
import {
  decodeEnvelope,
  encodeErrorFrame,
  heartbeat,
  isInvalidFrame,
  isReservedType,
  presenceRequestTopic,
  ReservedTypes
} from "../../Protocol"
import type { PublishScope } from "./scope"
import { runInScope } from "./scope"
import { answeredBefore, recordIfUnanswered } from "./resume"
import type { LiveConnection } from "./connection"
import { beginTurn, endTurn } from "./connection"
import { HandlerContext } from "./context"
import { isEffect } from "./generators"
import type { Instance } from "./instance"
import type { AnyHandler, AnyMiddleware, Route } from "./routes"

// Code that runs per message makes no function literal bound to a name (a variable or an object
// property): wrangler's default `keep_names` names each such function where it is made, a
// `defineProperty` and a new hidden class every time. Helpers made once, factories and
// arguments stay unnamed.

const ignore = (): undefined => undefined

/** A Promise as an Effect that fails with what it rejects with. */
const awaitPromise = (promise: PromiseLike<unknown>): Effect.Effect<unknown, unknown> =>
  Effect.tryPromise({ try: constant(promise), catch: identity })

const toEffect = (result: unknown): Effect.Effect<unknown, unknown> => {
  if (Effect.isEffect(result)) return result as Effect.Effect<unknown, unknown>
  if (Predicate.isPromiseLike(result)) return awaitPromise(result)
  return Effect.void
}

/** Calls user code; a synchronous throw becomes a failure like any other. */
const invoke = <Args extends ReadonlyArray<unknown>>(
  f: (...args: Args) => unknown,
  ...args: Args
): Effect.Effect<unknown, unknown> =>
  Effect.suspend(() => {
    try {
      return toEffect(f(...args))
    } catch (error) {
      return Effect.fail(error)
    }
  })

/** What a layer of the chain ({@link chain}, {@link inPlace}) knows of the rest below it. */
interface Below {
  downstream: Promise<void> | undefined
  settled: boolean
  /** The fiber the layer's Effect runs on, once it answered with one. */
  fiber: Fiber.Fiber<unknown, unknown> | undefined
}

/** The rest of the chain, started: a Promise that settles with it, and `below.settled` once it has. */
const started = (below: Below, run: () => Promise<void> | undefined): Promise<void> => {
  let running: Promise<void> | undefined
  try {
    running = run()
  } catch (error) {
    below.settled = true
    return Promise.reject(error)
  }
  if (running === undefined) {
    below.settled = true
    return Promise.resolve()
  }
  return running.then(
    () => void (below.settled = true),
    (error: unknown) => {
      below.settled = true
      throw error
    }
  )
}

/** Fibers the chain started, for interrupting them: a layer's children, or all of a message's under a deadline. */
type Fibers = Set<Fiber.Fiber<unknown, unknown>>

/** The rest of the chain as a child fiber with `context`, as {@link chain}'s `next()` runs it. */
const forked = (
  below: Below,
  context: Fiber.Fiber<unknown, unknown>["context"],
  rest: Effect.Effect<unknown, unknown>,
  fibers: Fibers | undefined
) =>
  new Promise<void>((resolve, reject) => {
    const fiber = Effect.runForkWith(context)(rest)
    fibers?.add(fiber)
    fiber.addObserver((exit) => {
      below.settled = true
      if (exit._tag === "Success") resolve()
      else reject(Cause.squash(exit.cause))
    })
  })

/** What a layer still waits for after its own answer: the rest it started and did not see settle. */
const pending = (below: Below): Promise<void> | undefined =>
  below.downstream === undefined || below.settled ? undefined : below.downstream

/** The Effect a layer's own answer is followed by: waiting for {@link pending}. */
const awaitPending = (below: Below) => () =>
  Effect.suspend(() => {
    const rest = pending(below)
    return rest === undefined ? Effect.void : awaitPromise(rest)
  })

/**
 * Middleware and handler as one Effect. `next()` runs the rest of the chain
 * as a child fiber of the middleware's own, with its services: interrupting
 * the chain (a deadline) interrupts every layer below it too.
 */
const chain = (
  middleware: ReadonlyArray<AnyMiddleware>,
  index: number,
  handler: AnyHandler,
  ctx: HandlerContext
): Effect.Effect<unknown, unknown> => {
  if (index === middleware.length) return invoke(handler, ctx)
  return Effect.withFiber((parent) => {
    const below: Below = { downstream: undefined, settled: false, fiber: parent }
    const children: Fibers = new Set()
    // `next`, written in place (see above).
    return invoke(middleware[index]!, ctx, () =>
      below.downstream ??= forked(below, parent.context, chain(middleware, index + 1, handler, ctx), children)).pipe(
        // A middleware that awaited next() has already seen its outcome; one that
        // did not is still waited for, and its failure is not lost.
        Effect.flatMap(awaitPending(below)),
        Effect.onInterrupt(() => Effect.sync(() => children.forEach((child) => child.interruptUnsafe(parent.id))))
      )
  })
}

/** Throws what an Exit failed with; nothing for a success. */
const unwrap = (exit: Exit.Exit<unknown, unknown> | undefined): undefined => {
  if (exit !== undefined && Exit.isFailure(exit)) throw Cause.squash(exit.cause)
  return undefined
}

const keepExit = (outcome: { exit: Exit.Exit<unknown, unknown> | undefined }, exit: Exit.Exit<unknown, unknown>) => {
  outcome.exit = exit
  return undefined
}

/** The handler below middleware, in place: settles (or throws) with it, as {@link invoke} would fail. */
const handlerBelow = (
  instance: Instance,
  prepared: Prepared,
  scope: PublishScope,
  fibers: Fibers | undefined
): Promise<void> | undefined => {
  const { ctx, route } = prepared
  const result = route.handler(ctx)
  if (result instanceof Promise) return result.then(ignore)
  if (result === undefined) return undefined
  if (isEffect(result)) {
    const outcome: { exit: Exit.Exit<unknown, unknown> | undefined } = { exit: undefined }
    const running = instance.runtime.runHandler(
      result as Effect.Effect<unknown, unknown>,
      ctx.connection,
      scope,
      outcome,
      keepExit,
      unavailable,
      fibers === undefined ? undefined : (rest) =>
        Effect.withFiber((fiber) => {
          fibers.add(fiber)
          return rest
        })
    )
    return running === undefined ? unwrap(outcome.exit) : running.then(() => unwrap(outcome.exit))
  }
  if (Predicate.isPromiseLike(result)) return Promise.resolve(result).then(ignore)
  return undefined
}

/**
 * Middleware and handler, in place: each layer is called directly and its
 * `next()` starts the rest at once, so a chain of promise middleware
 * starts no fiber. A layer that answers with an Effect
 * runs on a fiber, and a `next()` it calls from there forks the rest with
 * that fiber's services, as {@link chain} does. Returns nothing when the
 * chain ended synchronously; throws, or rejects, with what failed. Under a
 * deadline, every fiber it starts goes into `fibers`.
 */
const inPlace = (
  instance: Instance,
  prepared: Prepared,
  scope: PublishScope,
  middleware: ReadonlyArray<AnyMiddleware>,
  index: number,
  fibers: Fibers | undefined
): Promise<void> | undefined => {
  if (index === middleware.length) return handlerBelow(instance, prepared, scope, fibers)
  const { ctx } = prepared
  const below: Below = { downstream: undefined, settled: false, fiber: undefined }
  // `next`, written in place (see above).
  const result = middleware[index]!(ctx, () =>
    below.downstream ??= below.fiber === undefined
      ? started(below, () => inPlace(instance, prepared, scope, middleware, index + 1, fibers))
      : forked(below, below.fiber.context, chain(middleware, index + 1, prepared.route.handler, ctx), fibers))
  if (Effect.isEffect(result)) {
    const layer = Effect.withFiber((fiber) => {
      below.fiber = fiber
      fibers?.add(fiber)
      return result as Effect.Effect<unknown, unknown>
    }).pipe(Effect.flatMap(awaitPending(below)))
    return instance.runtime.runPromise(layer, ctx.connection, scope).then(ignore)
  }
  if (Predicate.isPromiseLike(result)) return Promise.resolve(result).then(() => pending(below))
  return pending(below)
}

const sendError = (connection: LiveConnection, error: WireError, correlationId: string | undefined) => {
  connection.sendFrame(encodeErrorFrame(error, correlationId))
}

/**
 * Refuses a frame before any handler: `onError` hears of it (with no
 * context), and unless a hook returned `false` the client gets the error.
 */
const reject = (
  instance: Instance,
  connection: LiveConnection,
  error: unknown,
  correlationId: string | undefined,
  type?: string
): undefined => {
  const about = type === undefined ? { clientId: connection.clientId } : { clientId: connection.clientId, type }
  const { suppressed } = instance.router.notifyError(error, undefined, about)
  if (!suppressed) sendError(connection, toWireError(error), correlationId)
  return undefined
}

// A payload that fails its schema is answered as before, without onError (as WS-Kit's router does).
const invalidPayload = (connection: LiveConnection, error: unknown, correlationId: string | undefined): undefined => {
  sendError(connection, toWireError(error), correlationId)
  return undefined
}

/** Calls the `onError` hooks with the original error; false when there are none. */
export const notifyErrorHooks = (instance: Instance, error: unknown, ctx: HandlerContext): boolean =>
  instance.router.notifyError(error, ctx, { clientId: ctx.clientId, type: ctx.type }).heard

/**
 * Reports a failed handler: the client gets the mapped error (generic for
 * unknown errors), `onError` gets the original, the connection stays open.
 * With no `onError` hook, an unexpected failure is logged.
 */
const reportError = (instance: Instance, ctx: HandlerContext, error: unknown, notifyClient: boolean): void => {
  const wire = toWireError(error)
  const { result: { heard, suppressed }, frames } = ctx.connection.collect(() =>
    instance.router.notifyError(error, ctx.forHooks(), { clientId: ctx.clientId, type: ctx.type })
  )
  // A hook that returned false answers the client itself (or not at all): the request counts as answered.
  if (notifyClient && !suppressed) ctx.answer(encodeErrorFrame(wire, ctx.correlationId))
  else if (notifyClient) ctx.replied = true
  // What the hooks sent follows the error they were told about.
  for (const frame of frames) ctx.connection.sendFrame(frame)
  if (!heard && wire.code === "INTERNAL") console.error("durable-ws: handler failed", error)
}

const reportFailure = (
  instance: Instance,
  ctx: HandlerContext,
  cause: Cause.Cause<unknown>,
  notifyClient: boolean
): Effect.Effect<void> => Effect.sync(() => reportError(instance, ctx, Cause.squash(cause), notifyClient))

// An unknown type is client input: name it in the error, but never reflect a huge one back whole.
const shownType = (type: string): string => type.length <= 64 ? type : `${type.slice(0, 64)}…`

const presenceRequestIntervalMs = 1000

/** A client asks for a topic's presence: only a subscriber of the topic is answered (SPEC §15's ACL). */
const presenceRequest = (
  instance: Instance,
  connection: LiveConnection,
  topic: string | undefined,
  correlationId: string | undefined
): undefined => {
  if (topic === undefined) {
    return reject(instance, connection, new ValidationError({ message: "A presence request is { topic: string }" }), correlationId)
  }
  if (!connection.topics.has(topic)) {
    return reject(
      instance,
      connection,
      new TopicError({ topic: shownType(topic), code: "PERMISSION_DENIED", message: "Subscribe to a topic to see its presence" }),
      correlationId
    )
  }
  // A few bytes ask for a whole member list: one answer per connection per interval, so asking is no amplifier.
  const now = Date.now()
  if (now < connection.presenceAnsweredAt + presenceRequestIntervalMs) {
    return reject(
      instance,
      connection,
      new WsError({ code: "RESOURCE_EXHAUSTED", message: `One presence request per ${presenceRequestIntervalMs} ms` }),
      correlationId
    )
  }
  connection.presenceAnsweredAt = now
  instance.sendPresence(connection, topic)
  return undefined
}


/**
 * How long an rpc whose handler returned without replying may still reply
 * (from a callback, a timer, another message) when no `handlerTimeoutMs` is
 * set: the default request timeout of WS-Kit's client and ours.
 */
export const deferredReplyMs = 30_000

interface Prepared {
  readonly instance: Instance
  readonly ctx: HandlerContext
  readonly route: Route
  /** Set while an asynchronous validator is still deciding on the payload. */
  readonly validating: Promise<PayloadResult> | undefined
  /** The payload as the client sent it (what a resend is compared by). */
  readonly sent: unknown
}

/** An rpc that declares progress gives its context `progress`. */
const withProgress = (ctx: HandlerContext, route: Route): HandlerContext => {
  if (route.response !== undefined) ctx.progressMessage = (route.message as RpcSchema).progress
  return ctx
}

/**
 * Decode → route → validate. A frame that fails any step is answered here,
 * with the error the spec prescribes, and yields nothing to handle. A
 * payload whose validator answered with a Promise is prepared without it:
 * `validating` carries the verdict.
 */
const prepare = (instance: Instance, connection: LiveConnection, frame: string | ArrayBuffer): Prepared | undefined => {
  const envelope = decodeEnvelope(frame, instance.config.maxPayloadBytes)
  if (isInvalidFrame(envelope)) return reject(instance, connection, envelope.error, envelope.correlationId)
  const { type, correlationId } = envelope
  const meta = serverOwned(envelope.meta)
  if (type === ReservedTypes.heartbeat) {
    connection.sendFrame(heartbeat.response)
    return undefined
  }
  if (type === ReservedTypes.presence && instance.presence !== undefined) {
    return presenceRequest(instance, connection, presenceRequestTopic(envelope.payload), correlationId)
  }
  const route = isReservedType(type) ? undefined : instance.router.routes.get(type)
  if (route === undefined) {
    return reject(
      instance,
      connection,
      new UnknownMessageType({
        type,
        message: isReservedType(type)
          ? `Message type "${shownType(type)}" is reserved`
          : `No handler for message type "${shownType(type)}"`
      }),
      correlationId,
      type
    )
  }
  if (route.response !== undefined && correlationId === undefined) {
    return reject(
      instance,
      connection,
      new ValidationError({ message: `RPC request "${type}" requires meta.correlationId` }),
      undefined,
      type
    )
  }
  let payload: PayloadResult | Promise<PayloadResult>
  try {
    payload = decodeParsedPayload(route.message, envelope.payload)
    if (declaresMeta(route.message)) payload = bothValid(decodeMeta(route.message, meta), payload)
  } catch (error) {
    // A validator that throws is a server bug: reported like a failing handler, never as the client's fault.
    const ctx = new HandlerContext(instance, connection, type, undefined, meta, correlationId, route.response)
    reportError(instance, ctx, error, true)
    return undefined
  }
  if (isPendingResult(payload)) {
    const ctx = new HandlerContext(instance, connection, type, undefined, meta, correlationId, route.response)
    return { instance, ctx: withProgress(ctx, route), route, validating: payload, sent: envelope.payload }
  }
  if (!payload.ok) return invalidPayload(connection, payload.error, correlationId)
  const ctx = new HandlerContext(instance, connection, type, payload.value, meta, correlationId, route.response)
  return { instance, ctx: withProgress(ctx, route), route, validating: undefined, sent: envelope.payload }
}

/**
 * `meta.clientId` and `meta.receivedAt` are the server's to say (`ctx.clientId`,
 * `ctx.receivedAt`): a client's own are dropped before anything reads them.
 */
const serverOwned = (meta: Readonly<Record<string, unknown>>): Readonly<Record<string, unknown>> => {
  if (!Object.hasOwn(meta, "clientId") && !Object.hasOwn(meta, "receivedAt")) return meta
  const { clientId: _clientId, receivedAt: _receivedAt, ...rest } = meta
  return rest
}

/** The payload's result when the meta passed too; the meta's failure first. */
const bothValid = (
  meta: PayloadResult | Promise<PayloadResult>,
  payload: PayloadResult | Promise<PayloadResult>
): PayloadResult | Promise<PayloadResult> =>
  isPendingResult(meta) || isPendingResult(payload)
    ? Promise.all([meta, payload]).then(([m, p]) => m.ok ? p : m)
    : meta.ok ? payload : meta

/** Takes an asynchronous validator's verdict: true to go on to the handler, false once the client is told. */
const accept = ({ ctx }: Prepared, result: PayloadResult): boolean => {
  if (result.ok) {
    ctx.payload = result.value
    return true
  }
  // The error is the request's one answer: no "completed without replying" after it.
  ctx.replied = true
  ctx.answer(encodeErrorFrame(toWireError(result.error), ctx.correlationId))
  return false
}

/**
 * A handler finished. An rpc it did not answer yet may be answered later
 * (a deferred reply) until its deadline — `handlerTimeoutMs`, else
 * {@link deferredReplyMs}, from the frame's arrival; then it gets its one
 * `RPC_ERROR DEADLINE_EXCEEDED`, and a reply after that is dropped.
 */
const completed = (instance: Instance, { ctx, route }: Prepared): void => {
  if (route.response === undefined || ctx.replied) return
  const timeoutMs = instance.config.handlerTimeoutMs ?? deferredReplyMs
  ctx.awaitReply(ctx.receivedAt + timeoutMs, () => {
    const error = new HandlerTimeout({ timeoutMs, message: `No reply to "${ctx.type}" within ${timeoutMs} ms` })
    ctx.answer(encodeErrorFrame(toWireError(error), ctx.correlationId))
  })
}

/** Completes once the handler's asynchronously validated sends are out; one that failed fails the handler. */
const finish = (instance: Instance, prepared: Prepared): Promise<void> | undefined => {
  const sends = prepared.ctx.sendsDone()
  if (sends === undefined) {
    completed(instance, prepared)
    return undefined
  }
  return sends.then(() => completed(instance, prepared), (error: unknown) => reportError(instance, prepared.ctx, error, true))
}

/** A handler's Effect ended: report its failure, or finish it. */
const settled = (prepared: Prepared, exit: Exit.Exit<unknown, unknown>): Promise<void> | undefined => {
  const { instance } = prepared
  if (Exit.isSuccess(exit)) return finish(instance, prepared)
  reportError(instance, prepared.ctx, Cause.squash(exit.cause), true)
  return undefined
}

const sendsDone = (ctx: HandlerContext): Effect.Effect<unknown, unknown> =>
  Effect.suspend(() => {
    const sends = ctx.sendsDone()
    return sends === undefined ? Effect.void : awaitPromise(sends)
  })

/**
 * Validation still running, middleware, the handler and its deadline, as
 * one Effect: for a frame whose validator is still deciding, or one that
 * comes before the user's layer is built (see {@link handle}). The deadline
 * covers all of it: a validator slower than `handlerTimeoutMs` is a
 * timeout like a slow handler, and so are sends still waiting for their
 * validator.
 */
const program = (instance: Instance, prepared: Prepared): Effect.Effect<unknown, unknown> => {
  const { ctx, route, validating } = prepared
  const middleware = middlewareOf(instance, route)
  let handled = middleware.length === 0 ? invoke(route.handler, ctx) : chain(middleware, 0, route.handler, ctx)
  if (validating !== undefined) {
    const handler = handled
    handled = Effect.flatMap(
      awaitPromise(validating),
      (result) => accept(prepared, result as PayloadResult) ? handler : Effect.void
    )
  }
  const timeoutMs = instance.config.handlerTimeoutMs
  return timeoutMs === undefined ? handled : withDeadline(handled, ctx, timeoutMs)
}

/** The router's middleware, then the route's. */
const middlewareOf = (instance: Instance, route: Route): ReadonlyArray<AnyMiddleware> =>
  route.middleware.length === 0 ? instance.router.middleware : [...instance.router.middleware, ...route.middleware]

/** A handler past its deadline: its context goes dead (a promise cannot be stopped), and this is its failure. */
const expired = (ctx: HandlerContext, timeoutMs: number): HandlerTimeout => {
  ctx.revoke()
  return new HandlerTimeout({ timeoutMs, message: `Handler for "${ctx.type}" ran past ${timeoutMs} ms` })
}

/** Marks the deadline's side of the race in {@link withDeadline}. */
const pastDeadline: unique symbol = Symbol("pastDeadline")

/** Succeeds with {@link pastDeadline} after `timeoutMs`, on the same timer as every other deadline (not Effect's `Clock`). */
const deadline = (timeoutMs: number): Effect.Effect<typeof pastDeadline> =>
  Effect.callback((resume) => {
    const timer = setTimeout(() => resume(Effect.succeed(pastDeadline)), timeoutMs)
    return Effect.sync(() => clearTimeout(timer))
  })

/**
 * An Effect handler's own work and its sends, under the deadline: the first
 * to finish wins, the other is interrupted. The race is `timeoutOrElse`'s
 * without its `Duration` and `Clock`, which a worker would otherwise bundle
 * for this alone.
 */
const withDeadline = (handled: Effect.Effect<unknown, unknown>, ctx: HandlerContext, timeoutMs: number) =>
  Effect.flatMap(
    Effect.raceFirst(Effect.andThen(handled, sendsDone(ctx)), deadline(timeoutMs)),
    (result) => result === pastDeadline ? Effect.fail(expired(ctx, timeoutMs)) : Effect.succeed(result)
  )

const unavailable = (connection: LiveConnection, error: unknown): void => {
  console.error("durable-ws: services failed to build", error)
  sendError(connection, { code: "UNAVAILABLE", message: "Service unavailable" }, undefined)
}

/** What {@link callHandler} gives for a handler that threw: the throw is already reported. */
const threw: unique symbol = Symbol("threw")

/** Calls the route's handler; a synchronous throw is reported, and {@link threw} returned. */
const callHandler = (instance: Instance, prepared: Prepared): unknown => {
  try {
    return prepared.route.handler(prepared.ctx)
  } catch (error) {
    reportError(instance, prepared.ctx, error, true)
    return threw
  }
}

/** Calls a handler directly: an Effect starts in place, a Promise is awaited, nothing else waits. */
const start = (instance: Instance, prepared: Prepared, scope: PublishScope): Promise<void> | undefined => {
  const result = callHandler(instance, prepared)
  if (result === threw) return undefined
  // A native Promise is the common answer of an async handler: checked first, it costs one instanceof.
  if (result instanceof Promise) return awaitHandler(instance, prepared, result)
  if (result === undefined) return finish(instance, prepared)
  if (isEffect(result)) {
    return instance.runtime.runHandler(
      result as Effect.Effect<unknown, unknown>,
      prepared.ctx.connection,
      scope,
      prepared,
      settled,
      unavailable
    )
  }
  if (Predicate.isPromiseLike(result)) return awaitHandler(instance, prepared, result)
  return finish(instance, prepared)
}

/** Interrupts `fibers`; settles once every one of them has stopped. */
const interruptAll = (fibers: Fibers): Promise<unknown> =>
  Promise.all(Array.from(fibers, (fiber) =>
    new Promise((resolve) => {
      fiber.addObserver(resolve)
      fiber.interruptUnsafe()
    })))

/**
 * `work` (a handler's promise, a chain of middleware, or sends still
 * waiting for their validator) raced against one timer: past `timeoutMs`
 * the context is revoked, the `fibers` the work started are interrupted,
 * and once they stopped (as a race waits for its loser) the handler fails
 * with `HandlerTimeout`, as on a fiber; what a promise does later is
 * ignored. Nothing left to wait for needs no timer. In workerd a timer
 * counts from the start of the event, so the handler's synchronous part is
 * inside the deadline.
 */
const raceDeadline = (
  instance: Instance,
  prepared: Prepared,
  work: PromiseLike<unknown> | undefined,
  timeoutMs: number,
  fibers?: Fibers
): Promise<void> | undefined => {
  if (work === undefined) return finish(instance, prepared)
  const { ctx } = prepared
  return new Promise<void>((resolve) => {
    let over = false
    const timer = setTimeout(() => {
      over = true
      const error = expired(ctx, timeoutMs)
      if (fibers === undefined || fibers.size === 0) {
        reportError(instance, ctx, error, true)
        resolve()
      } else {
        void interruptAll(fibers).then(() => {
          reportError(instance, ctx, error, true)
          resolve()
        })
      }
    }, timeoutMs)
    work.then(
      () => {
        if (over) return
        clearTimeout(timer)
        resolve(finish(instance, prepared))
      },
      (error: unknown) => {
        if (over) return
        clearTimeout(timer)
        reportError(instance, ctx, error, true)
        resolve()
      }
    )
  })
}

/** An Effect handler under a deadline ended: its failure is reported, or its sends are raced against the deadline. */
const settledUnderDeadline = (prepared: Prepared, exit: Exit.Exit<unknown, unknown>): Promise<void> | undefined => {
  const { instance, ctx } = prepared
  if (Exit.isFailure(exit)) {
    reportError(instance, ctx, Cause.squash(exit.cause), true)
    return undefined
  }
  return raceDeadline(instance, prepared, ctx.sendsDone(), instance.config.handlerTimeoutMs!)
}

/**
 * A handler without middleware under `handlerTimeoutMs`, called directly.
 * An Effect runs in place while it can, as without a deadline (what runs
 * synchronously cannot be timed out anyway); from its first fiber step
 * on, its fiber runs under the deadline as an Effect, which interrupts
 * it. A Promise is raced against one timer ({@link raceDeadline}).
 */
const startUnderDeadline = (
  instance: Instance,
  prepared: Prepared,
  scope: PublishScope,
  timeoutMs: number
): Promise<void> | undefined => {
  const { ctx } = prepared
  const result = callHandler(instance, prepared)
  if (result === threw) return undefined
  if (isEffect(result)) {
    return instance.runtime.runHandler(
      result as Effect.Effect<unknown, unknown>,
      ctx.connection,
      scope,
      prepared,
      settledUnderDeadline,
      unavailable,
      (rest) => withDeadline(rest, ctx, timeoutMs)
    )
  }
  const work = result instanceof Promise || Predicate.isPromiseLike(result)
    ? Promise.resolve(result).then(() => ctx.sendsDone())
    : ctx.sendsDone()
  return raceDeadline(instance, prepared, work, timeoutMs)
}

/**
 * Middleware and the handler, in place (see {@link inPlace}), then what
 * {@link start} does after a handler; under a deadline, raced against it
 * ({@link raceDeadline}), with the fibers the chain started.
 */
const startChain = (
  instance: Instance,
  prepared: Prepared,
  scope: PublishScope,
  timeoutMs: number | undefined
): Promise<void> | undefined => {
  const fibers: Fibers | undefined = timeoutMs === undefined ? undefined : new Set()
  let running: Promise<void> | undefined
  try {
    running = inPlace(instance, prepared, scope, middlewareOf(instance, prepared.route), 0, fibers)
  } catch (error) {
    reportError(instance, prepared.ctx, error, true)
    return undefined
  }
  if (timeoutMs === undefined) {
    return running === undefined ? finish(instance, prepared) : awaitHandler(instance, prepared, running)
  }
  const { ctx } = prepared
  const work = running === undefined ? ctx.sendsDone() : running.then(() => ctx.sendsDone())
  return raceDeadline(instance, prepared, work, timeoutMs, fibers)
}

const awaitHandler = (instance: Instance, prepared: Prepared, result: PromiseLike<unknown>): Promise<void> =>
  Promise.resolve(result).then(
    () => finish(instance, prepared),
    (error: unknown) => reportError(instance, prepared.ctx, error, true)
  )

/**
 * Carries one inbound frame to its handler. Never rejects; returns nothing
 * when the frame was handled synchronously. A Promise means the
 * connection's next frame must wait for it (an async handler, or an
 * asynchronous validator).
 *
 * Handlers and middleware are called directly: starting a fiber only to
 * await a Promise would cost more than the rest of the path. An Effect
 * runs in place until it needs a fiber; a deadline is one timer, or the
 * Effect's own for a handler without middleware. Under middleware or a
 * deadline, a frame whose validator is still deciding, or one that comes
 * before the user's layer is built, runs as one Effect ({@link program}).
 */
export const dispatch = (
  instance: Instance,
  connection: LiveConnection,
  scope: PublishScope,
  frame: string | ArrayBuffer
): Promise<void> | undefined => {
  const prepared = prepare(instance, connection, frame)
  if (prepared === undefined) return undefined
  const outer = beginTurn(prepared.ctx.receivedAt)
  try {
    return handle(instance, connection, scope, prepared)
  } finally {
    endTurn(outer)
  }
}

/** Middleware, the handler and its deadline on a fiber (see {@link program}). */
const runProgram = (instance: Instance, connection: LiveConnection, scope: PublishScope, prepared: Prepared) =>
  instance.runtime.runFork(program(instance, prepared), connection, scope, prepared, settled, unavailable)

const handle = (
  instance: Instance,
  connection: LiveConnection,
  scope: PublishScope,
  prepared: Prepared
): Promise<void> | undefined => {
  if (answeredBefore(instance, prepared.ctx, prepared.sent, prepared.route.idempotent)) return undefined
  const { ctx, validating } = prepared
  const middleware = instance.router.middleware.length > 0 || prepared.route.middleware.length > 0
  const timeoutMs = instance.config.handlerTimeoutMs
  // Called directly once no validator is still running and the services are built.
  const direct = validating === undefined && instance.runtime.ready
  let running: Promise<void> | undefined
  if (direct && timeoutMs === undefined) {
    running = middleware ? startChain(instance, prepared, scope, undefined) : start(instance, prepared, scope)
  } else if (timeoutMs !== undefined) {
    // Under a deadline the message's own context is the scope: once revoked, a late router.publish is refused.
    running = runInScope(ctx, () =>
      !direct
        ? runProgram(instance, connection, scope, prepared)
        : middleware
        ? startChain(instance, prepared, scope, timeoutMs)
        : startUnderDeadline(instance, prepared, scope, timeoutMs))
  } else if (middleware) {
    running = runProgram(instance, connection, scope, prepared)
  } else if (validating === undefined) {
    running = start(instance, prepared, scope)
  } else {
    // The handler starts in a later turn: the request is recorded now.
    recordIfUnanswered(instance, ctx)
    return validating.then(
      (result) => accept(prepared, result) ? start(instance, prepared, scope) : undefined,
      (error: unknown) => reportError(instance, ctx, error, true)
    )
  }
  recordIfUnanswered(instance, ctx)
  return running
}


/**
 * Runs lifecycle hooks (`onOpen`, `onClose`) in order; a failing hook is
 * reported to `onError` and does not stop the others.
 */
export const runLifecycle = (
  instance: Instance,
  hooks: ReadonlyArray<AnyHandler>,
  ctx: HandlerContext
): Promise<void> => {
  const { connection } = ctx
  const effect = Effect.forEach(
    hooks,
    (hook) =>
      Effect.catchCause(Effect.asVoid(invoke(hook, ctx)), (cause) => reportFailure(instance, ctx, cause, false)),
    { discard: true }
  )
  const entry = instance.scopeOf(connection)
  return connection.enqueue(() => entry.enter(() => instance.runtime.runFork(effect, connection, entry, undefined, ignore, unavailable)))
}
