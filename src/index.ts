/**
 * durable-ws: a type-safe WebSocket router for Cloudflare Durable Objects.
 *
 * The names below are the promise facade (the WS-Kit Cloudflare adapter's
 * API); each module is also re-exported as a namespace with its full Effect
 * API.
 *
 * @since 0.1.0
 */
export { message, rpc } from "./Message"
export type { MessageSchema, Payload, RpcSchema } from "./Message"
export { createRouter, Router } from "./Router"
export type { Handler, Middleware } from "./Router"
export { createDurableObjectHandler, WebSocketDurableObject } from "./DurableObject"
export type { DurableObjectHandler, DurableObjectHandlerOptions } from "./DurableObject"
export type { CloseContext, ConnectionContext, MessageContext, RpcContext, Topics } from "./HandlerContext"
export { Connection } from "./Connection"
export type { ConnectionData } from "./Connection"
export { Connections } from "./Connections"
export { DurablePubSub, PubSub } from "./PubSub"
export type { PublishOptions, PublishResult } from "./PubSub"
export { Storage } from "./Storage"
export {
  ConnectionLimitExceeded,
  FederationError,
  HandlerTimeout,
  NotSubscribed,
  PayloadTooLarge,
  RateLimited,
  StorageError,
  TopicError,
  Unauthorized,
  UnknownMessageType,
  ValidationError,
  WsError
} from "./Errors"
export type { ErrorCode, WireError } from "./Errors"
export {
  federatePromise as federate,
  federateWithErrorsPromise as federateWithErrors,
  federateWithFilterPromise as federateWithFilter
} from "./Federation"
export type { FederateOptions, Shard, ShardResult } from "./Federation"
export { getShardedDoId, getShardedStub, topicToDoName } from "./Sharding"
export type { NamespaceOrEnv } from "./Sharding"

export * as ConnectionModule from "./Connection"
export * as ConnectionsModule from "./Connections"
export * as DurableObjectModule from "./DurableObject"
export * as Errors from "./Errors"
export * as Message from "./Message"
export * as PubSubModule from "./PubSub"
export * as RouterModule from "./Router"
export * as StorageModule from "./Storage"
export * as Testing from "./Testing"
export * as Federation from "./Federation"
export * as Sharding from "./Sharding"
