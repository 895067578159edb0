import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import { PayloadTooLarge } from "../../Errors"
import type { MessageSchema } from "../../Message"
import { encodePayload, isPendingResult } from "../../Message"
import { encodeFrame, encodeStampedFrame, utf8Length } from "../../Protocol"
import type { ConnectionData, SendOptions } from "../../Connection"
import { maxAttachmentBytes } from "../../Connection"
import type { Socket } from "./data"
import { mergeData } from "./data"
import { fiberless } from "./generators"
import type { SavedBucket, TokenBucket } from "./rateLimit"
import type { ScopeEntry } from "./scope"

/**
 * What is kept in the socket attachment: everything a connection needs to
 * resume after hibernation. Short keys because it is serialized on every
 * change and capped at 16 KiB.
 */
export interface Attachment {
  readonly d: ConnectionData<Record<string, unknown>>
  readonly t: ReadonlyArray<string>
  /** The rate-limit bucket, once it matters (see {@link TokenBucket}). */
  readonly r?: SavedBucket
  /** Presence entries by topic, as `[key, ref, meta]`, once the connection is tracked somewhere. */
  readonly p?: Readonly<Record<string, SavedEntry>>
  /**
   * Spanning topics' watermarks this connection carries for its object (see
   * span.ts): the last home `seq` sent here, by topic. Kept in one
   * subscriber's attachment, they survive hibernation without a storage write.
   */
  readonly s?: Readonly<Record<string, number>>
  /** Set when the client reads `$batch` frames (it asked at the upgrade). */
  readonly b?: 1
}

/** A connection's place in one topic's presence. */
export interface PresenceEntry {
  readonly key: string
  readonly ref: string
  readonly meta: unknown
}

type SavedEntry = readonly [key: string, ref: string, meta: unknown]

const isSavedEntry = (u: unknown): u is SavedEntry =>
  Array.isArray(u) && u.length === 3 && typeof u[0] === "string" && typeof u[1] === "string"

/** No presence: one map shared by every connection that is in none (presence maps are replaced, never changed). */
export const noPresence: ReadonlyMap<string, PresenceEntry> = new Map()

/** The presence entries an attachment holds; anything malformed is no entry. */
export const presenceOf = (attachment: Attachment): ReadonlyMap<string, PresenceEntry> => {
  const saved = attachment.p
  if (typeof saved !== "object" || saved === null) return noPresence
  const entries = new Map<string, PresenceEntry>()
  for (const topic of Object.keys(saved)) {
    const entry: unknown = saved[topic]
    if (isSavedEntry(entry)) entries.set(topic, { key: entry[0], ref: entry[1], meta: entry[2] })
  }
  return entries
}

/** The spanning watermarks an attachment carries, if any; anything malformed is none. */
export const spanMarksOf = (attachment: Attachment): Map<string, number> | undefined => {
  const saved = attachment.s
  if (typeof saved !== "object" || saved === null) return undefined
  const marks = new Map<string, number>()
  for (const topic of Object.keys(saved)) {
    const seq: unknown = saved[topic]
    if (typeof seq === "number" && Number.isSafeInteger(seq)) marks.set(topic, seq)
  }
  return marks
}

const savedSpanMarks = (marks: ReadonlyMap<string, number> | undefined): Record<string, number> | undefined => {
  if (marks === undefined || marks.size === 0) return undefined
  const out: Record<string, number> = {}
  for (const [topic, seq] of marks) {
    Object.defineProperty(out, topic, { value: seq, enumerable: true, writable: true, configurable: true })
  }
  return out
}

const savedPresence = (entries: ReadonlyMap<string, PresenceEntry>): Record<string, SavedEntry> | undefined => {
  if (entries.size === 0) return undefined
  const out: Record<string, SavedEntry> = {}
  for (const [topic, { key, ref, meta }] of entries) {
    Object.defineProperty(out, topic, { value: [key, ref, meta], enumerable: true, writable: true, configurable: true })
  }
  return out
}

