import type * as SchemaAST from "effect/SchemaAST"

type Primitive = "string" | "number" | "boolean"

const primitives: Readonly<Record<string, Primitive>> = { String: "string", Number: "number", Boolean: "boolean" }

const plain = (ast: SchemaAST.AST): boolean =>
  ast.checks === undefined && ast.encoding === undefined && ast.context === undefined

/**
 * A struct of required string, number and boolean fields, with no checks
 * and no transformations, is the most common payload, and checking it with
 * `typeof` is several times cheaper than the general parser. This returns
 * such a check for a schema of that shape, else undefined. It only ever
 * accepts what the parser accepts, with the same output (the declared keys,
 * in order); whatever it does not accept goes to the parser, which then
 * decides and reports the issues.
 *
 * Given `parsed`, the input is a value nobody else holds (an object just
 * made by `JSON.parse`): when its own keys are exactly the declared ones,
 * in order, it already is that output, and is returned as it is instead of
 * being copied.
 */
export const plainStruct = (
  ast: SchemaAST.AST
): ((input: unknown, parsed: boolean) => Record<string, unknown> | undefined) | undefined => {
  if (ast._tag !== "Objects" || !plain(ast) || ast.indexSignatures.length > 0) return undefined
  if ((ast as { encodingChecks?: unknown }).encodingChecks !== undefined) return undefined
  const names: Array<string> = []
  const kinds: Array<Primitive> = []
  for (const property of ast.propertySignatures) {
    const kind = primitives[property.type._tag]
    if (typeof property.name !== "string" || property.name === "__proto__" || kind === undefined || !plain(property.type)) {
      return undefined
    }
    names.push(property.name)
    kinds.push(kind)
  }
  const count = names.length
  const copy = (input: object): Record<string, unknown> | undefined => {
    const output: Record<string, unknown> = {}
    for (let i = 0; i < count; i++) {
      const name = names[i]!
      if (!Object.hasOwn(input, name)) return undefined
      const value = (input as Record<string, unknown>)[name]
      if (typeof value !== kinds[i]) return undefined
      output[name] = value
    }
    return output
  }
  // `for…in` lists inherited enumerable keys too; such a key, like an extra or reordered one,
  // differs from the declared list and sends the input to `copy`.
  const exact = (input: object): Record<string, unknown> | undefined => {
    let i = 0
    for (const key in input) {
      if (i === count || key !== names[i]) return copy(input)
      if (typeof (input as Record<string, unknown>)[key] !== kinds[i]) return undefined
      i++
    }
    return i === count ? input as Record<string, unknown> : copy(input)
  }
  return (input, parsed) => {
    if (typeof input !== "object" || input === null || Array.isArray(input)) return undefined
    return parsed ? exact(input) : copy(input)
  }
}
