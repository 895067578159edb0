/**
 * The Effect face of `durable-ws/client`: the same client (framing,
 * correlation, queueing, heartbeat, resumable delivery all live in the one
 * core the promise face uses), with its operations as Effects with typed
 * errors, its events as Streams, its lifetime a Scope and its reconnects
 * driven by a Schedule.
 *
 * It sits at its own subpath, `durable-ws/client/effect`, so the promise
 * client's bundle carries none of it.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type {
  Client as PromiseClient,
  ClientOptions,
  ClientState,
  CloseDetails,
  CloseInfo,
  InboundFrame,
  PresenceChange,
  PresenceView,
  ReconnectOptions,
  RequestError,
  RequestOptions,
  ResumeInfo,
  SendOptions
} from "./Client"
import {
  ConnectionClosedError,
  createClient,
  isInterrupted,
  RequestInterrupted,
  ServerError,
  TimeoutError
} from "./Client"
import { ValidationError } from "./Errors"
import type { MessageLike, Payload, PayloadArgs, ProgressOf, RpcLike, RpcOf } from "./Message"
import type { PresenceMembers } from "./Protocol"

/**
 * The client's options, with reconnects as a `Schedule` fed the close it
 * follows (so `Schedule.whileInput` can look at the code). The default is
 * the promise client's backoff; `false` never reconnects.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends Omit<ClientOptions, "reconnect"> {
  readonly reconnect?: Schedule.Schedule<unknown, CloseDetails> | ReconnectOptions | false
}

/**
 * A request's options in the Effect face: the promise client's, without the
 * callbacks (progress is a Stream: `requestStream`) and
 * the signal (interrupting the Effect gives up on the request).
 *
 * @since 0.1.0
 * @category models
 */
export interface EffectRequestOptions extends SendOptions {
  readonly timeoutMs?: number
}

/**
 * What `requestStream` emits: every progress, then the
 * one reply (the stream ends with it).
 *
 * @since 0.1.0
 * @category models
 */
export type RequestEvent<M extends RpcLike> =
  | { readonly _tag: "Progress"; readonly progress: ProgressOf<M> }
  | { readonly _tag: "Reply"; readonly reply: Payload<RpcOf<M>["response"]> }

/**
 * An inbound message with its frame (`meta` carries `topic` and `seq` for
 * published ones).
 *
 * @since 0.1.0
 * @category models
 */
export interface Inbound<M extends MessageLike> {
  readonly payload: Payload<M>
  readonly frame: InboundFrame
}

export type {
  ClientState,
  CloseDetails,
  CloseInfo,
  PresenceChange,
  PresenceView,
  RequestError,
  ResumeInfo
} from "./Client"

/**
 * One topic's presence in the Effect face.
 *
 * @since 0.1.0
 * @category models
 */
export interface TopicPresence {
  readonly view: PresenceView
  /** The members now, by key. */
  readonly current: Effect.Effect<PresenceMembers>
  /** Every change from now on (joins, leaves, the state after each). */
  readonly changes: Stream.Stream<PresenceChange>
}

const isRequestError = (error: unknown): error is RequestError =>
  error instanceof ServerError || error instanceof TimeoutError || error instanceof ConnectionClosedError ||
  error instanceof ValidationError

const isSchedule = (u: Options["reconnect"]): u is Schedule.Schedule<unknown, CloseDetails> => Schedule.isSchedule(u)

/**
 * A Schedule as the core's `nextDelay`: each attempt steps it with the
 * close; when it is done, the client gives up. The core starts counting
 * again after a stable connection, and so does the Schedule.
 */
const nextDelayOf = (schedule: Schedule.Schedule<unknown, CloseDetails>): NonNullable<ReconnectOptions["nextDelay"]> => {
  let step: ((now: number, input: CloseDetails) => Effect.Effect<readonly [unknown, Duration.Duration], unknown>) | undefined
  return (attempt, close) => {
    if (step === undefined || attempt === 0) step = Effect.runSync(Schedule.toStep(schedule))
    const exit = Effect.runSyncExit(step(Date.now(), close))
    return Exit.isSuccess(exit) ? Duration.toMillis(exit.value[1]) : undefined
  }
}

