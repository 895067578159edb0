/**
 * Drive a router without a Durable Object: a test connection runs the same
 * dispatch, lifecycle hooks and pub/sub as the real runtime, with sockets
 * and attachments held in memory. It imports nothing from `cloudflare:*`,
 * so unit tests of handlers run in plain Node too.
 *
 * @since 0.1.0
 */
import { v7 as uuidv7 } from "uuid"
import { ConnectionLimitExceeded } from "./Errors"
import type { ConnectionData, Socket } from "./internal/data"
import { mergeData } from "./internal/data"
import { Instance } from "./internal/instance"
import type { HandlerOptions, LayerOption } from "./internal/options"
import { resolveOptions } from "./internal/options"
import { prepareResume } from "./internal/recovery"
import { memoryRegistry } from "./internal/registry"
import { tablesOf } from "./internal/routes"
import * as Runtime from "./internal/runtime"
import type { MessageSchema, PayloadArgs } from "./Message"
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
  /** With `recovery`: a `dws_resume` value (`<sessionId>.<token>.<seq>`), as a client would send it. */
  readonly resume?: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface TestRuntime<TData> {
  /**
   * Opens a connection with the given data and resolves once `onOpen` has
   * run; rejects with `ConnectionLimitExceeded` past `maxConnections`.
   */
  connect(data?: TData, resourceId?: string, options?: ConnectOptions): Promise<TestConnection<TData>>
  /** The handler's own publish: from no connection. */
  publish<M extends MessageSchema>(topic: string, message: M, ...args: PayloadArgs<M, PublishOptions>): Promise<PublishResult>
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
 * Creates an in-memory runtime for a router: one "instance" whose
 * connections are test connections.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <TData, R>(
  router: Router<TData, R>,
  options: TestRuntimeOptions<TData, R> & LayerOption<R>
): TestRuntime<TData> => {
  const config = resolveOptions(options as Parameters<typeof resolveOptions>[0])
  const registry = memoryRegistry()
  const instance = new Instance(tablesOf(router), registry, config)
  return {
    connect: async (data, resourceId, connectOptions) => {
      const claim = instance.recovery === undefined
        ? undefined
        : await prepareResume(instance.recovery, connectOptions?.resume ?? null)
      if (!instance.hasRoom(config.maxConnections)) {
        throw new ConnectionLimitExceeded({ limit: config.maxConnections, message: "Too many connections" })
      }
      const resumption = claim?.()
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
      const system = resourceId === undefined
        ? { clientId: uuidv7(), connectedAt: Date.now() }
        : { clientId: uuidv7(), resourceId, connectedAt: Date.now() }
      const connectionData = mergeData(resumption?.session?.data ?? system, data as Record<string, unknown> | undefined)
      registry.add!(socket)
      const connection = Runtime.open(instance, socket, connectionData, resumption)
      await connection.enqueue(() => undefined)
      return {
        clientId: connectionData.clientId,
        get data() {
          return connection.data as ConnectionData<TData>
        },
        frames,
        get closedWith() {
          return closedWith
        },
        send: (frame) => Runtime.message(instance, socket, typeof frame === "string" ? frame : JSON.stringify(frame)),
        close: (code = 1000, reason = "") => {
          open = false
          return Runtime.close(instance, socket, code, reason)
        }
      }
    },
    publish: (topic, message, ...[payload, publishOptions]) =>
      instance.publish(topic, message, payload, publishOptions, undefined),
    dispose: () => instance.runtime.dispose()
  }
}
