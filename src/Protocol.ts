/**
 * The wire protocol: what travels on the socket, in one place.
 *
 * Frames are JSON text (binary frames are UTF-8 JSON): `{"type", "meta"?,
 * "payload"?}`. Types starting with `$` or `__` belong to the protocol
 * itself — the session and resume frames of recovery, rpc progress, the
 * heartbeat — and `ERROR` / `RPC_ERROR` carry failures. The server and the
 * client both speak through this module, so every wire string is spelled
 * here and nowhere else.
 *
 * Browser-safe: it imports no runtime, so the Durable Object, the client
 * and tests all use it.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import type { CustomWireError, WireError } from "./Errors"
import { PayloadTooLarge, ValidationError } from "./Errors"

// ---------------------------------------------------------------------------
// Frame types
// ---------------------------------------------------------------------------

/**
 * The frame types the protocol reserves for itself.
 *
 * - `session`: the first frame of a connection with recovery (its session, token and log position);
 * - `resumed`: the outcome of a resume, after the replay;
 * - `progress`: rpc progress, sent to the requester before the one reply, in WS-Kit's
 *   shape (`$ws:rpc-progress`, which WS-Kit's client understands);
 * - `legacyProgress`: what durable-ws sent for progress before; clients still read it;
 * - `heartbeat` / `heartbeatAck`: the keep-alive pair;
 * - `presence`: a topic's full presence state (server → client), or a
 *   request for it (client → server); `presenceDiff`: its joins and leaves;
 * - `batch`: several published frames in one (server → client), sent only
 *   to a socket that asked for them with {@link batchParameter}.
 *
 * @since 0.1.0
 * @category constants
 */
export const ReservedTypes = {
  session: "$session",
  resumed: "$resumed",
  progress: "$ws:rpc-progress",
  legacyProgress: "$progress",
  heartbeat: "__heartbeat",
  heartbeatAck: "__heartbeat_ack",
  presence: "$presence",
  presenceDiff: "$presence_diff",
  batch: "$batch"
} as const

/**
 * The types of error frames: `ERROR` for a plain message, `RPC_ERROR` for a
 * request (it carries the request's `meta.correlationId`).
 *
 * @since 0.1.0
 * @category constants
 */
export const ErrorTypes = { error: "ERROR", rpcError: "RPC_ERROR" } as const

/**
 * The wire type of progress frames:
 * `{"type":"$ws:rpc-progress","meta":{"timestamp","correlationId"},"payload"}`.
 *
 * @since 0.1.0
 * @category constants
 */
export const progressType: typeof ReservedTypes.progress = ReservedTypes.progress

/**
 * Whether a frame type is rpc progress: today's type, or the one older
 * durable-ws servers sent (`$progress`).
 *
 * @since 0.1.0
 * @category predicates
 */
export const isProgressType = (type: string): boolean =>
  type === ReservedTypes.progress || type === ReservedTypes.legacyProgress

/**
 * Types that clients may not use: `$…` and `__…` are reserved for the
 * protocol itself (heartbeats, control frames).
 *
 * @since 0.1.0
 * @category predicates
 */
export const isReservedType = (type: string): boolean => type.startsWith("$") || type.startsWith("__")

/**
 * Whether a frame type is `ERROR` or `RPC_ERROR`.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isErrorType = (type: string): boolean => type === ErrorTypes.error || type === ErrorTypes.rpcError

/**
 * The heartbeat a client sends, and the answer it gets — answered by the
 * runtime (`setWebSocketAutoResponse`) without waking a hibernated object.
 * Byte for byte: the runtime matches the request text exactly.
 *
 * @since 0.1.0
 * @category constants
 */
export const heartbeat = {
  request: JSON.stringify({ type: ReservedTypes.heartbeat }),
  response: JSON.stringify({ type: ReservedTypes.heartbeatAck })
} as const

// ---------------------------------------------------------------------------
// Inbound frames (client → server)
// ---------------------------------------------------------------------------