export interface AttachmentStore {
  readonly read: (socket: Socket) => unknown
  readonly write: (socket: Socket, attachment: Attachment) => void
  /** The server is closing a connection with `code` (with recovery, a terminal code ends its session). */
  readonly closing?: (clientId: string, code: number) => void
}

export const isAttachment = (u: unknown): u is Attachment =>
  typeof u === "object" && u !== null && "d" in u && "t" in u && Array.isArray((u as Attachment).t) &&
  typeof (u as Attachment).d?.clientId === "string"

/**
 * The error for an attachment past workerd's 16 KiB, `state` saying whose
 * ("Connection data is"). One nested too deeply to serialize (its
 * serializer runs out of stack) is past any limit: it is refused the same way.
 */
export const oversized = (attachment: unknown, state: string): PayloadTooLarge | undefined => {
  let size: number
  try {
    size = utf8Length(JSON.stringify(attachment))
  } catch (error) {
    if (!(error instanceof RangeError)) throw error
    size = Number.POSITIVE_INFINITY
  }
  if (size <= maxAttachmentBytes) return undefined
  return new PayloadTooLarge({
    size,
    limit: maxAttachmentBytes,
    message: size === Number.POSITIVE_INFINITY
      ? `${state} nested too deeply to store; the limit is ${maxAttachmentBytes} bytes`
      : `${state} ${size} bytes; the limit is ${maxAttachmentBytes}`
  })
}

const settled: Promise<void> = Promise.resolve()
const noTopics: ReadonlyArray<string> = []
const ignore = (): void => {}

/** An invalid outbound payload is a server bug, not the client's: it fails the sender. */
export const outboundError = (message: string): Error => new Error(`durable-ws: outbound ${message}`)

/**
 * One open connection of one instance, rebuilt from its attachment after a
 * wake. Holds the in-memory parts that need not survive hibernation: the
 * queue that keeps its messages in order, its Effect context, and the
 * flood bookkeeping of its rate limit.
 */
/** An rpc whose reply is still due after its handler returned. */
export interface AwaitingReply {
  revoke(): void
  readonly record: number | undefined
}

export class LiveConnection {
  /** Handlers of this connection run one after another, in arrival order. */
  private tail: Promise<void> = settled
  private running = 0
  closed = false
  /**
   * Requests whose handler returned and that still wait for their reply:
   * forgotten when the socket closes. Made by the first such request: most
   * connections never have one.
   */
  awaitingReplies: Set<AwaitingReply> | undefined = undefined
  /** Closed by the server for flooding: frames still in flight are dropped. */
  cutOff = false
  /** Resumed, and its replay not sent yet: it receives no live publish until then. */
  resuming = false
  /** Closed because its session was resumed on a newer socket. */
  replaced = false
  /**
   * Opened by a resume of its session. Only such a socket can carry a
   * resend; on any other, every rpc request is new.
   */
  fromResume = false
  /** When a presence request of this connection was last answered (requests are throttled). */
  presenceAnsweredAt = Number.NEGATIVE_INFINITY
  /** The scope its messages run in, made on its first message. */
  scope: ScopeEntry | undefined = undefined
  /** The connection's Effect context (instance services plus its `Connection`), built on first use. */
  context: Context.Context<never> | undefined = undefined
  /** Starts a fiber on {@link context}. */
  fork: (<A, E>(effect: Effect.Effect<A, E>) => Fiber.Fiber<A, E>) | undefined = undefined
  // The rate limit's state (see rateLimit.ts): the bucket once a frame was counted,
  // when the current flood began (the first refusal since the bucket was last full),
  // and until when no plain refusal notice is sent (one per token interval).
  bucket: TokenBucket | undefined = undefined
  floodingSince: number | undefined = undefined
  quietUntil = 0
  /** Spanning watermarks carried in this connection's attachment (see {@link Attachment.s}), once it carries one. */
  spanMarks: Map<string, number> | undefined = undefined
  /** The client reads `$batch` frames: a spanning delivery reaches it as one frame. */
  batches = false

