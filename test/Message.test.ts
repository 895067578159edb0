import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import * as SchemaParser from "effect/SchemaParser"
import { describe, expect, it } from "vitest"
import { plainStruct } from "../src/internal/plainStruct"
import { message, rpc } from "../src/index"
import * as Message from "../src/Message"
import * as Protocol from "../src/Protocol"
import { decodePayload } from "../src/Message"

const encoder = new TextEncoder()

describe("message definitions", () => {
  it("refuses empty and reserved types at definition time", () => {
    expect(() => message("")).toThrow(TypeError)
    expect(() => message("$ping")).toThrow(/reserved/)
    expect(() => message("__ping")).toThrow(/reserved/)
    expect(() => rpc("GET", {}, "__RES", {})).toThrow(/reserved/)
  })

  it("accepts fields, a schema, or no payload", () => {
    expect(Message.decodePayload(message("A", { n: Schema.Number }), { n: 1 })).toEqual({ ok: true, value: { n: 1 } })
    expect(Message.decodePayload(message("B", Schema.Array(Schema.String)), ["x"])).toEqual({ ok: true, value: ["x"] })
    expect(Message.decodePayload(message("C"), undefined)).toEqual({ ok: true, value: undefined })
    expect(Message.decodePayload(message("D"), { unexpected: true })).toMatchObject({ ok: false })
  })
})

describe("utf8Length", () => {
  it.each([
    ["", 0],
    ["abc", 3],
    ["é", 2],
    ["€", 3],
    ["😀", 4],
    ["a😀€é", 10],
    ["\ud800", 3]
  ])("counts %j as %d bytes", (text, bytes) => {
    expect(Protocol.utf8Length(text)).toBe(bytes)
    if (!text.includes("\ud800")) expect(encoder.encode(text).byteLength).toBe(bytes)
  })
})

describe("decodeEnvelope", () => {
  it("decodes text and binary frames", () => {
    const text = JSON.stringify({ type: "PING", meta: { correlationId: "c" }, payload: { a: 1 } })
    const expected = { type: "PING", meta: { correlationId: "c" }, payload: { a: 1 }, correlationId: "c" }
    expect(Protocol.decodeEnvelope(text, 1024)).toEqual(expected)
    expect(Protocol.decodeEnvelope(encoder.encode(text).buffer as ArrayBuffer, 1024)).toEqual(expected)
  })

  it("checks the byte size before parsing, on the exact boundary", () => {
    const frame = JSON.stringify({ type: "T", payload: "€€" })
    const bytes = encoder.encode(frame).byteLength
    expect(Protocol.isInvalidFrame(Protocol.decodeEnvelope(frame, bytes))).toBe(false)
    const over = Protocol.decodeEnvelope(frame, bytes - 1)
    expect(Protocol.isInvalidFrame(over) && over.error._tag).toBe("PayloadTooLarge")
  })

  it("refuses invalid UTF-8 in binary frames", () => {
    const result = Protocol.decodeEnvelope(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]).buffer as ArrayBuffer, 1024)
    expect(Protocol.isInvalidFrame(result) && result.error.message).toMatch(/UTF-8/)
  })

  it("keeps the correlationId of a frame whose type is missing", () => {
    const result = Protocol.decodeEnvelope(JSON.stringify({ meta: { correlationId: "k" } }), 1024)
    expect(Protocol.isInvalidFrame(result) && result.correlationId).toBe("k")
  })

  it("refuses a correlationId that is not a string", () => {
    const result = Protocol.decodeEnvelope(JSON.stringify({ type: "T", meta: { correlationId: 5 } }), 1024)
    expect(Protocol.isInvalidFrame(result)).toBe(true)
  })
})

describe("outbound frames", () => {
  it("omits absent payload and meta", () => {
    expect(Protocol.encodeFrame("T", undefined)).toBe("{\"type\":\"T\"}")
    expect(Protocol.encodeFrame("T", 1, { a: 1 })).toBe("{\"type\":\"T\",\"meta\":{\"a\":1},\"payload\":1}")
  })

  it("uses RPC_ERROR only when there is a correlationId", () => {
    const error = { code: "NOT_FOUND", message: "m" } as const
    expect(JSON.parse(Protocol.encodeErrorFrame(error, undefined))).toEqual({ type: "ERROR", meta: {}, payload: error })
    expect(JSON.parse(Protocol.encodeErrorFrame(error, "x"))).toEqual({
      type: "RPC_ERROR",
      meta: { correlationId: "x" },
      payload: error
    })
  })
})