/**
 * A decoded inbound frame.
 *
 * @since 0.1.0
 * @category models
 */
export interface Envelope {
  readonly type: string
  readonly meta: Readonly<Record<string, unknown>>
  readonly payload: unknown
  readonly correlationId: string | undefined
}

/**
 * A frame that could not be decoded, with the correlationId when one could
 * be read (so an RPC caller still gets its `RPC_ERROR`).
 *
 * @since 0.1.0
 * @category models
 */
export interface InvalidFrame {
  readonly error: ValidationError | PayloadTooLarge
  readonly correlationId: string | undefined
}

/**
 * The number of bytes `text` takes in UTF-8, without allocating.
 *
 * @since 0.1.0
 * @category utils
 */
export const utf8Length = (text: string): number => {
  let bytes = 0
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i)
    if (unit < 0x80) bytes += 1
    else if (unit < 0x800) bytes += 2
    else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1)
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4
        i++
      } else bytes += 3
    } else bytes += 3
  }
  return bytes
}

const textSize = (text: string, limit: number): number | undefined => {
  // Every UTF-16 unit is 1 to 3 UTF-8 bytes: the exact count is needed only in between.
  if (text.length * 3 <= limit) return undefined
  if (text.length > limit) return text.length
  const size = utf8Length(text)
  return size > limit ? size : undefined
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false })

const invalid = (message: string, correlationId?: string): InvalidFrame => ({
  error: new ValidationError({ message }),
  correlationId
})

const tooLarge = (size: number, limit: number): InvalidFrame => ({
  error: new PayloadTooLarge({ size, limit, message: `Frame of ${size} bytes exceeds the ${limit}-byte limit` }),
  correlationId: undefined
})

const isRecord = (u: unknown): u is Record<string, unknown> => Predicate.isObject(u) && !Array.isArray(u)

/**
 * Decodes a raw frame (text, or binary UTF-8 JSON) into an envelope. Size
 * is checked in bytes before anything is parsed.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeEnvelope = (frame: string | ArrayBuffer, maxBytes: number): Envelope | InvalidFrame => {
  let text: string
  if (typeof frame === "string") {
    const size = textSize(frame, maxBytes)
    if (size !== undefined) return tooLarge(size, maxBytes)
    text = frame
  } else {
    if (frame.byteLength > maxBytes) return tooLarge(frame.byteLength, maxBytes)
    try {
      text = utf8.decode(frame)
    } catch {
      return invalid("Binary frame is not valid UTF-8")
    }
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return invalid("Frame is not valid JSON")
  }
  if (!isRecord(parsed)) return invalid("Frame must be a JSON object")
  const meta = parsed["meta"]
  if (meta !== undefined && !isRecord(meta)) return invalid("meta must be an object")
  const metaRecord = meta ?? {}
  const correlationId = metaRecord["correlationId"]
  if (correlationId !== undefined && typeof correlationId !== "string") {
    return invalid("meta.correlationId must be a string")
  }
  const type = parsed["type"]
  if (typeof type !== "string" || type.length === 0) {
    return invalid("Frame must have a non-empty string type", correlationId)
  }
  return { type, meta: metaRecord, payload: parsed["payload"], correlationId }
}

/**
 * @since 0.1.0
 * @category guards
 */
export const isInvalidFrame = (u: Envelope | InvalidFrame): u is InvalidFrame => "error" in u

// ---------------------------------------------------------------------------
// Outbound frames (server → client)
// ---------------------------------------------------------------------------

