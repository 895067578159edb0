import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import type * as Tracer from "effect/Tracer"
import { TracerKey } from "effect/Tracer"
import { Connection } from "../../Connection"
import type { PublishScope } from "./scope"
import { CurrentScope } from "./scope"
import type { LiveConnection } from "./connection"
import { isExit, runInPlace } from "./generators"
import { connectionService } from "./services"

/** Unwraps an Exit for promise callers: the original error, not a wrapper. */
export const exitToPromise = <A>(exit: Exit.Exit<A, unknown>): Promise<A> =>
  Exit.isSuccess(exit) ? Promise.resolve(exit.value) : Promise.reject(Cause.squash(exit.cause))

/**
 * The one way an instance runs Effects: a runtime built once from the
 * built-in services and the user's layer (which may use them), and a
 * per-connection context on top that adds the `Connection` and the publish
 * scope. Dispatch, hooks, `authenticate`, subscribe and publish all run here.
 */
export class InstanceRuntime {
  private readonly layer: Layer.Layer<never, unknown> | undefined
  /** The user's layer being built, or built: the scope its resources are released with, and the build. */
  private build: { readonly scope: Scope.Closeable; readonly services: Promise<Context.Context<never>> } | undefined
  private services: Context.Context<never> | undefined
  /** Whether a handler may run in place: no tracer that wraps every step, no fiber metrics (decided once). */
  private inPlace: boolean | undefined = undefined

  constructor(private readonly builtins: Context.Context<never>, layer: Layer.Layer<unknown, unknown, unknown> | undefined) {
    if (layer === undefined) {
      this.services = builtins
    } else {
      // The user's layer may itself use the built-in services (Storage, PubSub, Connections).
      this.layer = Layer.provideMerge(layer as unknown as Layer.Layer<never, unknown, never>, Layer.succeedContext(builtins))
    }
  }

  /** Whether the services are built, so that what runs now does not wait for the user's layer. */
  get ready(): boolean {
    return this.services !== undefined
  }

  private built(): Context.Context<never> | Promise<Context.Context<never>> {
    if (this.services !== undefined) return this.services
    if (this.build !== undefined) return this.build.services
    const scope = Scope.makeUnsafe()
    const build = {
      scope,
      services: Effect.runPromise(Layer.buildWithScope(this.layer!, scope)).then(
        (services) => this.services = services,
        (error: unknown) => {
          // A layer that failed to build (its backend was down) is tried again on the next use.
          if (this.build === build) this.build = undefined
          void Effect.runPromise(Scope.close(scope, Exit.void))
          throw error
        }
      )
    }
    this.build = build
    return build.services
  }

  /** The instance's services plus the connection's own, built once per connection. */
  private contextOf(
    services: Context.Context<never>,
    connection: LiveConnection | undefined,
    scope: PublishScope | undefined
  ): Context.Context<never> {
    if (connection === undefined) return scope === undefined ? services : Context.add(services, CurrentScope, scope)
    return connection.context ??= Context.add(
      Context.add(services, Connection, connectionService(connection)),
      CurrentScope,
      scope!
    )
  }

  /** Starts a fiber on the connection's context; the starter is made once per connection. */
  private forkOn(services: Context.Context<never>, connection: LiveConnection, scope: PublishScope) {
    return connection.fork ??= Effect.runForkWith(this.contextOf(services, connection, scope))
  }

  /** Runs an Effect for promise callers; it rejects with the original error. */
  runPromise<A>(
    effect: Effect.Effect<A, unknown, unknown>,
    connection?: LiveConnection,
    scope?: PublishScope
  ): Promise<A> {
    const services = this.built()
    if (services instanceof Promise) return services.then(() => this.runPromise(effect, connection, scope))
    return Effect.runPromiseExitWith(this.contextOf(services, connection, scope))(
      effect as Effect.Effect<A, unknown, never>
    ).then(exitToPromise)
  }