const toClientOptions = (options: Options): ClientOptions => {
  const { reconnect, ...rest } = options
  if (!isSchedule(reconnect)) return reconnect === undefined ? rest : { ...rest, reconnect }
  return { ...rest, reconnect: { nextDelay: nextDelayOf(reconnect) } }
}

/** A Stream of a listener: `register` returns the unsubscribe; `last` ends the stream after that value. */
const fromListener = <A>(
  register: (emit: (value: A) => void) => () => void,
  last: (value: A) => boolean = () => false
): Stream.Stream<A> =>
  Stream.callback<A>((queue) =>
    Effect.acquireRelease(
      Effect.sync(() =>
        register((value) => {
          Queue.offerUnsafe(queue, value)
          if (last(value)) Queue.endUnsafe(queue)
        })
      ),
      (unsubscribe) => Effect.sync(unsubscribe)
    )
  )

// A request a restart cut off is its own typed failure here: its outcome is unknown.
const failureOf = (error: unknown): Cause.Cause<RequestError> => {
  if (error instanceof ServerError && isInterrupted(error)) {
    return Cause.fail(
      new RequestInterrupted(
        error.correlationId === undefined
          ? { message: error.message }
          : { correlationId: error.correlationId, message: error.message }
      )
    )
  }
  return isRequestError(error) ? Cause.fail(error) : Cause.die(error)
}

const fromSend = (send: () => boolean): Effect.Effect<void, ValidationError | ConnectionClosedError> =>
  Effect.suspend((): Effect.Effect<void, ValidationError | ConnectionClosedError> => {
    try {
      return send()
        ? Effect.void
        : Effect.fail(new ConnectionClosedError({ message: "Not sent: the client is closed or the send queue is full" }))
    } catch (error) {
      return error instanceof ValidationError ? Effect.fail(error) : Effect.die(error)
    }
  })

const wrap = (client: PromiseClient): Client["Service"] => {
  const request = <M extends RpcLike>(rpc: M, payload: unknown, options: RequestOptions<RpcOf<M>>) =>
    (client.request as (rpc: M, payload: unknown, options: RequestOptions<RpcOf<M>>) => Promise<Payload<RpcOf<M>["response"]>>)(
      rpc,
      payload,
      options
    )
  const inbound = <M extends MessageLike>(message: M) =>
    fromListener<Inbound<M>>((emit) => client.on(message, (payload, frame) => emit({ payload, frame })))
  return {
    client,
    connect: Effect.callback<void, ConnectionClosedError>((resume) => {
      client.connect().then(
        () => resume(Effect.void),
        (error: unknown) =>
          resume(error instanceof ConnectionClosedError ? Effect.fail(error) : Effect.die(error))
      )
    }),
    send: (message, ...[payload, options]) =>
      fromSend(() => (client.send as (m: MessageLike, p: unknown, o?: SendOptions) => boolean)(message, payload, options)),
    request: (rpc, ...[payload, options]) =>
      Effect.callback((resume, signal) => {
        request(rpc, payload, { ...options, signal }).then(
          (reply) => resume(Effect.succeed(reply)),
          (error: unknown) => resume(Effect.failCause(failureOf(error)))
        )
      }),
    requestStream: <M extends RpcLike>(rpc: M, ...[payload, options]: PayloadArgs<M, EffectRequestOptions>) =>
      Stream.callback<RequestEvent<M>, RequestError>((queue) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            const controller = new AbortController()
            const onProgress = (progress: ProgressOf<M>) => void Queue.offerUnsafe(queue, { _tag: "Progress", progress })
            request(rpc, payload, { ...options, signal: controller.signal, onProgress } as RequestOptions<RpcOf<M>>).then(
              (reply) => {
                Queue.offerUnsafe(queue, { _tag: "Reply", reply })
                Queue.endUnsafe(queue)
              },
              (error: unknown) => void Queue.failCauseUnsafe(queue, failureOf(error))
            )
            return controller
          }),
          (controller) => Effect.sync(() => controller.abort())
        )
      ),
    messages: (message) => Stream.map(inbound(message), (m) => m.payload),
    frames: inbound,
    state: fromListener<ClientState>((emit) => {
      emit(client.state)
      return client.state === "closed" ? () => {} : client.onStateChange(emit)
    }, (state) => state === "closed"),
    closes: fromListener<CloseInfo>((emit) => client.onClose(emit), (info) => !info.willReconnect),
    resumes: fromListener<ResumeInfo>((emit) => client.onResumed(emit)),
    presence: (topic) => {
      const view = client.presence(topic)
      return { view, current: Effect.sync(() => view.members), changes: fromListener((emit) => view.onChange(emit)) }
    },
    errors: fromListener<unknown>((emit) => client.onError(emit)),
    close: (code, reason) => Effect.sync(() => client.close(code, reason))
  }
}

