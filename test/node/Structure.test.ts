/**
 * The shape of src/: no import cycles among its files (type-only imports
 * included), and nothing marked `@internal` in a public module — the
 * machinery lives under src/internal/.
 */
import { readdirSync, readFileSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"
import { describe, expect, it } from "vitest"

const src = resolve(import.meta.dirname, "../../src")

const sourceFiles = (dir: string): Array<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(join(dir, entry.name)) : entry.name.endsWith(".ts") ? [join(dir, entry.name)] : []
  )

const importsOf = (file: string): Array<string> => {
  const text = readFileSync(file, "utf8")
  const specifiers = [...text.matchAll(/(?:import|export)\s[^;]*?from\s+"(\.[^"]+)"/g)].map((m) => m[1]!)
  return specifiers.map((specifier) => {
    const target = resolve(dirname(file), specifier)
    return target.endsWith(".ts") ? target : `${target}.ts`
  })
}

const findCycle = (graph: Map<string, Array<string>>): Array<string> | undefined => {
  const state = new Map<string, "visiting" | "done">()
  const stack: Array<string> = []
  const visit = (node: string): Array<string> | undefined => {
    if (state.get(node) === "done") return undefined
    if (state.get(node) === "visiting") return [...stack.slice(stack.indexOf(node)), node]
    state.set(node, "visiting")
    stack.push(node)
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next)
      if (cycle !== undefined) return cycle
    }
    stack.pop()
    state.set(node, "done")
    return undefined
  }
  for (const node of graph.keys()) {
    const cycle = visit(node)
    if (cycle !== undefined) return cycle
  }
  return undefined
}

describe("src/", () => {
  const files = sourceFiles(src)

  it("has no import cycles, type-only imports included", () => {
    const graph = new Map(files.map((file) => [file, importsOf(file)]))
    for (const targets of graph.values()) for (const target of targets) expect(files).toContain(target)
    expect(findCycle(graph)?.map((file) => relative(src, file))).toBeUndefined()
  })

  it("finds a cycle when there is one", () => {
    expect(findCycle(new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]]]))).toEqual(["a", "b", "c", "a"])
  })

  it("exports nothing marked @internal from a public module", () => {
    const publicModules = files.filter((file) => dirname(file) === src)
    const marked = publicModules.filter((file) => readFileSync(file, "utf8").includes("@internal"))
    expect(marked.map((file) => relative(src, file))).toEqual([])
  })
})
