/**
 * Drive a router without a Durable Object: a test connection runs the same
 * admission, dispatch, lifecycle hooks and pub/sub as the Durable Object, with sockets
 * and attachments held in memory. It imports nothing from `cloudflare:*`,
 * so unit tests of handlers run in plain Node too.
 *
 * @since 0.1.0
 */
import type { ConnectionData } from "./Connection"
import { admit, isRefusal } from "./internal/server/admission"
import type { Socket } from "./internal/server/data"
import { Instance } from "./internal/server/instance"
import { resolveOptions } from "./internal/server/options"
import { memoryRegistry } from "./internal/server/registry"
import { tablesOf } from "./internal/server/routes"
import * as Sockets from "./internal/server/sockets"
import type { MessageLike, MessageSchema, PayloadArgs } from "./Message"
import { messageOf } from "./Message"
import type { HandlerOptions, LayerOption } from "./Options"
import type { PublishOptions, PublishResult } from "./PubSub"
import type { Router } from "./Router"

/**
 * A frame as a client would receive it.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReceivedFrame {
  readonly type: string
  readonly meta?: Readonly<Record<string, unknown>>
  readonly payload?: unknown
}

/**
 * @since 0.1.0
 * @category models
 */
export interface TestConnection<TData> {
  readonly clientId: string
  readonly data: ConnectionData<TData>
  /** Every frame sent to this connection, in order. */
  readonly frames: Array<ReceivedFrame>
  /** Set once the server closed the connection. */
  readonly closedWith: { readonly code?: number; readonly reason?: string } | undefined
  /** Sends a frame (an object is JSON-encoded) and resolves once it has been handled. */
  send(frame: unknown): Promise<void>
  /** Closes from the client side and resolves once `onClose` has run. */
  close(code?: number, reason?: string): Promise<void>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ConnectOptions {
  /** With `recovery`: the resume parameter's value (`<sessionId>.<token>.<seq>`), as a client would send it. */
  readonly resume?: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface TestRuntime<TData> {
  /**
   * Opens a connection with the given data and resolves once `onOpen` has
   * run. It is admitted as the Durable Object admits an upgrade: it rejects
   * with `ConnectionLimitExceeded` past `maxConnections` (the object's 503)
   * and with `PayloadTooLarge` when the data exceeds 16 KiB (the object's 500).
   */
  connect(data?: TData, resourceId?: string, options?: ConnectOptions): Promise<TestConnection<TData>>
  /** The handler's own publish: from no connection. */
  publish<M extends MessageLike>(topic: string, message: M, ...args: PayloadArgs<M, PublishOptions>): Promise<PublishResult>
  /** Releases what the `layer` acquired. */
  dispose(): Promise<void>
}

/**
 * The options of `createDurableObjectHandler`, validated the same way.
 * `storage` stands in for `state.storage`. The upgrade-only options
 * (`authenticate`, `allowedOrigins`, `onRequest`) are checked but have
 * nothing to act on: `connect` is handed the connection data directly.
 *
 * @since 0.1.0
 * @category models
 */
export type TestRuntimeOptions<TData = unknown, R = never> =
  & Omit<HandlerOptions<TData, R>, "state">
  & { readonly storage?: DurableObjectStorage }

/**
 * Creates an in-memory instance for a router: one "instance" whose
 * connections are test connections.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <TData, R>(
  router: Router<TData, R>,
  options: TestRuntimeOptions<TData, R> & LayerOption<R>
): TestRuntime<TData> => {
  const config = resolveOptions(options as Parameters<typeof resolveOptions>[0], false, tablesOf(router).limits)
  const registry = memoryRegistry()
  const instance = new Instance(tablesOf(router), registry, config)
  return {
    connect: async (data, resourceId, connectOptions) => {
      const frames: Array<ReceivedFrame> = []
      let closedWith: { code?: number; reason?: string } | undefined
      let open = true
      const socket: Socket = {
        get readyState() {
          return open ? 1 : 3
        },
        send: (text) => {
          if (!open) throw new Error("socket closed")
          frames.push(JSON.parse(text) as ReceivedFrame)
        },
        close: (code, reason) => {
          open = false
          closedWith = code === undefined ? {} : reason === undefined ? { code } : { code, reason }
        }
      }
      const connection = await admit(
        instance,
        { authenticated: data, resourceId, resume: connectOptions?.resume ?? null },
        () => {
          registry.add!(socket)
          return socket
        }
      )
      if (isRefusal(connection)) throw connection
      await connection.enqueue(() => undefined)
      return {
        clientId: connection.clientId,
        get data() {
          return connection.data as ConnectionData<TData>
        },
        frames,
        get closedWith() {
          return closedWith
        },
        send: (frame) => Sockets.message(instance, socket, typeof frame === "string" ? frame : JSON.stringify(frame)),
        close: (code = 1000, reason = "") => {
          open = false
          return Sockets.close(instance, socket, code, reason)
        }
      }
    },
    publish: (topic, message, ...[payload, publishOptions]) =>
      instance.publish(topic, messageOf(message), payload, publishOptions, undefined),
    dispose: () => instance.runtime.dispose()
  }
}