/**
 * Encodes an outbound frame. `payload` must already be in its encoded form.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodeFrame = (type: string, payload: unknown, meta?: Readonly<Record<string, unknown>>): string =>
  JSON.stringify(
    payload === undefined
      ? meta === undefined ? { type } : { type, meta }
      : meta === undefined
      ? { type, payload }
      : { type, meta, payload }
  )

/**
 * {@link encodeFrame} for a payload already encoded as JSON text: the same
 * string, with `payloadJson` put in as it is.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodeFrameWithJson = (
  type: string,
  payloadJson: string | undefined,
  meta?: Readonly<Record<string, unknown>>
): string => {
  const head = meta === undefined
    ? `{"type":${JSON.stringify(type)}`
    : `{"type":${JSON.stringify(type)},"meta":${JSON.stringify(meta)}`
  return payloadJson === undefined ? `${head}}` : `${head},"payload":${payloadJson}}`
}

/**
 * {@link encodeFrame} for the meta most server frames carry, a `timestamp`
 * and an rpc answer's `correlationId`: the same text, written in place
 * instead of building the meta object and encoding it.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodeStampedFrame = (type: string, payload: unknown, timestamp: number, correlationId?: string): string => {
  const head = correlationId === undefined
    ? `{"type":${JSON.stringify(type)},"meta":{"timestamp":${timestamp}}`
    : `{"type":${JSON.stringify(type)},"meta":{"timestamp":${timestamp},"correlationId":${JSON.stringify(correlationId)}}`
  // A value JSON cannot hold (a function) leaves the key out, as it does in an object.
  const json = payload === undefined ? undefined : JSON.stringify(payload) as string | undefined
  return json === undefined ? `${head}}` : `${head},"payload":${json}}`
}

/**
 * Encodes an `ERROR` frame, or an `RPC_ERROR` frame when the request
 * carried a correlationId.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodeErrorFrame = (
  error: WireError | CustomWireError,
  correlationId: string | undefined,
  meta?: Readonly<Record<string, unknown>>
): string =>
  correlationId === undefined
    ? JSON.stringify({ type: ErrorTypes.error, meta: meta ?? {}, payload: error })
    : JSON.stringify({
      type: ErrorTypes.rpcError,
      meta: meta === undefined ? { correlationId } : { ...meta, correlationId },
      payload: error
    })

/**
 * Several published frames in one: `{"type":"$batch","payload":[frame, …]}`,
 * each element exactly the frame that would have been sent alone (with its
 * own `meta.topic` and `meta.seq` under recovery), in order. The frames are
 * joined as they are, never parsed again.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodeBatchFrame = (frames: ReadonlyArray<string>): string =>
  `{"type":"${ReservedTypes.batch}","payload":[${frames.join(",")}]}`

/**
 * The query parameter of an upgrade by which a client says it reads
 * `$batch` frames (`dws_batch=1`); a socket without it gets one frame per
 * message.
 *
 * @since 0.1.0
 * @category constants
 */
export const batchParameter = "dws_batch"

/**
 * Whether an upgrade URL asks for `$batch` frames: exactly `dws_batch=1`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const asksForBatches = (url: URL): boolean => url.searchParams.get(batchParameter) === "1"

/**
 * A URL with `dws_batch=1` set: what the client connects with.
 *
 * @since 0.1.0
 * @category encoding
 */
export const withBatches = (url: string): string => {
  let target: URL
  try {
    target = new URL(url)
  } catch {
    // A relative URL (a browser resolves it against the page): the parameter is appended as text.
    return `${url}${url.includes("?") ? "&" : "?"}${batchParameter}=1`
  }
  target.searchParams.set(batchParameter, "1")
  return target.toString()
}

