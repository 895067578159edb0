/**
 * The shape of src/, checked from the files themselves:
 * - public modules (src/*.ts) are the vocabulary: none re-exports from
 *   internal/, and no public declaration (the emitted .d.ts) names anything
 *   defined in internal/;
 * - the wire protocol's strings are spelled only in src/Protocol.ts;
 * - the engine's two wings, internal/server and internal/client, never
 *   import each other;
 * - no value import cycles (a type-only import back into the public module
 *   whose types an engine file implements is fine).
 * Each rule is also run on a planted violation, so a rule that can no
 * longer fail is noticed.
 */
import { execFileSync } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, relative, resolve } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const root = resolve(import.meta.dirname, "../..")
const src = join(root, "src")

/** A source tree as paths relative to src/ (without `.ts`) mapped to their text. */
type Tree = ReadonlyMap<string, string>

const readTree = (dir: string, ext: string): Map<string, string> => {
  const tree = new Map<string, string>()
  const walk = (at: string) => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const full = join(at, entry.name)
      if (entry.isDirectory()) walk(full)
      else if (entry.name.endsWith(ext)) tree.set(relative(dir, full).slice(0, -ext.length), readFileSync(full, "utf8"))
    }
  }
  walk(dir)
  return tree
}

const isPublic = (file: string): boolean => !file.includes("/")
const wingOf = (file: string): string | undefined => /^internal\/(server|client)\//.exec(file)?.[1]

interface Import {
  readonly target: string
  readonly typeOnly: boolean
  readonly reexport: boolean
}

const withoutComments = (text: string): string => text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1")

const importsOf = (file: string, text: string): Array<Import> =>
  [...withoutComments(text).matchAll(/^(import|export)\s+(type\s+)?([^;]*?)\s*from\s+"(\.[^"]+)"/gm)].map((m) => {
    const names = m[3]!
    // `import { type A, type B }` is type-only as well.
    const inlineTypes = /^\{[^}]*\}$/.test(names) && names.slice(1, -1).split(",").every((n) => /^\s*type\s/.test(n) || n.trim() === "")
    return {
      target: join(dirname(file), m[4]!).replace(/\.ts$/, ""),
      typeOnly: m[2] !== undefined || inlineTypes,
      reexport: m[1] === "export"
    }
  })

// -- the rules --------------------------------------------------------------

const reexportsFromInternal = (tree: Tree): Array<string> =>
  [...tree].flatMap(([file, text]) =>
    isPublic(file) ? importsOf(file, text).filter((i) => i.reexport && i.target.startsWith("internal/")).map(() => file) : []
  )