  /**
   * The topics as a list (the attachment's, or one copied on each change)
   * until {@link topics} is first asked for: a connection rebuilt after a
   * wake, or one that only subscribes, makes no set of its own.
   */
  private saved: ReadonlyArray<string> | undefined
  private topicSet: Set<string> | undefined

  constructor(
    readonly socket: Socket,
    public data: ConnectionData<Record<string, unknown>>,
    /** Its topics: the list is the connection's own from here on (the set is made from it on first use). */
    topics: ReadonlyArray<string>,
    private readonly store: AttachmentStore,
    readonly savedBucket?: SavedBucket,
    /** Where this connection is in presence, by topic (kept in the attachment). */
    public presence: ReadonlyMap<string, PresenceEntry> = noPresence
  ) {
    this.saved = topics
  }

  /** The topics this connection is subscribed to. */
  get topics(): Set<string> {
    if (this.topicSet !== undefined) return this.topicSet
    const made = new Set(this.saved)
    this.saved = undefined
    return this.topicSet = made
  }

  /** Its topics, for reading only: the list while no set was made. */
  topicNames(): Iterable<string> {
    return this.topicSet ?? this.saved ?? noTopics
  }

  hasTopic(topic: string): boolean {
    return this.topicSet !== undefined ? this.topicSet.has(topic) : this.saved?.includes(topic) === true
  }

  get topicCount(): number {
    return this.topicSet !== undefined ? this.topicSet.size : this.saved?.length ?? 0
  }

  /**
   * Adds a topic it does not have (see {@link hasTopic}), written to the
   * attachment first: past the attachment's limit nothing changes and the
   * error is returned. The new list is made once, for both.
   */
  addTopic(topic: string): PayloadTooLarge | undefined {
    const next = [...this.topicNames(), topic]
    const tooLarge = this.persist(this.data, next)
    if (tooLarge !== undefined) return tooLarge
    if (this.topicSet !== undefined) this.topicSet.add(topic)
    else this.saved = next
    return undefined
  }

  get clientId(): string {
    return this.data.clientId
  }

  /**
   * Set while an outbound payload is being validated by an asynchronous
   * validator: every later frame for this socket waits behind it, so frames
   * still arrive in the order they were sent.
   */
  private held: Promise<void> | undefined = undefined

  /** Sends a frame; false when the socket is gone (a closed peer never breaks a fan-out). */
  sendFrame(frame: string): boolean {
    if (this.collected !== undefined) {
      this.collected.push(frame)
      return true
    }
    if (this.held === undefined) return this.write(frame)
    void this.hold(Promise.resolve(frame))
    return true
  }

  /**
   * Runs `f` with the frames this connection would write meanwhile kept
   * aside, and returns them: the caller sends its own frame first, then
   * these (an `onError` hook's sends follow the error frame it decided on).
   */
  collect<A>(f: () => A): { readonly result: A; readonly frames: ReadonlyArray<string> } {
    const outer = this.collected
    const frames: Array<string> = []
    this.collected = frames
    try {
      return { result: f(), frames }
    } finally {
      this.collected = outer
    }
  }

  private collected: Array<string> | undefined = undefined

  private write(frame: string): boolean {
    try {
      this.socket.send(frame)
      return true
    } catch {
      return false
    }
  }

  /** Queues a frame that is still being built behind every frame queued before it. */
  private hold(frame: Promise<string | undefined>): Promise<void> {
    // Marked handled at once: a rejection reaches the caller through `sent`, not as an unhandled one.
    frame.catch(ignore)
    const sent = (this.held ?? settled).then(() => frame).then((text) => {
      if (text !== undefined) this.write(text)
    })
    const link = sent.then(ignore, ignore)
    this.held = link
    void link.then(() => {
      if (this.held === link) this.held = undefined
    })
    return sent
  }