/**
 * A frame as the client receives it: a JSON object with a string `type`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ServerFrame {
  readonly type: string
  readonly meta: Readonly<Record<string, unknown>>
  readonly payload: unknown
}

/**
 * Decodes a frame the server sent, for a client: the heartbeat answer is
 * `undefined` (nothing to deliver); anything that is not a JSON object with
 * a string type is a `ValidationError`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeServerFrame = (data: unknown): ServerFrame | ValidationError | undefined => {
  let text: string
  if (typeof data === "string") text = data
  else if (data instanceof ArrayBuffer) text = new TextDecoder().decode(data)
  else return new ValidationError({ message: "Server frame is neither text nor an ArrayBuffer" })
  if (text === heartbeat.response) return undefined
  let frame: unknown
  try {
    frame = JSON.parse(text)
  } catch {
    return new ValidationError({ message: "Server frame is not valid JSON" })
  }
  return serverFrameOf(frame)
}

const serverFrameOf = (frame: unknown): ServerFrame | ValidationError =>
  !isRecord(frame) || typeof frame["type"] !== "string"
    ? new ValidationError({ message: "Server frame has no string type" })
    : { type: frame["type"], meta: isRecord(frame["meta"]) ? frame["meta"] : {}, payload: frame["payload"] }

/**
 * The frames a `$batch` frame carries, in order; an element that is not a
 * frame is a `ValidationError` in its place, and a payload that is not an
 * array is one `ValidationError`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const batchedFrames = (payload: unknown): ReadonlyArray<ServerFrame | ValidationError> =>
  Array.isArray(payload)
    ? payload.map(serverFrameOf)
    : [new ValidationError({ message: "A $batch frame's payload is not an array" })]

// ---------------------------------------------------------------------------
// Sessions and resumes (recovery)
// ---------------------------------------------------------------------------

/**
 * The payload of `$session`: the connection's session, the token to resume
 * it with (new on every socket), and the object's current log position.
 *
 * @since 0.1.0
 * @category models
 */
export interface SessionPayload {
  readonly sessionId: string
  readonly token: string
  readonly seq: number
}

/**
 * The payload of `$resumed`: a granted resume with what it replayed, or a
 * refused one (one reason for every refusal, so nothing is revealed).
 *
 * @since 0.1.0
 * @category models
 */
export type ResumedPayload =
  | {
    readonly recovered: true
    readonly replayed: number
    /** Topics that lost entries after the watermark (pruned, or cut short by `truncated`). */
    readonly gaps: ReadonlyArray<string>
    /** The replay stopped at the server's `maxReplayBytes`. */
    readonly truncated: boolean
  }
  | { readonly recovered: false; readonly reason: typeof unknownSession }

/**
 * The one reason a resume is refused with.
 *
 * @since 0.1.0
 * @category constants
 */
export const unknownSession = "UNKNOWN_SESSION"

/**
 * `details.reason` of the `RPC_ERROR ABORTED` that answers a resent request
 * whose handler a restart cut off: its outcome is unknown.
 *
 * @since 0.1.0
 * @category constants
 */
export const interruptedReason = "INTERRUPTED"

/**
 * @since 0.1.0
 * @category encoding
 */
export const encodeSessionFrame = (session: SessionPayload): string => encodeFrame(ReservedTypes.session, session)

/**
 * @since 0.1.0
 * @category encoding
 */
export const encodeResumedFrame = (resumed: ResumedPayload): string => encodeFrame(ReservedTypes.resumed, resumed)

/**
 * The query parameter a client resumes with: `<sessionId>.<token>.<seq>`,
 * `seq` being the last published seq it received.
 *
 * @since 0.1.0
 * @category constants
 */
export const resumeParameter = "dws_resume"

/**
 * A resume request, as `dws_resume` carries it.
 *
 * @since 0.1.0
 * @category models
 */
export interface ResumeRequest {
  readonly sessionId: string
  readonly token: string
  /** The last published seq the client received. */
  readonly after: number
}

/**
 * The value of `dws_resume` for a session and watermark.
 *
 * @since 0.1.0
 * @category encoding
 */
export const formatResume = (request: ResumeRequest): string =>
  `${request.sessionId}.${request.token}.${request.after}`

const sessionIdPattern = /^[A-Za-z0-9-]{1,64}$/
const tokenPattern = /^[A-Za-z0-9_-]{16,64}$/
const seqPattern = /^(0|[1-9][0-9]{0,15})$/

/**
 * Parses `dws_resume`; anything that is not exactly `<id>.<token>.<seq>`
 * is no resume.
 *
 * @since 0.1.0
 * @category decoding
 */