/**
 * Creates a client for the life of the Scope: it starts connecting at
 * once and is closed (code 1000) when the Scope closes.
 *
 * @example
 * const program = Effect.gen(function*() {
 *   const client = yield* ClientEffect.make({ url: "wss://example.com/ws?room=lobby" })
 *   const user = yield* client.request(GetUser, { id: "7" })
 * }).pipe(Effect.scoped)
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Client["Service"], never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const client = createClient(toClientOptions(options))
      // Failures reach whoever waits on `connect`; starting must not leave an unhandled rejection.
      client.connect().catch(() => {})
      return wrap(client)
    }),
    ({ client }) => Effect.sync(() => client.close())
  )

/**
 * The Effect client, as a service: what {@link make} returns and
 * {@link layer} provides. Its `client` is the promise client underneath,
 * for what has no Effect form.
 *
 * @since 0.1.0
 * @category services
 */
export class Client extends Context.Service<Client, {
  /** The promise client underneath, for what has no Effect form. */
  readonly client: PromiseClient
  /** Waits until the connection is open (connecting starts with the client). */
  readonly connect: Effect.Effect<void, ConnectionClosedError>
  /** Sends, or queues while offline; fails when the queue is full or the client closed. */
  readonly send: <M extends MessageLike>(
    message: M,
    ...args: PayloadArgs<M, SendOptions>
  ) => Effect.Effect<void, ValidationError | ConnectionClosedError>
  /** An RPC; interrupting it gives up on the reply (a queued request is then never sent). */
  readonly request: <M extends RpcLike>(
    rpc: M,
    ...args: PayloadArgs<M, EffectRequestOptions>
  ) => Effect.Effect<Payload<RpcOf<M>["response"]>, RequestError>
  /** An RPC as a Stream: its progress, then its reply. */
  readonly requestStream: <M extends RpcLike>(
    rpc: M,
    ...args: PayloadArgs<M, EffectRequestOptions>
  ) => Stream.Stream<RequestEvent<M>, RequestError>
  /** Every inbound message of this schema, decoded, from now on. */
  readonly messages: <M extends MessageLike>(message: M) => Stream.Stream<Payload<M>>
  /** Like {@link messages}, with each message's frame. */
  readonly frames: <M extends MessageLike>(message: M) => Stream.Stream<Inbound<M>>
  /** The current state, then every change; ends with `closed`. */
  readonly state: Stream.Stream<ClientState>
  /** Every close of the socket; ends with the one after which it does not reconnect. */
  readonly closes: Stream.Stream<CloseInfo>
  /** With `recovery`: the outcome of every resume. */
  readonly resumes: Stream.Stream<ResumeInfo>
  /** A topic's presence: the view, its members now, and a `Stream` of its changes. */
  readonly presence: (topic: string) => TopicPresence
  /** Server errors that answer no request, undecodable frames, failures of listeners. */
  readonly errors: Stream.Stream<unknown>
  /** Closes for good (the Scope's end does it too). */
  readonly close: (code?: number, reason?: string) => Effect.Effect<void>
}>()("durable-ws/client/Client") {}

/**
 * A layer building {@link Client}; the client lives as long as the layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Client> => Layer.effect(Client, make(options))
