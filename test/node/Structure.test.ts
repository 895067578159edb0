/**
 * The shape of src/: no import cycles among its files (type-only imports
 * included, except an engine file's type-only import of the public module
 * whose types it implements), and nothing marked `@internal` in a public
 * module — the machinery lives under src/internal/.
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
  const engine = dirname(file) !== src
  return [...text.matchAll(/(import type|import|export)\s[^;]*?from\s+"(\.[^"]+)"/g)].flatMap((m) => {
    const resolved = resolve(dirname(file), m[2]!)
    const target = resolved.endsWith(".ts") ? resolved : `${resolved}.ts`
    // An engine file may name the types of the public module it implements (Effect's internal/schedule.ts does).
    return engine && m[1] === "import type" && dirname(target) === src ? [] : [target]
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
