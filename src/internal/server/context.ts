import type { ErrorCode } from "../../Errors"
import type { CloseContext, OpenContext, RpcContext, Topics } from "../../HandlerContext"
import type { MessageSchema, PayloadSchema, RpcSchema } from "../../Message"
import { encodeErrorFrame } from "../../Protocol"
import type { PublishOptions, PublishResult } from "../../PubSub"
import type { LiveConnection } from "./connection"
import type { Instance } from "./instance"
import type { ConnectionData, SendOptions } from "../../Connection"

type AnyData = Record<string, unknown>

/** A message and an rpc with their payload types erased: what one context class serves. */
type AnyRpc = RpcSchema<string, PayloadSchema, MessageSchema<string, PayloadSchema>, MessageSchema<string, PayloadSchema>>

/** What a context needs from its instance. */
export type ContextHost = Pick<Instance, "env" | "storage" | "publish" | "subscribe" | "unsubscribe" | "answered">

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
  /** The progress message of an rpc that declares one. */
  progressMessage: MessageSchema | undefined = undefined
  private topicsView: Topics | undefined = undefined
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

  /** Stops everything this context does from reaching the client. */
  revoke(): void {
    this.revoked = true
    this.replied = true
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

  /** Sends the answer to this message; an rpc's answer is also reported to the instance. */
  /**
   * Sends the answer to this message (a Promise of it while an asynchronous
   * validator checks a reply); an rpc's answer is also reported to the
   * instance once it is known.
   */
  answer(frame: string | Promise<string>): void {
    const { response, correlationId } = this
    const answered = response === undefined || correlationId === undefined
      ? undefined
      : (sent: string) => this.host.answered(this.connection, correlationId, sent)
    this.track(this.connection.sendEncoded(frame, this, answered))
  }

  assignData(partial: Readonly<AnyData>): void {
    if (this.revoked) return
    const tooLarge = this.connection.assignData(partial)
    if (tooLarge !== undefined) throw tooLarge
  }

  send(message: MessageSchema, payload?: unknown, options?: SendOptions): void {
    if (!this.revoked) this.track(this.connection.send(message, payload, options, this))
  }

  reply(payload?: unknown, options?: SendOptions): void {
    if (this.response === undefined) throw new Error("durable-ws: reply() is only available in rpc handlers")
    if (this.replied) return
    this.replied = true
    this.answer(this.connection.encode(this.response, payload, options, this.correlationId))
  }

  progress(payload?: unknown): void {
    const message = this.progressMessage
    if (message === undefined) throw new Error("durable-ws: progress() needs an rpc declared with a progress schema")
    // Progress only ever precedes the one answer: after a reply, an error or the deadline it is dropped.
    if (this.replied) return
    this.track(this.connection.sendEncoded(this.connection.encode(message, payload, undefined, this.correlationId), this))
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

  error(code: ErrorCode, message: string, details?: unknown): void {
    // An RPC request gets exactly one answer: a reply, an error, or a timeout.
    if (this.revoked || (this.response !== undefined && this.replied)) return
    this.replied = true
    this.answer(encodeErrorFrame(details === undefined ? { code, message } : { code, message, details }, this.correlationId))
  }

  publish(topic: string, message: MessageSchema, payload?: unknown, options?: PublishOptions): Promise<PublishResult> {
    if (this.revoked) return Promise.resolve(revokedPublish)
    return this.host.publish(topic, message, payload, options, this.connection)
  }

  close(code?: number, reason?: string): void {
    if (!this.revoked) this.connection.close(code, reason)
  }
}
