/**
 * Payload codecs: one interface over Effect Schema, Standard Schema
 * validators, and records of fields mixing both, shared by the server
 * and the client, so neither ever asks which kind a message was defined with.
 *
 * Effect Schema decodes and encodes synchronously, as before. A Standard
 * Schema has no encoder: both directions run its `validate`, and its
 * output is what goes on the wire, so a transforming Standard Schema works
 * inbound only. `validate` may return a Promise; the codec then does too,
 * and only then: a synchronous validator never costs a Promise.
 */
import * as Exit from "effect/Exit"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"
import * as SchemaParser from "effect/SchemaParser"
import type { Issue } from "../Errors"
import type { StandardSchemaV1 } from "../StandardSchema"
import { isStandardSchema } from "../StandardSchema"
import { plainStruct } from "./plainStruct"

export type Outcome =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly issues: ReadonlyArray<Issue> }

/** A Promise only when a validator on the way answered with one. */
export type Validated = Outcome | Promise<Outcome>

export interface PayloadCodec {
  readonly decode: (input: unknown) => Validated
  /** `decode` for a value nobody else holds, just made by `JSON.parse`: it may come back as it is. */
  readonly decodeParsed: (input: unknown) => Validated
  readonly encode: (input: unknown) => Validated
}

/** A schema or a field: Effect Schema or Standard Schema v1. */
export type AnySchema = Schema.Top | StandardSchemaV1

/** Whether a validation result is still on its way. */
// Results are plain objects or native Promises (a thenable from a validator is wrapped in one): an
// `instanceof` and one property read decide, without the general predicate's checks on the hot path.
export const isPending = <A>(result: A | Promise<A>): result is Promise<A> =>
  result instanceof Promise ||
  (typeof result === "object" && result !== null && typeof (result as { then?: unknown }).then === "function")

const segmentKey = (segment: PropertyKey | StandardSchemaV1.PathSegment): PropertyKey =>
  typeof segment === "object" ? segment.key : segment

// `Array.from`, not `.map`: validators hand out Array subclasses (arktype's paths and issue lists)
// whose `map` builds another instance of the subclass, and an empty one comes back as `[0]`.
const fromStandardIssues = (issues: ReadonlyArray<StandardSchemaV1.Issue>): ReadonlyArray<Issue> =>
  Array.from(issues, (issue) => ({
    path: issue.path === undefined ? [] : Array.from(issue.path, segmentKey),
    message: issue.message
  }))

const formatEffectIssue = SchemaIssue.makeFormatterStandardSchemaV1()

const effectFailure = (exit: Exit.Exit<unknown, SchemaIssue.Issue>): Outcome => {
  const issue = Exit.findErrorOption(exit)
  return { ok: false, issues: issue._tag === "Some" ? fromStandardIssues(formatEffectIssue(issue.value).issues) : [] }
}

const effectRunner = (run: (input: unknown) => Exit.Exit<unknown, SchemaIssue.Issue>) => (input: unknown): Outcome => {
  const exit = run(input)
  return Exit.isSuccess(exit) ? { ok: true, value: exit.value } : effectFailure(exit)
}

interface SyncCodec extends PayloadCodec {
  readonly decode: (input: unknown) => Outcome
  readonly decodeParsed: (input: unknown) => Outcome
  readonly encode: (input: unknown) => Outcome
}

const effectCodec = (schema: Schema.Top): SyncCodec => {
  const codec = schema as Schema.Codec<unknown, unknown, never, never>
  const decode = effectRunner(SchemaParser.decodeUnknownExit(codec))
  const encode = effectRunner(SchemaParser.encodeUnknownExit(codec))
  const fast = plainStruct(schema.ast)
  if (fast === undefined) return { decode, decodeParsed: decode, encode }
  const withFastPath = (general: (input: unknown) => Outcome, parsed: boolean) => (input: unknown): Outcome => {
    const value = fast(input, parsed)
    return value === undefined ? general(input) : { ok: true, value }
  }
  return { decode: withFastPath(decode, false), decodeParsed: withFastPath(decode, true), encode: withFastPath(encode, false) }
}

const fromResult = (result: StandardSchemaV1.Result<unknown>): Outcome =>
  result.issues === undefined ? { ok: true, value: result.value } : { ok: false, issues: fromStandardIssues(result.issues) }

const standardRunner = (schema: StandardSchemaV1) => {
  const props = schema["~standard"]
  return (input: unknown): Validated => {
    const result = props.validate(input)
    return Predicate.isPromiseLike(result) ? Promise.resolve(result).then(fromResult) : fromResult(result)
  }
}

