import * as Effect from "effect/Effect"
import type { ConnectionData, SendOptions } from "../../Connection"
import type { CustomWireError } from "../../Errors"
import { describeCode, SentError } from "../../Errors"
import type {
  CloseContext,
  ErrorOptions,
  OpenContext,
  PresenceActions,
  ProgressOptions,
  ReplyOptions,
  RpcContext,
  Topics
} from "../../HandlerContext"
import type { MessageLike, MessageSchema, PayloadSchema, RpcSchema } from "../../Message"
import { messageOf } from "../../Message"
import { encodeErrorFrame, progressType } from "../../Protocol"
import type { PresenceMembers } from "../../Protocol"
import type { PublishOptions, PublishResult } from "../../PubSub"
import type { LiveConnection } from "./connection"
import { stamped } from "./connection"
import type { FreshRequest } from "./recovery"
import type { Instance } from "./instance"

type AnyData = Record<string, unknown>

/** A message and an rpc with their payload types erased: what one context class serves. */
type AnyRpc = RpcSchema<string, PayloadSchema, MessageSchema<string, PayloadSchema>, MessageSchema<string, PayloadSchema>>

/** What a context needs from its instance. */
export type ContextHost = Pick<
  Instance,
  | "env"
  | "storage"
  | "publish"
  | "subscribe"
  | "unsubscribe"
  | "answered"
  | "recordAnswer"
  | "errorSent"
  | "presence"
  | "presenceOr"
  | "run"
>

const revokedPublish: PublishResult = {
  ok: false,
  error: "DEADLINE_EXCEEDED",
  message: "The handler ran past its deadline; nothing it publishes now is delivered"
}

const settled: Promise<void> = Promise.resolve()

class TopicsView implements Topics {
  constructor(private readonly ctx: HandlerContext) {}
  subscribe(topic: string): Promise<void> {
    const { ctx } = this
    return ctx.revoked ? settled : ctx.host.subscribe(ctx.connection, topic)
  }
  unsubscribe(topic: string): Promise<void> {
    const { ctx } = this
    if (!ctx.revoked) ctx.host.unsubscribe(ctx.connection, topic)
    return settled
  }
  list(): ReadonlyArray<string> {
    return Array.from(this.ctx.connection.topics)
  }
  has(topic: string): boolean {
    return this.ctx.connection.topics.has(topic)
  }
}

class PresenceView implements PresenceActions {
  constructor(private readonly ctx: HandlerContext) {}
  track(topic: string, key: string, meta?: unknown): Promise<void> {
    const { ctx } = this
    if (ctx.revoked) return settled
    return ctx.host.run(Effect.flatMap(ctx.host.presenceOr(topic), (p) => p.track(ctx.connection, topic, key, meta ?? null)))
  }
  update(topic: string, meta: unknown): Promise<void> {
    const { ctx } = this
    if (ctx.revoked) return settled
    return ctx.host.run(Effect.flatMap(ctx.host.presenceOr(topic), (p) => p.update(ctx.connection, topic, meta)))
  }
  untrack(topic: string): Promise<void> {
    const { ctx } = this
    if (!ctx.revoked) ctx.host.presence?.untrack(ctx.connection, topic)
    return settled
  }
  list(topic: string): PresenceMembers {
    return this.ctx.host.presence?.list(topic) ?? {}
  }
}

/**
 * The one implementation behind every context type. Methods live on the
 * prototype so building a context per message allocates one small object.
 *
 * A handler that ran past its deadline has its context revoked: from then
 * on nothing it sends, replies, publishes or changes takes effect, so a late
 * promise can never break the order of what the connection receives.
 */