  /** Writes the attachment, refusing (and keeping the old one) past workerd's 16 KiB. */
  persist(
    data: ConnectionData<Record<string, unknown>> = this.data,
    topics: Iterable<string> = this.topicNames(),
    presence: ReadonlyMap<string, PresenceEntry> = this.presence
  ): PayloadTooLarge | undefined {
    // A bucket restored after a wake but not used yet is carried over, never dropped.
    const bucket = this.bucket?.state() ?? this.savedBucket
    const p = savedPresence(presence)
    // A list is never changed in place (a new one replaces it), so one given is stored as it is.
    const t = Array.isArray(topics) ? topics as ReadonlyArray<string> : Array.from(topics)
    const base: Attachment = bucket === undefined ? { d: data, t } : { d: data, t, r: bucket }
    const s = savedSpanMarks(this.spanMarks)
    const withPresence: Attachment = p === undefined ? base : { ...base, p }
    const withMarks: Attachment = s === undefined ? withPresence : { ...withPresence, s }
    const attachment: Attachment = this.batches ? { ...withMarks, b: 1 } : withMarks
    const tooLarge = oversized(attachment, "Connection state would be")
    if (tooLarge !== undefined) return tooLarge
    this.store.write(this.socket, attachment)
    if (bucket !== undefined) this.bucket?.markSaved(bucket)
    return undefined
  }

  /**
   * Encodes a typed message; an invalid outbound payload is a server bug, so
   * it throws. With an asynchronous validator the frame is a Promise, which
   * rejects for an invalid payload.
   */
  encode(
    message: MessageSchema,
    payload: unknown,
    options: SendOptions | undefined,
    correlationId?: string
  ): string | Promise<string> {
    const encoded = encodePayload(message, payload)
    const extra = options?.meta
    const timestamp = turnTime ?? Date.now()
    if (isPendingResult(encoded)) {
      return encoded.then((result) => {
        if (!result.ok) throw outboundError(result.error.message)
        return stamped(message.type, result.value, timestamp, extra, correlationId)
      })
    }
    if (!encoded.ok) throw outboundError(encoded.error.message)
    return stamped(message.type, encoded.value, timestamp, extra, correlationId)
  }

  /**
   * Sends a frame that may still be on its way from a validator: then every
   * later frame waits behind it, a Promise is returned (rejecting when the
   * frame could not be built), and the frame is dropped if `sender` has been
   * revoked meanwhile (its handler ran past its deadline). `sent` sees each
   * frame that went out.
   */
  sendEncoded(
    frame: string | Promise<string>,
    sender?: { readonly revoked: boolean },
    sent?: (frame: string) => void
  ): Promise<void> | undefined {
    if (typeof frame === "string") {
      // `sent` first: a write it makes (the reply cache) is then not behind a frame already out.
      sent?.(frame)
      this.sendFrame(frame)
      return undefined
    }
    return this.hold(frame.then((text) => {
      if (sender?.revoked === true) return undefined
      sent?.(text)
      return text
    }))
  }

  /** Sends a typed message: {@link encode}, then {@link sendEncoded}. */
  send(
    message: MessageSchema,
    payload: unknown,
    options: SendOptions | undefined,
    sender?: { readonly revoked: boolean }
  ): Promise<void> | undefined {
    return this.sendEncoded(this.encode(message, payload, options), sender)
  }

  /** Merges into the connection data; past 16 KiB the old data is kept and the error returned. */
  assignData(partial: Readonly<Record<string, unknown>>): PayloadTooLarge | undefined {
    const next = mergeData(this.data, partial)
    const tooLarge = this.persist(next)
    if (tooLarge === undefined) this.data = next
    return tooLarge
  }

  /**
   * Published frames held back while a resume's replay is sent: they
   * follow it, in order, once {@link releasePublished} is called.
   */
  private heldPublished: Array<string> | undefined = undefined

  holdPublished(): void {
    this.heldPublished = []
  }

  releasePublished(): void {
    const held = this.heldPublished
    this.heldPublished = undefined
    if (held !== undefined) for (const frame of held) this.sendFrame(frame)
  }