const standardCodec = (schema: StandardSchemaV1): PayloadCodec => {
  const validate = standardRunner(schema)
  return { decode: validate, decodeParsed: validate, encode: validate }
}

const isRecord = (u: unknown): u is Readonly<Record<string, unknown>> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

// A field named `__proto__` is data, never a prototype.
const setField = (target: Record<string, unknown>, key: string, value: unknown): void => {
  if (key === "__proto__") Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
  else target[key] = value
}

const noEffectFields: Outcome = { ok: true, value: {} }

interface StandardField {
  readonly key: string
  readonly validate: (input: unknown) => Validated
}

/**
 * A record whose fields mix Effect Schema and Standard Schema. The Effect
 * fields are decoded (or encoded) together as one `Schema.Struct`, which
 * keeps their optional keys and defaults; each Standard field validates its
 * own value and its issues get the field's key in front. Unknown keys are
 * dropped, as `Schema.Struct` and `z.object` do.
 */
export const fieldsCodec = (fields: Readonly<Record<string, AnySchema>>): PayloadCodec => {
  const keys = Object.keys(fields)
  const effectFields: Record<string, Schema.Top> = {}
  const standard: Array<StandardField> = []
  for (const key of keys) {
    const field = fields[key]!
    if (Schema.isSchema(field)) effectFields[key] = field
    else standard.push({ key, validate: standardRunner(field) })
  }
  const effect = Object.keys(effectFields).length === 0 ? undefined : effectCodec(Schema.Struct(effectFields))

  const combine = (input: Readonly<Record<string, unknown>>, base: Outcome, results: ReadonlyArray<Outcome>): Outcome => {
    let issues: Array<Issue> | undefined = base.ok ? undefined : [...base.issues]
    for (let i = 0; i < results.length; i++) {
      const result = results[i]!
      if (!result.ok) (issues ??= []).push(...result.issues.map((issue) => ({ ...issue, path: [standard[i]!.key, ...issue.path] })))
    }
    if (issues !== undefined) return { ok: false, issues }
    const decoded = base.ok ? base.value as Readonly<Record<string, unknown>> : {}
    const value: Record<string, unknown> = {}
    let next = 0
    for (const key of keys) {
      const field = standard[next]
      if (field !== undefined && field.key === key) {
        const result = results[next++] as Extract<Outcome, { ok: true }>
        // An absent optional field stays absent rather than becoming `key: undefined`.
        if (result.value !== undefined || Object.hasOwn(input, key)) setField(value, key, result.value)
      } else if (Object.hasOwn(decoded, key)) {
        setField(value, key, decoded[key])
      }
    }
    return { ok: true, value }
  }

  const run = (direction: "decode" | "encode") => (input: unknown): Validated => {
    if (!isRecord(input)) return { ok: false, issues: [{ path: [], message: "Expected an object" }] }
    const base: Outcome = effect === undefined ? noEffectFields : effect[direction](input)
    const results: Array<Validated> = []
    let pending = false
    for (const field of standard) {
      const result = field.validate(Object.hasOwn(input, field.key) ? input[field.key] : undefined)
      if (isPending(result)) pending = true
      results.push(result)
    }
    return pending
      ? Promise.all(results).then((settled) => combine(input, base, settled))
      : combine(input, base, results as ReadonlyArray<Outcome>)
  }
  const decode = run("decode")
  return { decode, decodeParsed: decode, encode: run("encode") }
}

/** The codec of a whole-payload schema. */
export const schemaCodec = (schema: AnySchema): PayloadCodec =>
  Schema.isSchema(schema) ? effectCodec(schema) : standardCodec(schema)

/** Whether every field is an Effect Schema (such a record is simply a `Schema.Struct`). */
export const allEffectFields = (fields: Readonly<Record<string, unknown>>): fields is Schema.Struct.Fields => {
  for (const key of Object.keys(fields)) if (!Schema.isSchema(fields[key])) return false
  return true
}

/** Whether a value given as a payload is a schema (as opposed to a record of fields). */
export const isAnySchema = (u: unknown): u is AnySchema => Schema.isSchema(u) || isStandardSchema(u)

/** The first value in a record of fields that is neither kind of schema, if any. */
export const invalidField = (fields: Readonly<Record<string, unknown>>): string | undefined => {
  for (const key of Object.keys(fields)) if (!isAnySchema(fields[key])) return key
  return undefined
}