export class HandlerContext implements RpcContext<AnyRpc, AnyData>, OpenContext<AnyData>, CloseContext<AnyData> {
  replied = false
  revoked = false
  /** `onOpen`: the socket resumed a session. */
  recovered = false
  /** `onClose`: the session may still be resumed. */
  resumable = false
  /** With recovery: the durable record of this rpc request, which keeps its answer. */
  record: number | undefined = undefined
  /**
   * With recovery, a request on a socket whose session was not resumed: it is
   * recorded when its handler's synchronous part is over, with its answer
   * when it has one by then (one write instead of two).
   */
  fresh: FreshRequest | undefined = undefined
  /** The progress message of an rpc that declares one. */
  progressMessage: MessageSchema | undefined = undefined
  /** When progress last went out, for `throttleMs`. */
  private lastProgressAt: number | undefined = undefined
  /** When the frame arrived (ms since the epoch): the start of an rpc's deadline. */
  readonly receivedAt: number = Date.now()
  /** Armed while an rpc whose handler returned waits for a deferred reply. */
  private replyDeadline: ReturnType<typeof setTimeout> | undefined = undefined
  private topicsView: Topics | undefined = undefined
  private presenceView: PresenceActions | undefined = undefined
  /** Sends still waiting for an asynchronous validator; the message is handled once they are done. */
  private sending: Promise<void> | undefined = undefined
  private sendFailure: { readonly error: unknown } | undefined = undefined

  constructor(
    readonly host: ContextHost,
    readonly connection: LiveConnection,
    readonly type: string,
    /** Set after construction only when an asynchronous validator decodes it. */
    public payload: unknown,
    readonly meta: Readonly<Record<string, unknown>>,
    readonly correlationId: string | undefined,
    readonly response: MessageSchema | undefined,
    readonly code: number = 0,
    readonly reason: string = ""
  ) {}

  get clientId(): string {
    return this.connection.clientId
  }
  get data(): ConnectionData<AnyData> {
    return this.connection.data
  }
  get env(): Cloudflare.Env {
    return this.host.env
  }
  get storage(): DurableObjectStorage {
    return this.host.storage
  }
  get topics(): Topics {
    return this.topicsView ??= new TopicsView(this)
  }
  get presence(): PresenceActions {
    return this.presenceView ??= new PresenceView(this)
  }

  /** Stops everything this context does from reaching the client. */
  revoke(): void {
    this.revoked = true
    this.replied = true
    this.settleDeadline()
  }

  /**
   * An rpc whose handler returned without answering may still answer from a
   * callback until `atMs` (ms since the epoch); past it `expire` runs once,
   * and nothing the handler sends after that is delivered.
   */
  awaitReply(atMs: number, expire: () => void): void {
    if (this.replied || this.revoked) return
    ;(this.connection.awaitingReplies ??= new Set()).add(this)
    this.replyDeadline = setTimeout(() => {
      this.replyDeadline = undefined
      this.connection.awaitingReplies?.delete(this)
      if (this.replied) return
      expire()
      this.revoke()
    }, Math.max(0, atMs - Date.now()))
  }

  private settleDeadline(): void {
    if (this.replyDeadline === undefined) return
    clearTimeout(this.replyDeadline)
    this.replyDeadline = undefined
    this.connection.awaitingReplies?.delete(this)
  }

  /**
   * The context the `onError` hooks get: this one, or for a revoked one a
   * live copy, since the hook is the server's code, not the late handler.
   */
  forHooks(): HandlerContext {
    if (!this.revoked) return this
    const copy = new HandlerContext(
      this.host, this.connection, this.type, this.payload, this.meta, this.correlationId, this.response, this.code, this.reason
    )
    copy.replied = true
    copy.recovered = this.recovered
    copy.resumable = this.resumable
    return copy
  }

  /**
   * Sends the answer to this message (a Promise of it while an asynchronous
   * validator checks a reply); an rpc's answer is also reported to the
   * instance once it is known.
   */
  answer(frame: string | Promise<string>): Promise<void> | undefined {
    const answered = this.record === undefined && this.fresh === undefined ? undefined : (sent: string) => {
      const fresh = this.fresh
      if (fresh === undefined) return this.host.answered(this.record!, sent)
      this.fresh = undefined
      this.record = this.host.recordAnswer(fresh, sent)
    }
    const sent = this.connection.sendEncoded(frame, this, answered)
    this.track(sent)
    return sent
  }

  assignData(partial: Readonly<AnyData>): void {
    if (this.revoked) return
    const tooLarge = this.connection.assignData(partial)
    if (tooLarge !== undefined) throw tooLarge
  }

