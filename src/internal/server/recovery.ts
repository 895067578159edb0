/**
 * Resumable delivery (SPEC §11): sessions, the publish log and the reply
 * cache of one instance, kept in the object's SQLite so they outlive
 * evictions and restarts.
 *
 * SQLite writes inside a Durable Object are synchronous and held behind the
 * output gate, so a publish is appended before its frame can leave, and a
 * replay read in one synchronous go cannot interleave with a publish: that
 * is what makes the cut between replayed and live frames clean. Nothing
 * here takes the object's alarm (it belongs to the application): expiry is
 * checked when a session is used and whenever the log is pruned.
 */
import { CloseCodes, isTerminalCloseCode } from "../../CloseCodes"
import type { ConnectionData } from "../../Connection"
import { encodeFrame, encodeFrameWithJson, parseResume, utf8Length } from "../../Protocol"
import type { SpannedEntry } from "../../SpanningTopic"
import type { SavedBucket } from "./rateLimit"
import { isSavedBucket } from "./rateLimit"

export interface ResolvedRecovery {
  readonly maxMessages: number
  readonly maxAgeMs: number
  readonly sessionTtlMs: number
  readonly replyCacheSize: number
  readonly maxReplayBytes: number
  readonly maxSessions: number
  readonly identity: (authData: unknown) => string
  readonly resumeBurst: number
  readonly resumeIntervalMs: number
}

