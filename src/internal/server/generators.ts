/**
 * Steadies the generator behind an `Effect.gen` handler.
 *
 * A handler written `(ctx) => Effect.gen(function*() { … })` makes a new
 * generator function for every message. V8 gives each such function its
 * own prototype, so every generator object it makes has a hidden class no
 * inline cache has seen: each `iterator.next(…)` Effect's generator driver
 * makes on it misses and walks the prototype chain the slow way. Wrapping
 * the generator in one object of a fixed class, whose `next` calls the
 * generator prototype's own `next`, makes those calls monomorphic; the
 * generator itself, and so the handler's semantics, are untouched.
 *
 * This reads two of Effect's primitive fields (`Suspend`'s thunk and the
 * `Iterator` primitive's iterator). Anything that does not look exactly
 * like them is left as it is, so a change in Effect costs speed, never
 * behaviour.
 */
import * as Effect from "effect/Effect"

const identifierKey = "~effect/Effect/identifier"
const argsKey = "~effect/Effect/args"

interface Primitive {
  readonly [identifierKey]?: unknown
  readonly [argsKey]?: unknown
  iterator?: unknown
}

const generatorPrototype: object = Object.getPrototypeOf(function*() {}.prototype)
const generatorNext = (generatorPrototype as Generator).next

class SteadyGenerator {
  constructor(private readonly generator: Generator) {}
  next(value: unknown): IteratorResult<unknown> {
    return generatorNext.call(this.generator, value)
  }
}

/** A generator made by a `function*` whose `next` is the built-in one. */
const isPlainGenerator = (iterator: unknown): iterator is Generator => {
  if (typeof iterator !== "object" || iterator === null) return false
  const own = Object.getPrototypeOf(iterator) as object | null
  return own !== null && Object.getPrototypeOf(own) === generatorPrototype && !Object.hasOwn(own, "next") &&
    !Object.hasOwn(iterator, "next")
}

const steady = (thunk: () => Primitive): Effect.Effect<unknown, unknown> =>
  Effect.suspend(() => {
    const inner = thunk()
    if (inner[identifierKey] === "Iterator" && isPlainGenerator(inner.iterator)) {
      inner.iterator = new SteadyGenerator(inner.iterator)
    }
    return inner as unknown as Effect.Effect<unknown, unknown>
  })

/** The same Effect; an `Effect.gen` one drives its generator through a fixed class. */
export const steadyGenerator = (effect: Effect.Effect<unknown, unknown, unknown>): Effect.Effect<unknown, unknown, unknown> => {
  const primitive = effect as unknown as Primitive
  if (primitive[identifierKey] !== "Suspend") return effect
  const thunk = primitive[argsKey]
  return typeof thunk === "function" ? steady(thunk as () => Primitive) : effect
}
