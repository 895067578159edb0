/**
 * How a handler's Effect runs: in place while it stays synchronous, on a
 * fiber from the first step that is not.
 *
 * Most handlers are a generator (`Effect.gen`, `Effect.fnUntraced`) that
 * reads services and sends, and never waits. Starting a fiber for them
 * costs more than the handler itself. So the generator is stepped here
 * first, without a fiber, as long as what it yields needs nothing from a
 * fiber: an `Exit` (`Effect.succeed`, `Effect.void`, a failure), a service
 * found in the context, or one of the engine's own steps made with
 * {@link fiberless} (`Connection.send`). Anything else, a user's
 * `Effect.sync` included (its code may ask for the current fiber), goes on
 * as it always did, on a fiber, from exactly where the generator stopped; a
 * generator that finishes here gives its Exit directly.
 *
 * The generator behind an `Effect.gen` handler is also steadied. A handler
 * written `(ctx) => Effect.gen(function*() { … })` makes a new generator
 * function for every message. V8 gives each such function its own
 * prototype, so every generator object it makes has a hidden class no
 * inline cache has seen, and each `next` called on it misses. Stepping it
 * through the generator prototype's own `next`, here and on the fiber (one
 * object of a fixed class wraps it), keeps those calls monomorphic.
 *
 * This reads a few of Effect's primitive fields (`Suspend`'s thunk, the
 * `Iterator` primitive's iterator and first input). Anything that does not
 * look exactly like them is left to the fiber, so a change in Effect costs
 * speed, never behaviour.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"

const identifierKey = "~effect/Effect/identifier"
const argsKey = "~effect/Effect/args"

interface Primitive {
  readonly [identifierKey]?: unknown
  readonly [argsKey]?: unknown
  iterator?: unknown
  initial?: unknown
}

const generatorPrototype: object = Object.getPrototypeOf(function*() {}.prototype)
const generatorNext = (generatorPrototype as Generator).next

class SteadyGenerator {
  constructor(private readonly generator: Generator) {}
  next(value: unknown): IteratorResult<unknown> {
    return generatorNext.call(this.generator, value)
  }
}

/** The prototype of the last generator found plain: an `Effect.fnUntraced` handler makes all its generators from one. */
let plainPrototype: object | undefined = undefined

/**
 * A generator made by a `function*` whose `next` is the built-in one. It
 * was made just now by the handler's Effect and has not run, so it has no
 * own properties; its prototype, the generator function's, is checked once.
 */
const isPlainGenerator = (iterator: unknown): iterator is Generator => {
  if (typeof iterator !== "object" || iterator === null) return false
  const own = Object.getPrototypeOf(iterator) as object | null
  if (own === plainPrototype) return true
  if (own === null || Object.getPrototypeOf(own) !== generatorPrototype || Object.hasOwn(own, "next")) return false
  if (Object.hasOwn(iterator, "next")) return false
  plainPrototype = own
  return true
}

/** The result of running in place: the Exit when it finished, else the Effect that goes on from there. */
export type InPlace<A, E> = Exit.Exit<A, E> | Effect.Effect<A, E, unknown>

/** How many values a generator may be given in place before the rest goes to a fiber. */
const maxSteps = 64
/** How many fiberless steps one yielded value may unwrap in place. */
const maxUnwrap = 8

const exitTypeId = "~effect/Exit"
const serviceTypeId = "~effect/Context/Service"

/**
 * Whether running in place finished. Effect's own guard is shared by all of
 * Effect, so its property check has seen every shape there is; this one
 * sees only what a handler yields.
 */
export const isExit = (u: unknown): u is Exit.Exit<unknown, unknown> =>
  typeof u === "object" && u !== null && exitTypeId in u

const effectTypeId = "~effect/Effect"

/** `Effect.isEffect`, for what a handler returns (see {@link isExit}). */
export const isEffect = (u: unknown): u is Effect.Effect<unknown, unknown, unknown> =>
  (typeof u === "object" || typeof u === "function") && u !== null && effectTypeId in u

const fiberlessKey = Symbol.for("durable-ws/fiberless")

