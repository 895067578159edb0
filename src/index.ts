/**
 * durable-ws: a type-safe WebSocket router for Cloudflare Durable Objects.
 *
 * The root is the promise facade (the WS-Kit Cloudflare adapter's API) plus
 * the values Effect handlers use by name: the services and the error
 * classes. Every name here is the promise form where there are two. Each
 * module's full Effect API lives at its own subpath, imported as a
 * namespace the way Effect's own modules are:
 * `import * as Federation from "durable-ws/Federation"`.
 *
 * @since 0.1.0
 */
export { message, rpc } from "./Message"
export type {
  DefinesMessage,
  MessageLike,
  MessageSchema,
  MetaOf,
  OutgoingPayload,
  Payload,
  ProgressOf,
  RpcLike,
  RpcOptions,
  RpcSchema
} from "./Message"
export type { StandardSchemaV1 } from "./StandardSchema"
export { createRouter, Router } from "./Router"
export type {
  ComposeOptions,
  ErrorHook,
  Handler,
  Middleware,
  PublishRecord,
  RouteBuilder,
  RouterObserver,
  RouterOptions,
  RpcRouteOptions
} from "./Router"
export { createDurableObjectHandler, WebSocketDurableObject } from "./DurableObject"
export type { DurableObjectHandler, DurableObjectHandlerOptions, RecoveryOptions } from "./DurableObject"
export type {
  CloseContext,
  ConnectionContext,
  ErrorOptions,
  MessageContext,
  OpenContext,
  PresenceActions,
  ProgressOptions,
  ReplyOptions,
  RpcContext,
  Topics
} from "./HandlerContext"
export { Presence } from "./Presence"
export type {
  PresenceChanges,
  PresenceEdge,
  PresenceMembers,
  PresenceMeta,
  PresenceOptions,
  PresencePart,
  PresencePartAnswer,
  PresencePartCheck,
  SpannedPresence,
  SpannedPresenceAnswer
} from "./Presence"
export { Connection } from "./Connection"
export type { ConnectionData, DurableObjectWebSocketData } from "./Connection"
export { Connections } from "./Connections"
export { DurablePubSub, PubSub } from "./PubSub"
export type { ChannelListener, PublishOptions, PublishResult } from "./PubSub"
export { Storage } from "./Storage"
export {
  ConnectionLimitExceeded,
  FederationError,
  HandlerTimeout,
  NotSubscribed,
  PayloadTooLarge,
  RateLimited,
  SentError,
  StorageError,
  TopicError,
  Unauthorized,
  UnknownMessageType,
  ValidationError,
  WsError
} from "./Errors"
export type { CustomWireError, ErrorCode, WireError } from "./Errors"
export {
  federatePromise as federate,
  federateWithErrorsPromise as federateWithErrors,
  federateWithFilterPromise as federateWithFilter
} from "./Federation"
export type { FederateOptions, Shard, ShardResult } from "./Federation"
export { SpanningTopicHome } from "./SpanningTopic"
export type { HomeSettings, SpanOptions, SpannedAnswer, SpannedDelivery } from "./SpanningTopic"
export { getShardedDoId, getShardedStub, topicToConsistentDoName, topicToDoName } from "./Sharding"
export { CloseCodes, isTerminalCloseCode } from "./CloseCodes"
export type { NamespaceOrEnv } from "./Sharding"