  send(message: MessageLike, payload?: unknown, options?: SendOptions): void
  send(message: MessageLike, payload: unknown, options: SendOptions & { readonly waitFor: "drain" | "ack" }): Promise<boolean>
  send(message: MessageLike, payload?: unknown, options?: SendOptions): void | Promise<boolean> {
    const waits = options?.waitFor !== undefined
    if (this.revoked || options?.signal?.aborted === true) return waits ? Promise.resolve(false) : undefined
    const correlationId = options?.inheritCorrelationId === true ? this.correlationId : undefined
    const sendOptions = correlationId === undefined ? options : { ...options, meta: { ...options?.meta, correlationId } }
    const sent = this.connection.send(messageOf(message), payload, sendOptions, this)
    this.track(sent)
    if (!waits) return undefined
    return sent === undefined
      ? Promise.resolve(!this.connection.closed)
      : sent.then(() => !this.connection.closed && !this.revoked, () => false)
  }

  reply(payload?: unknown, options?: ReplyOptions): void
  reply(payload: unknown, options: ReplyOptions & { readonly waitFor: "drain" | "ack" }): Promise<void>
  reply(payload?: unknown, options?: ReplyOptions): void | Promise<void> {
    if (this.response === undefined) throw new Error("durable-ws: reply() is only available in rpc handlers")
    const waits = options?.waitFor !== undefined
    if (this.replied || options?.signal?.aborted === true) return waits ? settled : undefined
    this.replied = true
    this.settleDeadline()
    const meta = options?.meta
    const sent = this.answer(this.connection.encode(this.response, payload, meta === undefined ? undefined : { meta }, this.correlationId))
    if (!waits) return undefined
    return sent === undefined ? settled : sent.then(undefined, () => undefined)
  }

  progress(payload?: unknown, options?: ProgressOptions): void {
    if (this.response === undefined) throw new Error("durable-ws: progress() is only available in rpc handlers")
    // Progress only ever precedes the one answer: after a reply, an error or the deadline it is dropped.
    if (this.replied || options?.signal?.aborted === true) return
    const now = Date.now()
    const throttleMs = options?.throttleMs
    if (throttleMs !== undefined && this.lastProgressAt !== undefined && now - this.lastProgressAt < throttleMs) return
    this.lastProgressAt = now
    const message = this.progressMessage
    const sendOptions = options?.meta === undefined ? undefined : { meta: options.meta }
    const frame = message === undefined
      ? stamped(progressType, payload, now, options?.meta, this.correlationId)
      : this.connection.encode(message, payload, sendOptions, this.correlationId)
    this.track(this.connection.sendEncoded(frame, this))
  }

  private track(sent: Promise<void> | undefined): void {
    if (sent === undefined) return
    const done = sent.then(undefined, (error: unknown) => {
      this.sendFailure ??= { error }
    })
    this.sending = this.sending === undefined ? done : Promise.all([this.sending, done]).then(() => undefined)
  }

  /**
   * Undefined when every send is out; else a Promise that settles once the
   * asynchronously validated ones are, rejecting with the first failure
   * (an invalid outbound payload fails the handler, as it does when thrown).
   */
  sendsDone(): Promise<void> | undefined {
    const sending = this.sending
    if (sending === undefined) return undefined
    this.sending = undefined
    return sending.then(() => {
      const failure = this.sendFailure
      this.sendFailure = undefined
      if (failure !== undefined) throw failure.error
    })
  }

  error(code: string, message?: string, details?: unknown, options?: ErrorOptions): void {
    // An RPC request gets exactly one answer: a reply, an error, or a timeout.
    if (this.revoked || (this.response !== undefined && this.replied)) return
    this.replied = true
    this.settleDeadline()
    const text = message ?? describeCode(code)
    const wire: CustomWireError = {
      code,
      message: text,
      ...(details === undefined ? {} : { details }),
      ...(options?.retryable === undefined ? {} : { retryable: options.retryable }),
      ...(options?.retryAfterMs === undefined ? {} : { retryAfterMs: options.retryAfterMs })
    }
    this.answer(encodeErrorFrame(wire, this.correlationId, options?.meta))
    const sent = new SentError(details === undefined ? { code, message: text } : { code, message: text, details })
    this.host.errorSent(options?.cause === undefined ? sent : Object.assign(sent, { cause: options.cause }), this)
  }

  publish(topic: string, message: MessageLike, payload?: unknown, options?: PublishOptions): Promise<PublishResult> {
    if (this.revoked) return Promise.resolve(revokedPublish)
    return this.host.publish(topic, messageOf(message), payload, options, this.connection)
  }

  close(code?: number, reason?: string): void {
    if (!this.revoked) this.connection.close(code, reason)
  }
}