  /**
   * Runs one of the engine's own Effects (a subscribe, a publish that has to
   * wait), which use none of the user's services: on the built-in ones, so
   * it neither waits for the user's layer nor fails with it. It rejects with
   * the original error.
   */
  runEngine<A>(effect: Effect.Effect<A, unknown>): Promise<A> {
    return Effect.runPromiseExitWith(this.builtins)(effect).then(exitToPromise)
  }

  /**
   * Forks an Effect for the connection and hands `state` and its exit to `done` —
   * synchronously when it finishes without waiting on anything, which then
   * costs no promise — and waits for what `done` still has to do, if it
   * returns a Promise. Only building the services can fail: `unavailable`
   * is then called instead.
   */
  runFork<A, E, S>(
    effect: Effect.Effect<A, E, unknown>,
    connection: LiveConnection,
    scope: PublishScope,
    state: S,
    done: (state: S, exit: Exit.Exit<A, E>) => Promise<void> | undefined,
    unavailable: (connection: LiveConnection, error: unknown) => void
  ): Promise<void> | undefined {
    const services = this.built()
    if (services instanceof Promise) {
      return services.then(
        () => this.runFork(effect, connection, scope, state, done, unavailable),
        (error: unknown) => unavailable(connection, error)
      )
    }
    const fiber = this.forkOn(services, connection, scope)(effect as Effect.Effect<A, E>)
    const exit = fiber.pollUnsafe()
    if (exit !== undefined) return done(state, exit)
    return new Promise<void>((resolve) =>
      fiber.addObserver((exit) => {
        const after = done(state, exit)
        if (after === undefined) resolve()
        else void after.then(resolve)
      })
    )
  }

  /**
   * Runs a handler's Effect as {@link runFork} does, in place as far as it
   * goes without a fiber (see generators.ts): a handler that never waits
   * starts no fiber at all. A tracer that wraps each step of a fiber, or
   * fiber metrics, in the user's layer keep every handler on a fiber.
   * `around` wraps what goes on on the fiber (a deadline).
   */
  runHandler<S>(
    effect: Effect.Effect<unknown, unknown, unknown>,
    connection: LiveConnection,
    scope: PublishScope,
    state: S,
    done: (state: S, exit: Exit.Exit<unknown, unknown>) => Promise<void> | undefined,
    unavailable: (connection: LiveConnection, error: unknown) => void,
    around?: (rest: Effect.Effect<unknown, unknown>) => Effect.Effect<unknown, unknown>
  ): Promise<void> | undefined {
    const services = this.services
    const inPlace = services !== undefined && (this.inPlace ??= steppable(services))
    const rest = runInPlace(effect, inPlace ? this.contextOf(services, connection, scope) : undefined)
    if (isExit(rest)) return done(state, rest)
    return this.runFork(around === undefined ? rest : around(rest as Effect.Effect<unknown, unknown>), connection, scope, state, done, unavailable)
  }

  /** Releases what the user's layer acquired. */
  dispose(): Promise<void> {
    const build = this.build
    if (build === undefined) return Promise.resolve()
    this.build = undefined
    this.services = undefined
    // A build still running finishes first: what it acquires is released with the rest.
    return build.services.then(() => Effect.runPromise(Scope.close(build.scope, Exit.void)), () => undefined)
  }
}

// Keys made from Effect's own key strings (`Metric.FiberRuntimeMetricsKey`): importing its `Tracer` and
// `FiberRuntimeMetrics` references would bundle their modules. test/EffectHandlers.test.ts holds both to them.
const tracerKey = Context.Service<Tracer.Tracer, Tracer.Tracer>(TracerKey)
const fiberMetricsKey = Context.Service<unknown, unknown>("effect/Metric/FiberRuntimeMetrics")

/** Whether handlers may run in place: a tracer that wraps each step of a fiber, or fiber metrics, need every step on one. */
const steppable = (services: Context.Context<never>): boolean =>
  Context.getOrUndefined(services, tracerKey)?.context === undefined &&
  Context.getOrUndefined(services, fiberMetricsKey) === undefined
