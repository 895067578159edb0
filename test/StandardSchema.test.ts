/// <reference types="vite/client" />
/**
 * The Standard Schema adapter on its own: the guard, the codecs behind
 * `decodePayload`/`encodePayload`, definition-time errors, and the promise
 * that the package never depends on a validator library.
 */
import { type } from "arktype"
import * as Schema from "effect/Schema"
import * as v from "valibot"
import { describe, expect, it } from "vitest"
import { z } from "zod"
import packageJson from "../package.json"
import { message, rpc } from "../src/index"
import { decodePayload, encodePayload } from "../src/Message"
import type { FieldsSchema } from "../src/Message"
import { isStandardSchema } from "../src/StandardSchema"

describe("isStandardSchema", () => {
  it("recognizes zod, valibot and arktype (a callable), and nothing else", () => {
    expect(isStandardSchema(z.string())).toBe(true)
    expect(isStandardSchema(v.string())).toBe(true)
    expect(isStandardSchema(type("string"))).toBe(true)
    expect(typeof type("string")).toBe("function")
    for (const other of [Schema.String, {}, null, undefined, "x", () => {}, { "~standard": {} }, { "~standard": null }]) {
      expect(isStandardSchema(other)).toBe(false)
    }
  })
})

describe("payload codecs", () => {
  it("answers synchronously for synchronous validators: no Promise per message", () => {
    for (const m of [message("A", { n: z.number() }), message("B", v.object({ n: v.number() })), message("C", { n: type("number") })]) {
      const decoded = decodePayload(m, { n: 1 })
      expect(decoded).not.toBeInstanceOf(Promise)
      expect(decoded).toEqual({ ok: true, value: { n: 1 } })
      expect(encodePayload(m, { n: 1 })).toEqual({ ok: true, value: { n: 1 } })
    }
  })

  it("answers with a Promise only for an asynchronous validator", async () => {
    const m = message("ASYNC", { n: z.number().refine(async (n) => n > 0, "must be positive") })
    const good = decodePayload(m, { n: 1 })
    expect(good).toBeInstanceOf(Promise)
    expect(await good).toEqual({ ok: true, value: { n: 1 } })
    const bad = await decodePayload(m, { n: -1 })
    expect(bad.ok).toBe(false)
    expect(!bad.ok && bad.error.issues).toEqual([{ path: ["n"], message: "must be positive" }])
    // A wrong type is found before the async refinement runs: still a plain result.
    expect(decodePayload(m, { n: "x" })).not.toBeInstanceOf(Promise)
  })

  it("turns valibot's path segments into plain keys", () => {
    const m = message("V", v.object({ list: v.array(v.object({ id: v.number() })) }))
    const result = decodePayload(m, { list: [{ id: 1 }, { id: "2" }] })
    expect(result).toMatchObject({ ok: false, error: { _tag: "ValidationError", issues: [{ path: ["list", 1, "id"] }] } })
  })

  it("outbound, a Standard Schema validates and yields its output; Effect Schema encodes", () => {
    const m = message("OUT", { n: z.number().default(3), at: Schema.DateFromMillis })
    expect(encodePayload(m, { at: new Date(10) })).toEqual({ ok: true, value: { n: 3, at: 10 } })
    expect(decodePayload(m, { at: 10 })).toEqual({ ok: true, value: { n: 3, at: new Date(10) } })
    expect(encodePayload(m, { n: "x", at: new Date(10) })).toMatchObject({ ok: false, error: { issues: [{ path: ["n"] }] } })
  })

  it("a record with a Standard field is itself a Standard Schema", async () => {
    const m = message("MIXED", { name: z.string(), age: Schema.Number })
    const schema: FieldsSchema = m.schema
    expect(isStandardSchema(schema)).toBe(true)
    expect(schema["~standard"].vendor).toBe("durable-ws")
    expect(schema.fields).toHaveProperty("name")
    expect(await schema["~standard"].validate({ name: "Ada", age: 36 })).toEqual({ value: { name: "Ada", age: 36 } })
    expect(await schema["~standard"].validate({ name: 1, age: 36 })).toEqual({
      issues: [{ path: ["name"], message: expect.any(String) }]
    })
    // Effect fields only: a plain Schema.Struct, exactly as before.
    expect(Schema.isSchema(message("EFFECT", { age: Schema.Number }).schema)).toBe(true)
  })

  it("refuses, at definition time, a field that is no schema at all", () => {
    expect(() => message("BAD", { name: "string" } as never)).toThrow(/field "name" of "BAD" is neither an Effect Schema nor a Standard Schema/)
    expect(() => rpc("REQ", { id: z.string() }, "RES", { n: 3 } as never)).toThrow(/field "n" of "RES"/)
    expect(() => message("BAD", 42 as never)).toThrow(TypeError)
  })
})

describe("packaging", () => {
  const sources = import.meta.glob("../src/**/*.ts", { query: "?raw", import: "default", eager: true }) as Record<string, string>

  // Issue 19: durable-ws/zod and durable-ws/valibot (WS-Kit's shapes) use their library, as an optional peer.
  const subpaths: Readonly<Record<string, string>> = { zod: "../src/Zod.ts", valibot: "../src/Valibot.ts" }
  const pkg = packageJson as {
    dependencies?: Record<string, string>
    peerDependencies?: Record<string, string>
    peerDependenciesMeta?: Record<string, { optional?: boolean }>
    optionalDependencies?: Record<string, string>
    devDependencies?: Record<string, string>
  }

  it("depends on no validator library: zod and valibot are optional peers of their own subpaths, arktype only a devDependency", () => {
    const { dependencies = {}, peerDependencies = {}, peerDependenciesMeta = {}, optionalDependencies = {}, devDependencies = {} } = pkg
    for (const name of ["zod", "valibot", "arktype", "@standard-schema/spec"]) {
      expect(Object.keys({ ...dependencies, ...optionalDependencies })).not.toContain(name)
    }
    expect(Object.keys(peerDependencies)).not.toContain("arktype")
    for (const name of ["zod", "valibot"]) {
      expect(peerDependencies[name], name).toBeDefined()
      expect(peerDependenciesMeta[name]?.optional, name).toBe(true)
    }
    expect(Object.keys(devDependencies)).toEqual(expect.arrayContaining(["zod", "valibot", "arktype"]))
  })

  it("imports a validator library only in its own subpath module (durable-ws/zod, durable-ws/valibot)", () => {
    expect(Object.keys(sources).length).toBeGreaterThan(10)
    const imports = /(?:from|import)\s*\(?\s*["']([^"']+)["']/g
    for (const [file, text] of Object.entries(sources)) {
      for (const [, specifier] of text.matchAll(imports)) {
        const allowed = Object.entries(subpaths).find(([, own]) => own === file)?.[0]
        if (allowed !== undefined && specifier === allowed) continue
        expect(specifier, file).not.toMatch(/^(zod|valibot|arktype|@ark\/|@standard-schema\/)/)
      }
    }
    // Nothing else in src imports those two modules, so the root and every other subpath stay free of them.
    for (const [file, text] of Object.entries(sources)) {
      expect(text, file).not.toMatch(/from\s*["']\.\.?\/(?:\w+\/)*(Zod|Valibot)["']/)
    }
  })
})