/** JSON with object keys sorted at every level: the same data always gives the same text. */
export const canonicalJson = (value: unknown): string => {
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item ?? null)).join(",")}]`
  if (typeof value === "object" && value !== null) {
    const record = value as Record<string, unknown>
    const keys = Object.keys(record).filter((key) => record[key] !== undefined).sort()
    return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalJson(record[key])}`).join(",")}}`
  }
  return JSON.stringify(value) ?? "null"
}

/** Server-side close of a socket whose session was resumed on a newer one: terminal, so the two do not fight. */
export const replacedCloseCode = CloseCodes.Replaced

/** Whether a server close with `code` ends the session: terminal codes, except 4409 (the session lives on). */
export const endsSession = (code: number): boolean => isTerminalCloseCode(code) && code !== replacedCloseCode

type AnyData = ConnectionData<Record<string, unknown>>

/** What the client must be told on a fresh or resumed socket. */
export interface Resumption {
  /** The token the `$session` frame carries (new on every socket). */
  readonly token: string
  readonly tokenHash: string
  /**
   * Set when the credentials and identity were right. Nothing is written
   * until {@link take} is called: a resume refused afterwards (a full room,
   * oversized data) leaves the token valid.
   */
  readonly session: ResumedSession | undefined
  /** Takes the session over (the new token replaces the old one); a no-op without a session. */
  readonly take: () => void
  /** Whether the client asked to resume (it then gets a `$resumed` frame). */
  readonly requested: boolean
  /** Set when the credentials were right but the session resumed too often: refused with 429, token kept. */
  readonly retryAfterMs?: number
  /** Who the socket belongs to (stored with a fresh session). */
  readonly identity: string
}

export interface ResumedSession {
  readonly id: string
  readonly data: AnyData
  /** Each subscribed topic with the log position at which it was subscribed. */
  readonly topics: ReadonlyMap<string, number>
  /** The client's watermark: the last seq it received. */
  readonly after: number
  /** The rate-limit bucket as the session's last socket left it: a resume never refills it. */
  readonly bucket: SavedBucket | undefined
}

const ignore = (): void => {}

const base64url = (bytes: Uint8Array): string => {
  let binary = ""
  for (const byte of bytes) binary += String.fromCharCode(byte)
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")
}

/** 192 random bits: a session token. */
export const newToken = (): string => base64url(crypto.getRandomValues(new Uint8Array(24)))

export const hashToken = async (token: string): Promise<string> =>
  base64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token))))

/** Compares two hashes without stopping at the first difference. */
const sameHash = (a: string, b: string): boolean => {
  let difference = a.length ^ b.length
  for (let i = 0; i < a.length; i++) difference |= a.charCodeAt(i) ^ b.charCodeAt(i % Math.max(1, b.length))
  return difference === 0
}

// Compared against when no session matches, so an unknown id costs what a wrong token does.
const absentHash = "A".repeat(43)

/**
 * Reads a resume parameter and prepares the socket's credentials (the
 * hashing is the only part that yields). The returned `claim` is
 * synchronous: called with nothing in between it and the socket's
 * acceptance, it takes the session over or answers that there is none.
 */
export const prepareResume = async (
  store: RecoveryStore,
  value: string | null,
  identity: string
): Promise<() => Resumption> => {
  const parsed = parseResume(value)
  const token = newToken()
  // A malformed value is hashed too, so it takes as long as a wrong token.
  const [tokenHash, presentedHash] = await Promise.all([hashToken(token), hashToken(parsed?.token ?? value ?? token)])
  return () => {
    const claimed = parsed === undefined
      ? undefined
      : store.claim(parsed.sessionId, presentedHash, parsed.after, tokenHash, identity)
    const base = { token, tokenHash, requested: value !== null, identity }
    if (claimed === undefined) return { ...base, session: undefined, take: ignore }
    if (typeof claimed === "number") return { ...base, session: undefined, take: ignore, retryAfterMs: claimed }
    return { ...base, session: claimed.session, take: claimed.take }
  }
}

/** The identity of an upgrade's `authenticate` result (`undefined`: there is no `authenticate`). */
export const identityOf = (config: ResolvedRecovery, authData: unknown): string =>
  authData === undefined ? "" : config.identity(authData)

/**
 * A digest of an rpc payload: a resend must carry the same payload to be
 * answered from the cache. Not cryptographic: a collision only gets a
 * client its own session's reply.
 */
export const payloadDigest = (payload: unknown): string => {
  const text = payload === undefined ? "" : JSON.stringify(payload)
  let h1 = 0xdeadbeef
  let h2 = 0x41c6ce57
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    h1 = Math.imul(h1 ^ c, 2654435761)
    h2 = Math.imul(h2 ^ c, 1597334677)
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909)
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909)
  return `${(h2 >>> 0).toString(36)}.${(h1 >>> 0).toString(36)}.${text.length}`
}

interface SessionRow {
  readonly [key: string]: SqlStorageValue
  readonly token: string
  readonly identity: string
  readonly data: string
  readonly topics: string
  readonly bucket: string | null
  readonly closed_at: number | null
  readonly resumes: number
  readonly resumed_at: number
}

interface RequestRow {
  readonly [key: string]: SqlStorageValue
  readonly id: number
  readonly type: string
  readonly digest: string
  readonly frame: string | null
  readonly prior: number
}

/**
 * What the record of an rpc request says to do with it:
 * run it (recorded under `record`), answer it with a cached `frame`, or,
 * for a resend whose handler started on an earlier socket and has not
 * answered, `started` (still running here, or cut off by a restart).
 */
export type RequestRecord =
  | { readonly _tag: "run"; readonly record: number }
  | { readonly _tag: "cached"; readonly frame: string }
  | { readonly _tag: "started"; readonly record: number }

/** Sessions deleted per sweep: a backlog is worked off a batch per event, never at once. */
const sweepBatch = 64

/** Log entries pruned for age per call, for the same reason. */
const pruneBatch = 512

const parseTopics = (json: string): Map<string, number> => {
  const topics = new Map<string, number>()
  const parsed = JSON.parse(json) as Record<string, number>
  for (const topic of Object.keys(parsed)) topics.set(topic, parsed[topic]!)
  return topics
}

const topicsJson = (topics: ReadonlyMap<string, number>): string => {
  const out: Record<string, number> = {}
  for (const [topic, since] of topics) Object.defineProperty(out, topic, { value: since, enumerable: true })
  return JSON.stringify(out)
}

/** Where a chunked replay stands: read from `after` up to `end` (the position when it began). */
export interface ReplayCursor {
  readonly session: ResumedSession
  /** Each topic with the seq after which it is replayed. */
  readonly from: ReadonlyMap<string, number>
  readonly names: string
  readonly end: number
  after: number
  bytes: number
  count: number
  truncated: boolean
}

export const replayDone = (cursor: ReplayCursor): boolean => cursor.truncated || cursor.after >= cursor.end

/** A chunk of a replay: at most this many log rows, or about this many bytes, between two yields. */
const replayChunkRows = 64
const replayChunkBytes = 16 * 1024

/**
 * The SQLite side of recovery for one instance. Tables are created on first
 * use and prefixed `_dws_` so they never meet the application's own.
 */
/** An rpc request not recorded yet: see {@link RecoveryStore.recordFresh}. */
export interface FreshRequest {
  readonly session: string
  readonly correlationId: string
  readonly type: string
  readonly digest: string
}

export class RecoveryStore {
  private ready = false
  private position = 0
  private appendsSincePrune = new Map<string, number>()
  private nextAgePrune = 0
  /** No closed session expires before this time: until then a sweep has nothing to do. */
  private nextSweep = 0
  private sessionCount = 0
  private readonly pruneEvery: number
  private readonly recordsSinceTrim = new Map<string, number>()
  private readonly trimEvery: number

  constructor(
    private readonly sql: SqlStorage,
    readonly config: ResolvedRecovery,
    /** The clientIds with a socket still open (after a restart: none). */
    private readonly liveClientIds: () => Iterable<string>
  ) {
    this.pruneEvery = Math.max(1, Math.min(100, Math.floor(config.maxMessages / 10)))
    this.trimEvery = Math.max(1, Math.floor(config.replyCacheSize / 10))
  }

  private init(): void {
    if (this.ready) return
    this.ready = true
    this.dropOlderFormats()
    this.sql.exec(
      `CREATE TABLE IF NOT EXISTS _dws_log (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, at INTEGER NOT NULL, origin TEXT, frame TEXT NOT NULL, span INTEGER);
       CREATE INDEX IF NOT EXISTS _dws_log_topic ON _dws_log (topic, seq);
       CREATE TABLE IF NOT EXISTS _dws_position (id INTEGER PRIMARY KEY CHECK (id = 0), seq INTEGER NOT NULL);
       CREATE TABLE IF NOT EXISTS _dws_pruned (topic TEXT PRIMARY KEY, seq INTEGER NOT NULL, span INTEGER);
       CREATE TABLE IF NOT EXISTS _dws_sessions (id TEXT PRIMARY KEY, token TEXT NOT NULL, identity TEXT NOT NULL, data TEXT NOT NULL, topics TEXT NOT NULL, bucket TEXT, closed_at INTEGER, resumes REAL NOT NULL, resumed_at INTEGER NOT NULL);
       CREATE INDEX IF NOT EXISTS _dws_sessions_closed ON _dws_sessions (closed_at);
       CREATE TABLE IF NOT EXISTS _dws_replies (id INTEGER PRIMARY KEY, session TEXT NOT NULL, correlation TEXT NOT NULL, type TEXT NOT NULL, digest TEXT NOT NULL, frame TEXT, prior INTEGER NOT NULL);
       CREATE UNIQUE INDEX IF NOT EXISTS _dws_replies_request ON _dws_replies (session, correlation);`
    )
    this.addSpanColumns()
    const logged = this.sql.exec<{ seq: number | null }>("SELECT MAX(seq) AS seq FROM _dws_log").one().seq ?? 0
    const saved = this.sql.exec<{ seq: number }>("SELECT seq FROM _dws_position WHERE id = 0").toArray()[0]?.seq ?? 0
    this.position = Math.max(logged, saved)
    // A session still marked open without a socket lost it without a close event (a restart):
    // its time to live starts now.
    this.sql.exec(
      "UPDATE _dws_sessions SET closed_at = ? WHERE closed_at IS NULL AND id NOT IN (SELECT value FROM json_each(?))",
      Date.now(),
      JSON.stringify(Array.from(this.liveClientIds()))
    )
    this.sessionCount = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM _dws_sessions").one().n
  }

  /**
   * Sessions and reply caches written before sessions were bound to an
   * identity, and requests to a payload digest, cannot be honoured safely:
   * they are dropped (their clients start fresh sessions), never read in
   * the wrong shape. The log keeps its shape and stays.
   */
  private dropOlderFormats(): void {
    const tables = this.sql.exec<{ name: string; sql: string }>(
      "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name IN ('_dws_sessions', '_dws_replies')"
    ).toArray()
    for (const { name, sql } of tables) {
      const current = name === "_dws_sessions" ? /\bidentity\b/.test(sql) : /\bdigest\b/.test(sql)
      if (!current) this.sql.exec(`DROP TABLE ${name}`)
    }
  }

  /**
   * A log written before spanning topics kept no home `seq`: the column is
   * added (those rows have none), the rows stay.
   */
  private addSpanColumns(): void {
    const tables = this.sql.exec<{ name: string; sql: string }>(
      "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name IN ('_dws_log', '_dws_pruned')"
    ).toArray()
    for (const { name, sql } of tables) if (!/\bspan\b/.test(sql)) this.sql.exec(`ALTER TABLE ${name} ADD COLUMN span INTEGER`)
  }

  /**
   * The last home `seq` of spanning topic `topic` logged here (see span.ts):
   * the edge's watermark, read from the log itself, or from the prune
   * record once the log's rows of the topic are gone.
   */
  spanMark(topic: string): number | undefined {
    this.init()
    const logged = this.sql.exec<{ span: number }>(
      "SELECT span FROM _dws_log WHERE topic = ? AND span IS NOT NULL ORDER BY seq DESC LIMIT 1",
      topic
    ).toArray()[0]?.span
    const pruned = this.sql.exec<{ span: number | null }>("SELECT span FROM _dws_pruned WHERE topic = ?", topic)
      .toArray()[0]?.span ?? undefined
    return logged === undefined ? pruned : pruned === undefined ? logged : Math.max(logged, pruned)
  }

  /** The seq of the last publish in this object (0 before the first). */
  current(): number {
    this.init()
    return this.position
  }

  /**
   * Logs one publish and returns its frame, carrying `meta.topic` and
   * `meta.seq`. `origin` is the publisher when it excluded itself, so a
   * replay to it skips the entry as the live fan-out did.
   */
  append(
    topic: string,
    type: string,
    payload: unknown,
    meta: Readonly<Record<string, unknown>> | undefined,
    origin: string | undefined
  ): string {
    return this.insert(topic, (logged) => encodeFrame(type, payload, logged), meta, origin, undefined)
  }

  /** Logs an entry of a spanning topic, as {@link append} does, with the home's `seq` beside it. */
  appendSpanned(topic: string, entry: SpannedEntry): string {
    return this.insert(
      topic,
      (logged) => encodeFrameWithJson(entry.type, entry.payloadJson, logged),
      entry.meta,
      entry.origin,
      entry.seq
    )
  }

  private insert(
    topic: string,
    encode: (meta: Readonly<Record<string, unknown>>) => string,
    meta: Readonly<Record<string, unknown>> | undefined,
    origin: string | undefined,
    span: number | undefined
  ): string {
    this.init()
    const seq = this.position + 1
    const frame = encode(meta === undefined ? { topic, seq } : { ...meta, topic, seq })
    const now = Date.now()
    this.sql.exec(
      "INSERT INTO _dws_log (seq, topic, at, origin, frame, span) VALUES (?, ?, ?, ?, ?, ?)",
      seq,
      topic,
      now,
      origin ?? null,
      frame,
      span ?? null
    )
    this.position = seq
    const appended = (this.appendsSincePrune.get(topic) ?? 0) + 1
    if (appended >= this.pruneEvery) {
      this.appendsSincePrune.delete(topic)
      this.pruneTopic(topic)
    } else {
      this.appendsSincePrune.set(topic, appended)
    }
    if (now >= this.nextAgePrune) this.prune(now)
    this.sweep(now)
    return frame
  }

  private markPruned(topic: string, seq: number, span: number | null): void {
    this.sql.exec(
      `INSERT INTO _dws_pruned (topic, seq, span) VALUES (?, ?, ?) ON CONFLICT (topic) DO UPDATE
         SET seq = MAX(seq, excluded.seq), span = COALESCE(MAX(span, excluded.span), span, excluded.span)`,
      topic,
      seq,
      span
    )
  }

  private savePosition(): void {
    // The log may be pruned down to nothing: the position must not go back with it.
    this.sql.exec(
      "INSERT INTO _dws_position (id, seq) VALUES (0, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq",
      this.position
    )
  }

  private pruneTopic(topic: string): void {
    const last = this.sql.exec<{ seq: number; span: number | null }>(
      "SELECT seq, span FROM _dws_log WHERE topic = ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
      topic,
      this.config.maxMessages
    ).toArray()[0]
    if (last === undefined) return
    this.savePosition()
    this.sql.exec("DELETE FROM _dws_log WHERE topic = ? AND seq <= ?", topic, last.seq)
    this.markPruned(topic, last.seq, last.span)
  }

  /**
   * Drops log entries past `maxAgeMs`, oldest first, at most one batch per
   * call; runs a few times per `maxAgeMs`, and on the next publish again
   * while a backlog remains. Entries are appended in time order, so the
   * old ones are a prefix of the log: no step scans the rest of it.
   */
  prune(now: number = Date.now()): void {
    this.init()
    this.nextAgePrune = now + Math.max(1000, Math.floor(this.config.maxAgeMs / 4))
    const cutoff = now - this.config.maxAgeMs
    const oldest = this.sql.exec<{ seq: number; at: number }>(
      "SELECT seq, at FROM _dws_log ORDER BY seq LIMIT ?",
      pruneBatch
    ).toArray()
    let cut: number | undefined
    for (const { seq, at } of oldest) {
      if (at >= cutoff) break
      cut = seq
    }
    if (cut === undefined) return
    const old = this.sql.exec<{ topic: string; seq: number; span: number | null }>(
      "SELECT topic, MAX(seq) AS seq, MAX(span) AS span FROM _dws_log WHERE seq <= ? GROUP BY topic",
      cut
    ).toArray()
    this.savePosition()
    this.sql.exec("DELETE FROM _dws_log WHERE seq <= ?", cut)
    for (const { topic, seq, span } of old) this.markPruned(topic, seq, span)
    // A full batch was old: more may be, for the next publish.
    if (cut === oldest.at(-1)?.seq && oldest.length === pruneBatch) this.nextAgePrune = now
  }

  /**
   * Deletes sessions past their time to live, at most one batch per call
   * (upgrades, closes and publishes call it), and only when one is due: a
   * backlog of any size costs each event the same few statements.
   */
  sweep(now: number = Date.now()): void {
    this.init()
    if (now < this.nextSweep) return
    const oldest = this.sql.exec<{ id: string; closed_at: number }>(
      "SELECT id, closed_at FROM _dws_sessions WHERE closed_at IS NOT NULL ORDER BY closed_at LIMIT ?",
      sweepBatch
    ).toArray()
    const expiredBefore = now - this.config.sessionTtlMs
    this.nextSweep = Number.POSITIVE_INFINITY
    for (const { id, closed_at } of oldest) {
      if (closed_at >= expiredBefore) {
        this.nextSweep = closed_at + this.config.sessionTtlMs + 1
        return
      }
      this.endSession(id)
    }
    // A full batch of expired sessions: more may be waiting for the next event.
    if (oldest.length === sweepBatch) this.nextSweep = now
  }

  // -- Sessions ---------------------------------------------------------------

  /** A fresh session; past `maxSessions` the longest-closed ones make room. */
  createSession(id: string, tokenHash: string, identity: string, data: AnyData): void {
    this.init()
    const now = Date.now()
    this.sweep(now)
    this.sql.exec(
      "INSERT INTO _dws_sessions (id, token, identity, data, topics, closed_at, resumes, resumed_at) VALUES (?, ?, ?, ?, '{}', NULL, ?, ?)",
      id,
      tokenHash,
      identity,
      JSON.stringify(data),
      this.config.resumeBurst,
      now
    )
    this.sessionCount++
    const excess = this.sessionCount - this.config.maxSessions
    if (excess <= 0) return
    const evicted = this.sql.exec<{ id: string }>(
      "SELECT id FROM _dws_sessions WHERE closed_at IS NOT NULL ORDER BY closed_at LIMIT ?",
      Math.min(excess, sweepBatch)
    ).toArray()
    for (const row of evicted) this.endSession(row.id)
  }

  /**
   * Takes over a session when the resume credentials and the identity are
   * right: the token is replaced by the new one, so a credential works once.
   * Every failure (unknown, ended, expired, wrong token, another identity,
   * a watermark from the future) is the same `undefined`; a number is the
   * milliseconds to wait when the session resumed too often (its token is
   * then kept).
   */
  claim(
    sessionId: string,
    presentedHash: string,
    after: number,
    newHash: string,
    identity: string
  ): { readonly session: ResumedSession; readonly take: () => void } | number | undefined {
    this.init()
    const now = Date.now()
    this.sweep(now)
    const row = this.sql.exec<SessionRow>(
      "SELECT token, identity, data, topics, bucket, closed_at, resumes, resumed_at FROM _dws_sessions WHERE id = ?",
      sessionId
    ).toArray()[0]
    const tokenRight = sameHash(presentedHash, row?.token ?? absentHash)
    const identityRight = row?.identity === identity
    if (row === undefined || !tokenRight || !identityRight || after > this.position) return undefined
    if (row.closed_at !== null && now - row.closed_at > this.config.sessionTtlMs) {
      this.endSession(sessionId)
      return undefined
    }
    const { resumeBurst, resumeIntervalMs } = this.config
    const allowance = Math.min(resumeBurst, row.resumes + Math.max(0, now - row.resumed_at) / resumeIntervalMs)
    if (allowance < 1) return Math.ceil((1 - allowance) * resumeIntervalMs)
    const bucket: unknown = row.bucket === null ? undefined : JSON.parse(row.bucket)
    const session: ResumedSession = {
      id: sessionId,
      data: JSON.parse(row.data) as AnyData,
      topics: parseTopics(row.topics),
      after,
      bucket: isSavedBucket(bucket) ? bucket : undefined
    }
    const take = () => {
      this.sql.exec(
        "UPDATE _dws_sessions SET token = ?, closed_at = NULL, resumes = ?, resumed_at = ? WHERE id = ?",
        newHash,
        allowance - 1,
        now,
        sessionId
      )
      // Requests recorded so far came on an earlier socket: from now on, the same one again is a resend.
      this.sql.exec("UPDATE _dws_replies SET prior = 1 WHERE session = ?", sessionId)
    }
    return { session, take }
  }

  /**
   * Keeps the session's data and subscriptions current (called whenever the
   * connection's attachment changes, never per message). A topic new to the
   * session remembers the position it was subscribed at: a replay never
   * hands it what was published before.
   */
  saveSession(id: string, data: AnyData, topics: ReadonlyArray<string>, bucket: SavedBucket | undefined): void {
    this.init()
    const row = this.sql.exec<{ topics: string }>("SELECT topics FROM _dws_sessions WHERE id = ?", id).toArray()[0]
    if (row === undefined) return
    const before = parseTopics(row.topics)
    const after = new Map<string, number>()
    for (const topic of topics) after.set(topic, before.get(topic) ?? this.position)
    this.sql.exec(
      "UPDATE _dws_sessions SET data = ?, topics = ?, bucket = ? WHERE id = ?",
      JSON.stringify(data),
      topicsJson(after),
      bucket === undefined ? null : JSON.stringify(bucket),
      id
    )
  }

  /** The socket closed without ending the session: it may be resumed for `sessionTtlMs`. */
  closeSession(id: string): boolean {
    this.init()
    const now = Date.now()
    const kept = this.sql.exec("UPDATE _dws_sessions SET closed_at = ? WHERE id = ?", now, id).rowsWritten > 0
    this.nextSweep = Math.min(this.nextSweep, now + this.config.sessionTtlMs + 1)
    this.sweep(now)
    return kept
  }

  /** Ends a session: its token is dead, its rows and reply cache deleted. Unknown: nothing happens. */
  endSession(id: string): boolean {
    this.init()
    const deleted = this.sql.exec("DELETE FROM _dws_sessions WHERE id = ?", id).rowsWritten
    if (deleted === 0) return false
    this.sessionCount -= deleted
    this.recordsSinceTrim.delete(id)
    this.sql.exec("DELETE FROM _dws_replies WHERE session = ?", id)
    return true
  }

  /**
   * Starts a chunked replay of what a resumed session missed on `topics`:
   * each topic from the later of the client's watermark and the position it
   * was subscribed at, up to the current position (what is published from
   * now on reaches the socket live).
   */
  startReplay(session: ResumedSession, topics: Iterable<string>): ReplayCursor {
    this.init()
    const from = new Map<string, number>()
    for (const topic of topics) from.set(topic, Math.max(session.after, session.topics.get(topic) ?? session.after))
    return {
      session,
      from,
      names: JSON.stringify(Array.from(from.keys())),
      end: from.size === 0 ? session.after : this.position,
      after: session.after,
      bytes: 0,
      count: 0,
      truncated: false
    }
  }

  /**
   * The next chunk of a replay, in seq order; empty once it is done. Past
   * `maxReplayBytes` it stops at a message boundary and marks the cursor
   * truncated.
   */
  replayChunk(cursor: ReplayCursor): Array<string> {
    this.init()
    const frames: Array<string> = []
    if (replayDone(cursor)) return frames
    const rows = this.sql.exec<{ seq: number; topic: string; origin: string | null; frame: string }>(
      "SELECT seq, topic, origin, frame FROM _dws_log WHERE seq > ? AND seq <= ? AND topic IN (SELECT value FROM json_each(?)) ORDER BY seq LIMIT ?",
      cursor.after,
      cursor.end,
      cursor.names,
      replayChunkRows
    )
    // Rows are read one by one: a chunk stops at its byte budget without reading further.
    let read = 0
    let chunkBytes = 0
    for (const row of rows) {
      read++
      if (row.seq > cursor.from.get(row.topic)! && row.origin !== cursor.session.id) {
        const size = utf8Length(row.frame)
        if (cursor.bytes + size > this.config.maxReplayBytes) {
          cursor.truncated = true
          return frames
        }
        cursor.bytes += size
        chunkBytes += size
        cursor.count++
        frames.push(row.frame)
      }
      cursor.after = row.seq
      if (chunkBytes >= replayChunkBytes) return frames
    }
    if (read < replayChunkRows) cursor.after = cursor.end
    return frames
  }

  /**
   * The topics of a finished replay that missed entries: pruned after the
   * seq they were replayed from, or, for a truncated replay, with entries
   * left unsent.
   */
  replayGaps(cursor: ReplayCursor): Array<string> {
    this.init()
    const gaps = new Set<string>()
    for (
      const { topic, seq } of this.sql.exec<{ topic: string; seq: number }>(
        "SELECT topic, seq FROM _dws_pruned WHERE topic IN (SELECT value FROM json_each(?))",
        cursor.names
      )
    ) {
      if (seq > cursor.from.get(topic)!) gaps.add(topic)
    }
    if (cursor.truncated) {
      // One indexed probe per topic: the rest of a long log is never scanned.
      for (const [topic, from] of cursor.from) {
        if (gaps.has(topic)) continue
        const left = this.sql.exec(
          "SELECT 1 FROM _dws_log WHERE topic = ? AND seq > ? AND seq <= ? LIMIT 1",
          topic,
          Math.max(cursor.after, from),
          cursor.end
        ).toArray()
        if (left.length > 0) gaps.add(topic)
      }
    }
    return Array.from(gaps)
  }

  // -- Requests and replies ------------------------------------------------------

  /**
   * Records an rpc request before its handler runs. A request with the
   * correlationId, type and payload digest of one that came on an earlier
   * socket of the session is a resend: answered from the cache, or
   * `started` when its handler has not answered. Anything else (another
   * type or payload, or the same request again on the socket that got its
   * answer) is a new request and replaces the old record.
   */
  beginRequest(session: string, correlationId: string, type: string, digest: string): RequestRecord {
    this.init()
    // The common case, a correlationId new to the session, is one statement.
    const inserted = this.sql.exec<{ id: number }>(
      "INSERT INTO _dws_replies (session, correlation, type, digest, frame, prior) VALUES (?, ?, ?, ?, NULL, 0) ON CONFLICT (session, correlation) DO NOTHING RETURNING id",
      session,
      correlationId,
      type,
      digest
    ).toArray()[0]
    if (inserted !== undefined) {
      this.trimReplies(session)
      return { _tag: "run", record: inserted.id }
    }
    const row = this.sql.exec<RequestRow>(
      "SELECT id, type, digest, frame, prior FROM _dws_replies WHERE session = ? AND correlation = ?",
      session,
      correlationId
    ).one()
    if (row.prior === 1 && row.type === type && row.digest === digest) {
      // Answered once on this socket: the same request again is new.
      this.sql.exec("UPDATE _dws_replies SET prior = 0 WHERE id = ?", row.id)
      return row.frame === null ? { _tag: "started", record: row.id } : { _tag: "cached", frame: row.frame }
    }
    this.sql.exec("DELETE FROM _dws_replies WHERE id = ?", row.id)
    const record = this.sql.exec<{ id: number }>(
      "INSERT INTO _dws_replies (session, correlation, type, digest, frame, prior) VALUES (?, ?, ?, ?, NULL, 0) RETURNING id",
      session,
      correlationId,
      type,
      digest
    ).one().id
    this.trimReplies(session)
    return { _tag: "run", record }
  }

  /**
   * Keeps the newest `replyCacheSize` records of a session, trimming once
   * per tenth of that many new records (so up to a tenth more are held
   * between two trims).
   */
  private trimReplies(session: string): void {
    const since = (this.recordsSinceTrim.get(session) ?? 0) + 1
    if (since < this.trimEvery) {
      this.recordsSinceTrim.set(session, since)
      return
    }
    this.recordsSinceTrim.delete(session)
    this.sql.exec(
      "DELETE FROM _dws_replies WHERE session = ? AND id <= (SELECT id FROM _dws_replies WHERE session = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
      session,
      session,
      this.config.replyCacheSize
    )
  }

  /**
   * Records a request that came on a socket whose session was not resumed:
   * no earlier socket sent it, so it is new whatever the cache holds for its
   * correlationId. One statement, carrying its answer when the handler gave
   * it before its synchronous part was over. A request reusing the
   * correlationId of one still in the cache replaces it: SQLite deletes the
   * old row and gives the new one an id after every id the table holds, so
   * it is the session's newest record (the last one a trim removes), and
   * never the old one's id, which an earlier handler still running may
   * answer to.
   */
  recordFresh(request: FreshRequest, frame: string | null): number {
    this.init()
    const { session, correlationId, type, digest } = request
    const id = this.sql.exec<{ id: number }>(
      "INSERT OR REPLACE INTO _dws_replies (session, correlation, type, digest, frame, prior) VALUES (?, ?, ?, ?, ?, 0) RETURNING id",
      session,
      correlationId,
      type,
      digest,
      frame
    ).one().id
    this.trimReplies(session)
    return id
  }

  /** A recorded request got its answer: kept for a resend. */
  storeReply(record: number, frame: string): void {
    this.init()

    this.sql.exec("UPDATE _dws_replies SET frame = ? WHERE id = ?", frame, record)
  }
}

/**
 * The in-memory half of the request record: requests whose handler is
 * still running in this instance, and the sockets of the same session
 * waiting for their answer. A recorded request that is not here was cut
 * off by a restart.
 */
export class PendingReplies {
  private readonly running = new Map<number, Array<(frame: string) => void>>()

  start(record: number): void {
    if (!this.running.has(record)) this.running.set(record, [])
  }

  /** Waits for a running request's answer; false when none is running. */
  wait(record: number, deliver: (frame: string) => void): boolean {
    const waiting = this.running.get(record)
    if (waiting === undefined) return false
    waiting.push(deliver)
    return true
  }

  /** A request that will never be answered here (its socket and session are gone): forgotten. */
  abandon(record: number): void {
    this.running.delete(record)
  }

  finish(record: number, frame: string): void {
    const waiting = this.running.get(record)
    this.running.delete(record)
    if (waiting !== undefined) for (const deliver of waiting) deliver(frame)
  }
}
