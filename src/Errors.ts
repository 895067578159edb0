/**
 * Typed errors and the one place where they become wire error codes.
 *
 * Every error the library raises is a `Schema.TaggedError`, so Effect code can
 * `catchTag` it and promise code can `instanceof` it (they are `Error`
 * subclasses). Each carries the gRPC-style `code` the client will see.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * The error codes a client can receive (gRPC-style).
 *
 * @since 0.1.0
 * @category models
 */
export const ErrorCodes = [
  "UNAUTHENTICATED",
  "PERMISSION_DENIED",
  "INVALID_ARGUMENT",
  "FAILED_PRECONDITION",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "UNIMPLEMENTED",
  "CANCELLED",
  "DEADLINE_EXCEEDED",
  "RESOURCE_EXHAUSTED",
  "UNAVAILABLE",
  "ABORTED",
  "INTERNAL"
] as const

/**
 * @since 0.1.0
 * @category models
 */
export type ErrorCode = (typeof ErrorCodes)[number]

/**
 * @since 0.1.0
 * @category models
 */
export const ErrorCode = Schema.Literals(ErrorCodes)

/**
 * The payload of an `ERROR` / `RPC_ERROR` frame.
 *
 * @since 0.1.0
 * @category models
 */
export interface WireError {
  readonly code: ErrorCode
  readonly message: string
  readonly details?: unknown
  readonly retryable?: boolean
  readonly retryAfterMs?: number
}

/**
 * The payload of an error frame whose code the application chose (WS-Kit's
 * custom codes: `ctx.error("QUOTA_EXCEEDED", ...)`).
 *
 * @since 0.1.0
 * @category models
 */
export interface CustomWireError extends Omit<WireError, "code" | "retryAfterMs"> {
  readonly code: string
  /** `null`: do not retry. */
  readonly retryAfterMs?: number | null
}

const descriptions: Readonly<Record<ErrorCode, string>> = {
  UNAUTHENTICATED: "Not signed in",
  PERMISSION_DENIED: "Not allowed",
  INVALID_ARGUMENT: "Invalid request",
  FAILED_PRECONDITION: "Not possible in the current state",
  NOT_FOUND: "Not found",
  ALREADY_EXISTS: "Already exists",
  UNIMPLEMENTED: "Not supported",
  CANCELLED: "Cancelled",
  DEADLINE_EXCEEDED: "Took too long",
  RESOURCE_EXHAUSTED: "Limit reached",
  UNAVAILABLE: "Unavailable, try again",
  ABORTED: "Aborted by a conflict, try again",
  INTERNAL: "Internal server error"
}

/**
 * The message an error frame carries when the handler gave none: a short
 * description of a standard code, or the code itself.
 *
 * @since 0.1.0
 * @category utils
 */
export const describeCode = (code: string): string =>
  Object.hasOwn(descriptions, code) ? descriptions[code as ErrorCode] : code

/**
 * An error a handler sent with `ctx.error(code, message, details)`, as the
 * `onError` hooks see it; `code` may be a standard code or the
 * application's own.
 *
 * @since 0.1.0
 * @category errors
 */
export class SentError extends Schema.TaggedError<SentError>()("SentError", {
  code: Schema.String,
  message: Schema.String,
  details: Schema.optional(Schema.Unknown)
}) {}

/**
 * One schema problem, as reported in `details.issues`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Issue {
  readonly path: ReadonlyArray<PropertyKey>
  readonly message: string
}

/**
 * The error handlers fail with (or throw) to send a chosen code to the client.
 *
 * @since 0.1.0
 * @category errors
 */
export class WsError extends Schema.TaggedError<WsError>()("WsError", {
  code: ErrorCode,
  message: Schema.String,
  details: Schema.optional(Schema.Unknown)
}) {}

/**
 * An inbound frame or payload that does not match what was expected.
 *
 * @since 0.1.0
 * @category errors
 */
export class ValidationError extends Schema.TaggedError<ValidationError>()("ValidationError", {
  message: Schema.String,
  issues: Schema.optional(Schema.Array(Schema.Struct({ path: Schema.Array(Schema.Unknown), message: Schema.String })))
}) {
  get code(): ErrorCode {
    return "INVALID_ARGUMENT"
  }
}

/**
 * A frame whose `type` has no route, or is reserved (`$…`, `__…`).
 *
 * @since 0.1.0
 * @category errors
 */
export class UnknownMessageType extends Schema.TaggedError<UnknownMessageType>()("UnknownMessageType", {
  type: Schema.String,
  message: Schema.String
}) {
  get code(): ErrorCode {
    return "UNIMPLEMENTED"
  }
}

/**
 * A frame, or connection data, larger than the configured limit (bytes).
 *
 * @since 0.1.0
 * @category errors
 */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  size: Schema.Number,
  limit: Schema.Number,
  message: Schema.String
}) {
  get code(): ErrorCode {
    return "RESOURCE_EXHAUSTED"
  }
}