  /** Sends a published frame (held back during a replay); false when the socket is gone. */
  deliver(frame: string): boolean {
    if (this.heldPublished === undefined) return this.sendFrame(frame)
    this.heldPublished.push(frame)
    return true
  }

  close(code?: number, reason?: string): void {
    // A close the server starts (not one it answers): the store hears of it first.
    if (!this.closed && code !== undefined) this.store.closing?.(this.clientId, code)
    try {
      this.socket.close(code, reason)
    } catch {
      // already closing: nothing left to do
    }
  }

  /** How many of this connection's tasks are waiting or running. */
  get pending(): number {
    return this.running
  }

  /**
   * Runs `task` after every earlier task of this connection has settled; an
   * idle connection runs it at once, so a synchronous handler costs no
   * promise at all. Tasks never reject.
   */
  enqueue(task: () => Promise<void> | undefined): Promise<void> {
    if (this.running === 0) return this.started(task())
    return this.track(this.tail.then(task))
  }

  /** Whether nothing of this connection's is waiting or running: a task may then run at once. */
  get idle(): boolean {
    return this.running === 0
  }

  /** A task of an idle connection ran: what it still does, if anything, is what the next one waits for. */
  started(result: Promise<void> | undefined): Promise<void> {
    return result === undefined ? settled : this.track(result)
  }

  private track(work: Promise<void>): Promise<void> {
    this.running++
    const tail = work.then(() => {
      // Once idle, the connection holds no promise of its own until its next task.
      if (--this.running === 0) this.tail = settled
    })
    this.tail = tail
    return tail
  }
}

/**
 * While the synchronous part of handling a frame runs, the time the frame
 * arrived: what is sent meanwhile is stamped with it instead of reading the
 * clock again (in workerd the clock stands still until the next I/O). Sends
 * after the handler's first wait read the clock.
 */
let turnTime: number | undefined = undefined

/** The synchronous part of handling a frame that arrived at `time` begins; returns what {@link endTurn} restores. */
export const beginTurn = (time: number): number | undefined => {
  const outer = turnTime
  turnTime = time
  return outer
}

export const endTurn = (outer: number | undefined): void => {
  turnTime = outer
}

/** A server frame: its meta is the timestamp, the caller's own meta, and an rpc answer's correlationId. */
export const stamped = (
  type: string,
  payload: unknown,
  timestamp: number,
  extra: Readonly<Record<string, unknown>> | undefined,
  correlationId: string | undefined
): string =>
  extra === undefined
    ? encodeStampedFrame(type, payload, timestamp, correlationId)
    : encodeFrame(type, payload, correlationId === undefined ? { timestamp, ...extra } : { timestamp, ...extra, correlationId })

/**
 * `send` as an Effect, for the services. An asynchronous validator is
 * waited for; interrupted meanwhile (a deadline), the frame is not sent.
 */
export const sendEffect = (
  connection: LiveConnection,
  message: MessageSchema,
  payload: unknown,
  options: SendOptions | undefined
): Effect.Effect<void> =>
  fiberless(() => {
    const frame = connection.encode(message, payload, options)
    // The common case, a frame encoded synchronously, goes out at once and allocates nothing more.
    if (typeof frame === "string") {
      connection.sendFrame(frame)
      return Effect.void
    }
    let interrupted: AbortSignal | undefined
    const sent = connection.sendEncoded(frame, {
      get revoked() {
        return interrupted?.aborted === true
      }
    })
    if (sent === undefined) return Effect.void
    return Effect.promise((signal) => {
      interrupted = signal
      return sent
    })
  })

const live = Symbol.for("durable-ws/LiveConnection")

type Bound<S> = S & { readonly [live]: LiveConnection }

/** Ties a `Connection` service value to the live connection behind it. */
export const bindService = <S extends object>(service: S, connection: LiveConnection): S => {
  Object.defineProperty(service, live, { value: connection })
  return service
}

/** The live connection behind a `Connection` service value, if the engine made it. */
export const liveConnectionOf = (service: object): LiveConnection | undefined => (service as Bound<object>)[live]