export const parseResume = (value: string | null): ResumeRequest | undefined => {
  if (value === null || value.length > 160) return undefined
  const parts = value.split(".")
  if (parts.length !== 3) return undefined
  const [sessionId, token, seq] = parts as [string, string, string]
  if (!sessionIdPattern.test(sessionId) || !tokenPattern.test(token) || !seqPattern.test(seq)) return undefined
  const after = Number(seq)
  return Number.isSafeInteger(after) ? { sessionId, token, after } : undefined
}

// ---------------------------------------------------------------------------
// Presence
// ---------------------------------------------------------------------------

/**
 * One connection's place in a member: its `ref` (random, stable while the
 * connection stays tracked, and across a resume) and the metadata it was
 * tracked with.
 *
 * @since 0.1.0
 * @category models
 */
export interface PresenceMeta {
  readonly ref: string
  readonly meta: unknown
}

/**
 * Members by key, each with the metas of its connections.
 *
 * @since 0.1.0
 * @category models
 */
export type PresenceMembers = Readonly<Record<string, ReadonlyArray<PresenceMeta>>>

/**
 * The payload of a `$presence` frame from the server: a topic's whole
 * presence — its members, or in counts-only mode how many there are.
 *
 * @since 0.1.0
 * @category models
 */
export type PresenceStatePayload =
  | { readonly topic: string; readonly members: PresenceMembers }
  | { readonly topic: string; readonly count: number }

/**
 * The payload of a `$presence_diff` frame: the metas that left and the
 * metas that joined since the last frame (apply the leaves first: an
 * updated meta leaves and joins under one ref), or in counts-only mode the
 * new member count.
 *
 * @since 0.1.0
 * @category models
 */
export type PresenceDiffPayload =
  | { readonly topic: string; readonly joins: PresenceMembers; readonly leaves: PresenceMembers }
  | { readonly topic: string; readonly count: number }

/**
 * @since 0.1.0
 * @category encoding
 */
export const encodePresenceState = (state: PresenceStatePayload): string => encodeFrame(ReservedTypes.presence, state)

/**
 * @since 0.1.0
 * @category encoding
 */
export const encodePresenceDiff = (diff: PresenceDiffPayload): string => encodeFrame(ReservedTypes.presenceDiff, diff)

/**
 * The request a client sends for a topic's full presence state; only a
 * subscriber of the topic is answered.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodePresenceRequest = (topic: string): string => encodeFrame(ReservedTypes.presence, { topic })

/**
 * The topic of a presence request, or `undefined` when the payload is not
 * `{ topic: string }`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const presenceRequestTopic = (payload: unknown): string | undefined =>
  isRecord(payload) && typeof payload["topic"] === "string" ? payload["topic"] : undefined

const isMembers = (u: unknown): u is PresenceMembers =>
  isRecord(u) &&
  Object.values(u).every((metas) =>
    Array.isArray(metas) && metas.every((m) => isRecord(m) && typeof m["ref"] === "string")
  )

/**
 * Reads a `$presence` or `$presence_diff` payload from the server;
 * `undefined` for anything malformed.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodePresenceFrame = (
  type: string,
  payload: unknown
):
  | { readonly kind: "state"; readonly payload: PresenceStatePayload }
  | { readonly kind: "diff"; readonly payload: PresenceDiffPayload }
  | undefined =>
{
  if (!isRecord(payload) || typeof payload["topic"] !== "string") return undefined
  const topic = payload["topic"]
  const count = payload["count"]
  const counted = typeof count === "number" && Number.isSafeInteger(count) && count >= 0 ? { topic, count } : undefined
  if (type === ReservedTypes.presence) {
    if (counted !== undefined) return { kind: "state", payload: counted }
    return isMembers(payload["members"]) ? { kind: "state", payload: { topic, members: payload["members"] } } : undefined
  }
  if (type === ReservedTypes.presenceDiff) {
    if (counted !== undefined) return { kind: "diff", payload: counted }
    const { joins, leaves } = payload
    return isMembers(joins) && isMembers(leaves) ? { kind: "diff", payload: { topic, joins, leaves } } : undefined
  }
  return undefined
}