describe("the fast path for structs of plain fields", () => {
  const Plain = Schema.Struct({ n: Schema.Number, text: Schema.String, flag: Schema.Boolean })
  const fast = plainStruct(Plain.ast)!
  const parse = SchemaParser.decodeUnknownExit(Plain)

  it("applies only to required string, number and boolean fields without checks or transformations", () => {
    expect(fast).toBeTypeOf("function")
    for (const schema of [
      Schema.Struct({ n: Schema.NumberFromString }),
      Schema.Struct({ n: Schema.optional(Schema.Number) }),
      Schema.Struct({ n: Schema.Number.check(Schema.isInt()) }),
      Schema.Struct({ d: Schema.DateFromMillis }),
      Schema.Struct({ nested: Schema.Struct({ n: Schema.Number }) }),
      Schema.Record(Schema.String, Schema.Number),
      Schema.String
    ]) {
      expect(plainStruct(schema.ast)).toBeUndefined()
    }
  })

  it("accepts only what the parser accepts, with the same output", () => {
    const inherited = Object.create({ n: 1 }) as Record<string, unknown>
    inherited["text"] = "t"
    inherited["flag"] = true
    const inputs: Array<unknown> = [
      { n: 1, text: "a", flag: false },
      { n: 1, text: "a", flag: false, extra: "dropped" },
      { text: "a", n: 2.5, flag: true },
      { n: "1", text: "a", flag: false },
      { n: 1, text: "a" },
      { n: 1, text: null, flag: true },
      JSON.parse("{\"n\":1,\"text\":\"a\",\"flag\":true,\"__proto__\":{\"polluted\":true}}"),
      inherited,
      [1, "a", true],
      null,
      "text",
      undefined
    ]
    for (const input of inputs) {
      const exit = parse(input)
      for (const parsed of [false, true]) {
        const quick = fast(input, parsed)
        if (quick !== undefined) {
          expect(Exit.isSuccess(exit)).toBe(true)
          // The same keys in the same order as the parser's output, and nothing else.
          expect(Object.keys(quick)).toEqual(Object.keys((exit as Exit.Success<object>).value))
          expect(quick).toStrictEqual((exit as Exit.Success<unknown>).value)
        }
      }
    }
    // It does take the common case, and leaves the rest to the parser.
    expect(fast({ n: 1, text: "a", flag: false, extra: 1 }, false)).toEqual({ n: 1, text: "a", flag: false })
    expect(fast({ n: "1", text: "a", flag: false }, false)).toBeUndefined()
    expect(fast(inherited, false)).toBeUndefined()
    expect(fast(inherited, true)).toBeUndefined()
  })

  it("returns a parsed payload that is exactly the output as it is, and copies any other", () => {
    const exact = JSON.parse("{\"n\":1,\"text\":\"a\",\"flag\":true}") as object
    expect(fast(exact, true)).toBe(exact)
    // Not parsed just now (the caller's own object): always a copy.
    expect(fast(exact, false)).not.toBe(exact)
    expect(fast(exact, false)).toEqual(exact)
    for (
      const text of [
        "{\"n\":1,\"text\":\"a\",\"flag\":true,\"extra\":1}",
        "{\"text\":\"a\",\"n\":1,\"flag\":true}",
        "{\"n\":1,\"text\":\"a\",\"flag\":true,\"__proto__\":{\"polluted\":true}}"
      ]
    ) {
      const input = JSON.parse(text) as object
      const quick = fast(input, true)
      expect(quick).not.toBe(input)
      expect(quick).toStrictEqual({ n: 1, text: "a", flag: true })
    }
    expect(fast(JSON.parse("{\"n\":1,\"text\":2,\"flag\":true}"), true)).toBeUndefined()
    expect(fast(JSON.parse("{\"n\":1,\"text\":\"a\"}"), true)).toBeUndefined()
  })

  it("keeps the parser's issues for what it refuses", () => {
    const m = message("FAST", { n: Schema.Number, text: Schema.String })
    expect(decodePayload(m, { n: "x", text: "t" })).toMatchObject({
      ok: false,
      error: { issues: [{ path: ["n"], message: expect.any(String) }] }
    })
  })
})

describe("frames built from a payload's JSON text", () => {
  it("are the very string encodeFrame builds from the payload", () => {
    const payloads: ReadonlyArray<unknown> = [undefined, null, 0, "x\"y", { n: 1, s: "é\u2028" }, [1, { a: [] }]]
    const metas: ReadonlyArray<Record<string, unknown> | undefined> = [undefined, {}, { topic: "t", seq: 3, nested: { a: 1 } }]
    for (const type of ["NEWS", "we\"ird"]) {
      for (const payload of payloads) {
        for (const meta of metas) {
          const json = payload === undefined ? undefined : JSON.stringify(payload)
          expect(Protocol.encodeFrameWithJson(type, json, meta)).toBe(Protocol.encodeFrame(type, payload, meta))
        }
      }
    }
  })

  it("stamped frames are the very string encodeFrame builds from their meta", () => {
    const payloads: ReadonlyArray<unknown> = [undefined, null, 0, "x\"y", { n: 1, s: "é\u2028" }, [1, { a: [] }], () => 1, {
      toJSON: () => ({ replaced: true })
    }]
    for (const type of ["NEWS", "we\"ird"]) {
      for (const payload of payloads) {
        for (const correlationId of [undefined, "c-1", "quo\"te\\"]) {
          for (const timestamp of [0, 1_765_000_000_123]) {
            const meta = correlationId === undefined ? { timestamp } : { timestamp, correlationId }
            expect(Protocol.encodeStampedFrame(type, payload, timestamp, correlationId)).toBe(Protocol.encodeFrame(type, payload, meta))
          }
        }
      }
    }
  })

  it("join into a $batch frame that parses to the frames in order", () => {
    const frames = [Protocol.encodeFrame("A", { n: 1 }), Protocol.encodeFrame("B", undefined, { seq: 2 })]
    const batch = Protocol.decodeServerFrame(Protocol.encodeBatchFrame(frames))
    expect(batch).toMatchObject({ type: Protocol.ReservedTypes.batch })
    expect(Protocol.batchedFrames((batch as Protocol.ServerFrame).payload)).toEqual([
      { type: "A", meta: {}, payload: { n: 1 } },
      { type: "B", meta: { seq: 2 }, payload: undefined }
    ])
  })
})
