/**
 * Drive a router without a Durable Object: a test connection runs the same
 * dispatch, lifecycle hooks and pub/sub as the real runtime, with sockets
 * and attachments held in memory. Useful for unit tests of handlers.
 *
 * @since 0.1.0
 */
import { v7 as uuidv7 } from "uuid"
import type { ConnectionData, Socket } from "./Connection"
import { mergeData } from "./Connection"
import type { LayerOption } from "./DurableObject"
import { defaults } from "./DurableObject"
import type { InstanceConfig } from "./internal/instance"
import { Instance } from "./internal/instance"
import { memoryRegistry } from "./internal/registry"
import type { RateLimit } from "./internal/rateLimit"
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
export interface TestRuntime<TData> {
  /** Opens a connection with the given data and resolves once `onOpen` has run. */
  connect(data?: TData, resourceId?: string): Promise<TestConnection<TData>>
  publish<M extends MessageSchema>(topic: string, message: M, ...args: PayloadArgs<M, PublishOptions>): Promise<PublishResult>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface TestRuntimeOptions {
  readonly env?: Cloudflare.Env
  readonly storage?: DurableObjectStorage
  readonly maxPayloadBytes?: number
  readonly handlerTimeoutMs?: number
  readonly rateLimit?: RateLimit
}

/**
 * Creates an in-memory runtime for a router: one "instance" whose
 * connections are test connections.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <TData, R>(
  router: Router<TData, R>,
  options: TestRuntimeOptions & LayerOption<R>
): TestRuntime<TData> => {
  const registry = memoryRegistry()
  const config: InstanceConfig = {
    env: options.env ?? ({} as Cloudflare.Env),
    storage: options.storage,
    maxPayloadBytes: options.maxPayloadBytes ?? defaults.maxPayloadBytes,
    handlerTimeoutMs: options.handlerTimeoutMs,
    rateLimit: options.rateLimit,
    authorizeSubscribe: undefined,
    authorizePublish: undefined,
    layer: options.layer as InstanceConfig["layer"]
  }
  const instance = new Instance(router, registry, config)
  return {
    connect: async (data, resourceId) => {
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
      const connectionData = mergeData(system, data as Record<string, unknown> | undefined)
      registry.add(socket)
      const connection = instance.open(socket, connectionData)
      await connection.enqueue(() => Promise.resolve())
      return {
        clientId: system.clientId,
        get data() {
          return connection.data as ConnectionData<TData>
        },
        frames,
        get closedWith() {
          return closedWith
        },
        send: (frame) => instance.message(socket, typeof frame === "string" ? frame : JSON.stringify(frame)),
        close: (code = 1000, reason = "") => {
          open = false
          return instance.close(socket, code, reason)
        }
      }
    },
    publish: (topic, message, ...[payload, publishOptions]) =>
      instance.publish(topic, message, payload, publishOptions, undefined)
  }
}