/** Declarations of public modules that reach into internal/ (a name the user could not import). */
const declarationsNamingInternals = (declarations: Tree): Array<string> =>
  [...declarations].filter(([file, text]) => isPublic(file) && /["']\.\/internal\//.test(text)).map(([file]) => file)

const wireStrings = ["$session", "$resumed", "$progress", "__heartbeat", "dws_resume", "RPC_ERROR", "ERROR", "UNKNOWN_SESSION"]

const wireStringsOutsideProtocol = (tree: Tree): Array<string> =>
  [...tree].flatMap(([file, text]) => {
    if (file === "Protocol") return []
    const code = withoutComments(text)
    return wireStrings.filter((wire) => new RegExp(`["'\`]${wire.replace(/\$/g, "\\$")}["'\`]`).test(code) || (wire.startsWith("$") || wire.startsWith("_") || wire === "dws_resume") && code.includes(wire))
      .map((wire) => `${file}: ${wire}`)
  })

const crossWingImports = (tree: Tree): Array<string> =>
  [...tree].flatMap(([file, text]) => {
    const wing = wingOf(file)
    if (wing === undefined) return []
    return importsOf(file, text).filter((i) => {
      const other = wingOf(i.target)
      return other !== undefined && other !== wing
    }).map((i) => `${file} -> ${i.target}`)
  })

const findCycle = (graph: ReadonlyMap<string, ReadonlyArray<string>>): Array<string> | undefined => {
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

const valueCycle = (tree: Tree): Array<string> | undefined =>
  findCycle(new Map([...tree].map(([file, text]) => [file, importsOf(file, text).filter((i) => !i.typeOnly).map((i) => i.target)])))

// -- the tree as it is ----------------------------------------------------------

describe("src/", () => {
  const tree = readTree(src, ".ts")
  let declarations: Map<string, string>
  let out: string

  beforeAll(() => {
    out = mkdtempSync(join(tmpdir(), "durable-ws-dts-"))
    execFileSync(join(root, "node_modules/.bin/tsc"), ["-p", "tsconfig.build.json", "--outDir", out, "--declarationMap", "false"], {
      cwd: root,
      stdio: "pipe"
    })
    declarations = readTree(out, ".d.ts")
  }, 120_000)
  afterAll(() => rmSync(out, { recursive: true, force: true }))

  it("resolves every relative import to a file of src/", () => {
    for (const [file, text] of tree) {
      for (const { target } of importsOf(file, text)) expect(tree.has(target), `${file} imports ${target}`).toBe(true)
    }
  })

  it("has public modules that re-export nothing from internal/", () => {
    expect(reexportsFromInternal(tree)).toEqual([])
  })

  it("has public declarations that name nothing defined in internal/", () => {
    expect(declarations.size).toBeGreaterThan(10)
    expect(declarationsNamingInternals(declarations)).toEqual([])
  })

  it("spells the wire protocol's strings only in Protocol.ts", () => {
    expect(tree.has("Protocol")).toBe(true)
    expect(wireStringsOutsideProtocol(tree)).toEqual([])
  })

  it("keeps the server and client wings apart", () => {
    expect([...tree.keys()].filter((file) => wingOf(file) === "server").length).toBeGreaterThan(5)
    expect([...tree.keys()].filter((file) => wingOf(file) === "client").length).toBeGreaterThan(1)
    expect(crossWingImports(tree)).toEqual([])
  })

  it("has no value import cycles", () => {
    expect(valueCycle(tree)).toBeUndefined()
  })
})

// -- each rule fails on a planted violation ----------------------------------------

describe("the structure rules", () => {
  it("catch a public module re-exporting from internal/", () => {
    expect(reexportsFromInternal(new Map([["Thing", `export { helper } from "./internal/server/helper"`]]))).toEqual(["Thing"])
    expect(reexportsFromInternal(new Map([["Thing", `import { helper } from "./internal/server/helper"`]]))).toEqual([])
  })

  it("catch a public declaration that names an engine type", () => {
    const planted = new Map([["PubSub", `import type { LiveConnection } from "./internal/server/connection";`]])
    expect(declarationsNamingInternals(planted)).toEqual(["PubSub"])
    expect(declarationsNamingInternals(new Map([["internal/server/x", `import type { A } from "./internal/y";`]]))).toEqual([])
  })

  it("catch a wire string spelled outside Protocol.ts, but not in a comment", () => {
    expect(wireStringsOutsideProtocol(new Map([["Client", `if (type === "$resumed") return`]]))).toEqual(["Client: $resumed"])
    expect(wireStringsOutsideProtocol(new Map([["internal/server/x", `const t = "RPC_ERROR"`]]))).toEqual(["internal/server/x: RPC_ERROR"])
    expect(wireStringsOutsideProtocol(new Map([["Client", `/** answered with an RPC_ERROR */\nconst a = 1`]]))).toEqual([])
    expect(wireStringsOutsideProtocol(new Map([["Protocol", `const t = "$session"`]]))).toEqual([])
  })

  it("catch a wing importing the other", () => {
    const planted = new Map([["internal/client/transport", `import { x } from "../server/dispatch"`]])
    expect(crossWingImports(planted)).toEqual(["internal/client/transport -> internal/server/dispatch"])
  })

  it("catch a value cycle but allow a type-only import back", () => {
    const cycle = new Map([
      ["PubSub", `import { pubsub } from "./internal/server/pubsub"`],
      ["internal/server/pubsub", `import { PubSub } from "../../PubSub"`]
    ])
    expect(valueCycle(cycle)).toEqual(["PubSub", "internal/server/pubsub", "PubSub"])
    const typeOnly = new Map([
      ["PubSub", `import { pubsub } from "./internal/server/pubsub"`],
      ["internal/server/pubsub", `import type { PubSub } from "../../PubSub"\nimport { type X } from "../../PubSub"`]
    ])
    expect(valueCycle(typeOnly)).toBeUndefined()
  })
})