/**
 * `Effect.suspend(thunk)` for a step of the engine's own that may run in
 * place, outside any fiber: `thunk` must not need one (no current fiber,
 * no fiber references), and may return any Effect.
 */
export const fiberless = <A, E, R>(thunk: () => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  ;(thunk as { [fiberlessKey]?: true })[fiberlessKey] = true
  return Effect.suspend(thunk)
}

/** The rest of a generator stepped in place, on a fiber: `pending` first, its value into the generator. */
const onFiber = (iterator: Primitive, generator: Generator, pending: unknown): Effect.Effect<unknown, unknown, unknown> => {
  iterator.iterator = new SteadyGenerator(generator)
  return Effect.flatMap(pending as Effect.Effect<unknown, unknown, unknown>, (value) => {
    iterator.initial = value
    return iterator as unknown as Effect.Effect<unknown, unknown, unknown>
  })
}

/**
 * Steps the generator in place while what it yields needs no fiber: an
 * Exit, a service the context has, a fiberless step (unwrapped to what it
 * returns). Its Exit when it finished; else the rest, on a fiber, from the
 * first value it could not take.
 */
const runIterator = (iterator: Primitive, generator: Generator, context: Context.Context<never>): InPlace<unknown, unknown> => {
  let input = iterator.initial
  steps: for (let step = 0; step < maxSteps; step++) {
    let state: IteratorResult<unknown>
    try {
      state = generatorNext.call(generator, input)
    } catch (error) {
      return Exit.die(error)
    }
    if (state.done === true) return state.value === undefined ? Exit.void : Exit.succeed(state.value)
    let yielded = state.value
    for (let unwrapped = 0; unwrapped < maxUnwrap; unwrapped++) {
      if (typeof yielded !== "object" && typeof yielded !== "function" || yielded === null) break
      const primitive = yielded as Primitive
      switch (primitive[identifierKey]) {
        case "Success":
          if (!isExit(yielded) || yielded._tag !== "Success") break
          input = yielded.value
          continue steps
        case "Failure":
          if (isExit(yielded)) return yielded
          break
        case "Service": {
          if (!(serviceTypeId in primitive)) break
          const service: unknown = Context.getOrUndefined(context, yielded as Context.Key<unknown, unknown>)
          // Not there (or a reference left at its default): the fiber answers, as it always did.
          if (service === undefined) break
          input = service
          continue steps
        }
        case "Suspend": {
          const thunk = primitive[argsKey]
          if (typeof thunk !== "function" || !(fiberlessKey in thunk)) break
          try {
            yielded = thunk()
          } catch (error) {
            return Exit.die(error)
          }
          continue
        }
      }
      break
    }
    return onFiber(iterator, generator, yielded)
  }
  return onFiber(iterator, generator, Exit.succeed(input))
}

/**
 * Runs a handler's Effect in place as far as it goes without a fiber (see
 * the module's comment): its Exit when it finished, else the Effect a fiber
 * runs from where it stopped. Without a context nothing runs in place. An
 * Effect of any other shape is returned as it is.
 */
export const runInPlace = <A, E>(
  effect: Effect.Effect<A, E, unknown>,
  context: Context.Context<never> | undefined
): InPlace<A, E> => {
  const primitive = effect as unknown as Primitive
  if (primitive[identifierKey] !== "Suspend") return effect
  const thunk = primitive[argsKey]
  if (typeof thunk !== "function") return effect
  let inner: Primitive
  try {
    inner = thunk() as Primitive
  } catch (error) {
    return Exit.die(error)
  }
  if (inner[identifierKey] !== "Iterator" || !isPlainGenerator(inner.iterator)) {
    return inner as unknown as Effect.Effect<A, E, unknown>
  }
  // Without a context (every step on a fiber), the generator is only steadied.
  if (context === undefined) {
    inner.iterator = new SteadyGenerator(inner.iterator)
    return inner as unknown as Effect.Effect<A, E, unknown>
  }
  return runIterator(inner, inner.iterator, context) as InPlace<A, E>
}
