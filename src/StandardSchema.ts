/**
 * The Standard Schema v1 contract: what zod (≥ 3.24), valibot (≥ 1),
 * arktype (≥ 2) and other validators implement, so that durable-ws can use
 * them beside Effect Schema without depending on any of them.
 *
 * The contract is types plus one function: a validator carries a
 * `~standard` property whose `validate` returns either a result or a
 * Promise of one. It is declared here rather than imported, so that the
 * package has no dependency for it (the specification asks for exactly
 * that).
 *
 * @since 0.1.0
 */

/**
 * A Standard Schema v1 validator: anything with a `~standard` property.
 *
 * @since 0.1.0
 * @category models
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly "~standard": StandardSchemaV1.Props<Input, Output>
}

/**
 * @since 0.1.0
 */
export declare namespace StandardSchemaV1 {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Props<Input = unknown, Output = Input> {
    readonly version: 1
    /** The library that made the validator ("zod", "valibot", "arktype", ...). */
    readonly vendor: string
    /** Checks `value`; a Promise only when the validator is asynchronous. */
    readonly validate: (value: unknown, options?: Options | undefined) => Result<Output> | Promise<Result<Output>>
    /** Type carriers for inference; never present at run time. */
    readonly types?: Types<Input, Output> | undefined
  }

  /**
   * @since 0.1.0
   * @category models
   */
  export interface Options {
    readonly libraryOptions?: Record<string, unknown> | undefined
  }

  /**
   * @since 0.1.0
   * @category models
   */
  export type Result<Output> = SuccessResult<Output> | FailureResult

  /**
   * @since 0.1.0
   * @category models
   */
  export interface SuccessResult<Output> {
    readonly value: Output
    /** No issues means success. */
    readonly issues?: undefined
  }

  /**
   * @since 0.1.0
   * @category models
   */
  export interface FailureResult {
    readonly issues: ReadonlyArray<Issue>
  }

  /**
   * @since 0.1.0
   * @category models
   */
  export interface Issue {
    readonly message: string
    readonly path?: ReadonlyArray<PropertyKey | PathSegment> | undefined
  }

  /**
   * @since 0.1.0
   * @category models
   */
  export interface PathSegment {
    readonly key: PropertyKey
  }

  /**
   * @since 0.1.0
   * @category models
   */
  export interface Types<Input = unknown, Output = Input> {
    readonly input: Input
    readonly output: Output
  }

  /**
   * What the validator accepts.
   *
   * @since 0.1.0
   * @category models
   */
  export type InferInput<S extends StandardSchemaV1> = NonNullable<S["~standard"]["types"]>["input"]

  /**
   * What the validator produces.
   *
   * @since 0.1.0
   * @category models
   */
  export type InferOutput<S extends StandardSchemaV1> = NonNullable<S["~standard"]["types"]>["output"]
}

/**
 * Whether `u` is a Standard Schema v1 validator. Functions count: an
 * arktype type is a callable object.
 *
 * @since 0.1.0
 * @category guards
 */
export const isStandardSchema = (u: unknown): u is StandardSchemaV1 => {
  if ((typeof u !== "object" || u === null) && typeof u !== "function") return false
  const props = (u as { readonly "~standard"?: unknown })["~standard"]
  return typeof props === "object" && props !== null &&
    typeof (props as { readonly validate?: unknown }).validate === "function"
}
