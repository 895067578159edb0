import * as Schema from "effect/Schema"
import { describe, expect, it } from "vitest"
import { message, rpc } from "../src/index"
import * as Message from "../src/Message"

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
    expect(Message.utf8Length(text)).toBe(bytes)
    if (!text.includes("\ud800")) expect(encoder.encode(text).byteLength).toBe(bytes)
  })
})

describe("decodeEnvelope", () => {
  it("decodes text and binary frames", () => {
    const text = JSON.stringify({ type: "PING", meta: { correlationId: "c" }, payload: { a: 1 } })
    const expected = { type: "PING", meta: { correlationId: "c" }, payload: { a: 1 }, correlationId: "c" }
    expect(Message.decodeEnvelope(text, 1024)).toEqual(expected)
    expect(Message.decodeEnvelope(encoder.encode(text).buffer as ArrayBuffer, 1024)).toEqual(expected)
  })

  it("checks the byte size before parsing, on the exact boundary", () => {
    const frame = JSON.stringify({ type: "T", payload: "€€" })
    const bytes = encoder.encode(frame).byteLength
    expect(Message.isInvalidFrame(Message.decodeEnvelope(frame, bytes))).toBe(false)
    const over = Message.decodeEnvelope(frame, bytes - 1)
    expect(Message.isInvalidFrame(over) && over.error._tag).toBe("PayloadTooLarge")
  })

  it("refuses invalid UTF-8 in binary frames", () => {
    const result = Message.decodeEnvelope(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]).buffer as ArrayBuffer, 1024)
    expect(Message.isInvalidFrame(result) && result.error.message).toMatch(/UTF-8/)
  })

  it("keeps the correlationId of a frame whose type is missing", () => {
    const result = Message.decodeEnvelope(JSON.stringify({ meta: { correlationId: "k" } }), 1024)
    expect(Message.isInvalidFrame(result) && result.correlationId).toBe("k")
  })

  it("refuses a correlationId that is not a string", () => {
    const result = Message.decodeEnvelope(JSON.stringify({ type: "T", meta: { correlationId: 5 } }), 1024)
    expect(Message.isInvalidFrame(result)).toBe(true)
  })
})

describe("outbound frames", () => {
  it("omits absent payload and meta", () => {
    expect(Message.encodeFrame("T", undefined)).toBe("{\"type\":\"T\"}")
    expect(Message.encodeFrame("T", 1, { a: 1 })).toBe("{\"type\":\"T\",\"meta\":{\"a\":1},\"payload\":1}")
  })

  it("uses RPC_ERROR only when there is a correlationId", () => {
    const error = { code: "NOT_FOUND", message: "m" } as const
    expect(JSON.parse(Message.encodeErrorFrame(error, undefined))).toEqual({ type: "ERROR", meta: {}, payload: error })
    expect(JSON.parse(Message.encodeErrorFrame(error, "x"))).toEqual({
      type: "RPC_ERROR",
      meta: { correlationId: "x" },
      payload: error
    })
  })
})