/**
 * The upgrade request did not authenticate.
 *
 * @since 0.1.0
 * @category errors
 */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  message: Schema.String
}) {
  get code(): ErrorCode {
    return "UNAUTHENTICATED"
  }
}

/**
 * The instance already holds `maxConnections` open sockets.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConnectionLimitExceeded extends Schema.TaggedError<ConnectionLimitExceeded>()(
  "ConnectionLimitExceeded",
  { limit: Schema.Number, message: Schema.String }
) {
  get code(): ErrorCode {
    return "RESOURCE_EXHAUSTED"
  }
}

/**
 * A subscription or publish that was refused: bad topic name, too many
 * topics, or denied by `authorizeSubscribe` / `authorizePublish`.
 *
 * @since 0.1.0
 * @category errors
 */
export class TopicError extends Schema.TaggedError<TopicError>()("TopicError", {
  topic: Schema.String,
  code: Schema.Literals(["INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "PERMISSION_DENIED", "UNAVAILABLE"]),
  message: Schema.String
}) {}

/**
 * Unsubscribing from a topic the connection is not subscribed to, when the
 * caller asked for that to be an error.
 *
 * @since 0.1.0
 * @category errors
 */
export class NotSubscribed extends Schema.TaggedError<NotSubscribed>()("NotSubscribed", {
  topic: Schema.String,
  message: Schema.String
}) {
  get code(): ErrorCode {
    return "FAILED_PRECONDITION"
  }
}

/**
 * A Durable Object storage operation failed.
 *
 * @since 0.1.0
 * @category errors
 */
export class StorageError extends Schema.TaggedError<StorageError>()("StorageError", {
  operation: Schema.String,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {
  get code(): ErrorCode {
    return "UNAVAILABLE"
  }
}

/**
 * A call to another Durable Object failed, timed out, or was overloaded.
 *
 * @since 0.1.0
 * @category errors
 */
export class FederationError extends Schema.TaggedError<FederationError>()("FederationError", {
  shard: Schema.String,
  message: Schema.String,
  retryable: Schema.Boolean,
  overloaded: Schema.Boolean,
  cause: Schema.optional(Schema.Defect())
}) {
  get code(): ErrorCode {
    return "UNAVAILABLE"
  }
}

/**
 * The connection sent more frames than its rate limit allows.
 *
 * @since 0.1.0
 * @category errors
 */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  retryAfterMs: Schema.Number,
  message: Schema.String
}) {
  get code(): ErrorCode {
    return "RESOURCE_EXHAUSTED"
  }
}

/**
 * A handler ran past `handlerTimeoutMs`.
 *
 * @since 0.1.0
 * @category errors
 */
export class HandlerTimeout extends Schema.TaggedError<HandlerTimeout>()("HandlerTimeout", {
  timeoutMs: Schema.Number,
  message: Schema.String
}) {
  get code(): ErrorCode {
    return "DEADLINE_EXCEEDED"
  }
}

/**
 * Any error the library knows how to put on the wire.
 *
 * @since 0.1.0
 * @category models
 */
export type KnownError =
  | WsError
  | ValidationError
  | UnknownMessageType
  | PayloadTooLarge
  | Unauthorized
  | ConnectionLimitExceeded
  | TopicError
  | NotSubscribed
  | StorageError
  | FederationError
  | RateLimited
  | HandlerTimeout

const knownErrors = [
  WsError,
  ValidationError,
  UnknownMessageType,
  PayloadTooLarge,
  Unauthorized,
  ConnectionLimitExceeded,
  TopicError,
  NotSubscribed,
  StorageError,
  FederationError,
  RateLimited,
  HandlerTimeout
] as const

/**
 * @since 0.1.0
 * @category guards
 */
export const isKnownError = (u: unknown): u is KnownError => knownErrors.some((known) => u instanceof known)

/**
 * The generic message sent for every error the library does not know:
 * nothing about the failure leaves the server.
 *
 * @since 0.1.0
 * @category constants
 */
export const internalErrorMessage = "Internal server error"

/**
 * Maps any failure to the error payload the client sees. Known errors keep
 * their code and message; anything else becomes `INTERNAL` with a generic
 * message, so stacks and internals never leak.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toWireError = (error: unknown): WireError => {
  if (!isKnownError(error)) return { code: "INTERNAL", message: internalErrorMessage }
  switch (error._tag) {
    case "WsError":
      return error.details === undefined
        ? { code: error.code, message: error.message }
        : { code: error.code, message: error.message, details: error.details }
    case "ValidationError":
      return error.issues === undefined
        ? { code: error.code, message: error.message }
        : { code: error.code, message: error.message, details: { issues: error.issues } }
    case "RateLimited":
      return { code: error.code, message: error.message, retryable: true, retryAfterMs: error.retryAfterMs }
    case "StorageError":
    case "FederationError":
      return { code: error.code, message: error.message, retryable: true }
    default:
      return { code: error.code, message: error.message }
  }
}
