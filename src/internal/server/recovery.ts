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
import { CloseCodes } from "../../CloseCodes"
import { encodeFrame, parseResume } from "../../Protocol"
import type { ConnectionData } from "../../Connection"

export interface ResolvedRecovery {
  readonly maxMessages: number
  readonly maxAgeMs: number
  readonly sessionTtlMs: number
  readonly replyCacheSize: number
}

/** Server-side close of a socket whose session was resumed on a newer one: terminal, so the two do not fight. */
export const replacedCloseCode = CloseCodes.Replaced

type AnyData = ConnectionData<Record<string, unknown>>

/** What the client must be told on a fresh or resumed socket. */
export interface Resumption {
  /** The token the `$session` frame carries (new on every socket). */
  readonly token: string
  readonly tokenHash: string
  /** Set when the resume succeeded. */
  readonly session: ResumedSession | undefined
  /** Whether the client asked to resume (it then gets a `$resumed` frame). */
  readonly requested: boolean
}

export interface ResumedSession {
  readonly id: string
  readonly data: AnyData
  /** Each subscribed topic with the log position at which it was subscribed. */
  readonly topics: ReadonlyMap<string, number>
  /** The client's watermark: the last seq it received. */
  readonly after: number
}

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
  value: string | null
): Promise<() => Resumption> => {
  const parsed = parseResume(value)
  const token = newToken()
  // A malformed value is hashed too, so it takes as long as a wrong token.
  const [tokenHash, presentedHash] = await Promise.all([hashToken(token), hashToken(parsed?.token ?? value ?? token)])
  return () => ({
    token,
    tokenHash,
    requested: value !== null,
    session: parsed === undefined ? undefined : store.claim(parsed.sessionId, presentedHash, parsed.after, tokenHash)
  })
}

interface SessionRow {
  readonly [key: string]: SqlStorageValue
  readonly token: string
  readonly data: string
  readonly topics: string
  readonly closed_at: number | null
}

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

/** The log entries and pruned topics a resume hands back. */
export interface Replay {
  readonly frames: ReadonlyArray<string>
  readonly gaps: ReadonlyArray<string>
}

/**
 * The SQLite side of recovery for one instance. Tables are created on first
 * use and prefixed `_dws_` so they never meet the application's own.
 */
export class RecoveryStore {
  private ready = false
  private position = 0
  private appendsSincePrune = new Map<string, number>()
  private nextAgePrune = 0
  private readonly pruneEvery: number

  constructor(
    private readonly sql: SqlStorage,
    readonly config: ResolvedRecovery,
    /** The clientIds with a socket still open (after a restart: none). */
    private readonly liveClientIds: () => Iterable<string>
  ) {
    this.pruneEvery = Math.max(1, Math.min(100, Math.floor(config.maxMessages / 10)))
  }

  private init(): void {
    if (this.ready) return
    this.ready = true
    this.sql.exec(
      `CREATE TABLE IF NOT EXISTS _dws_log (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, at INTEGER NOT NULL, origin TEXT, frame TEXT NOT NULL);
       CREATE INDEX IF NOT EXISTS _dws_log_topic ON _dws_log (topic, seq);
       CREATE TABLE IF NOT EXISTS _dws_position (id INTEGER PRIMARY KEY CHECK (id = 0), seq INTEGER NOT NULL);
       CREATE TABLE IF NOT EXISTS _dws_pruned (topic TEXT PRIMARY KEY, seq INTEGER NOT NULL);
       CREATE TABLE IF NOT EXISTS _dws_sessions (id TEXT PRIMARY KEY, token TEXT NOT NULL, data TEXT NOT NULL, topics TEXT NOT NULL, closed_at INTEGER);
       CREATE TABLE IF NOT EXISTS _dws_replies (id INTEGER PRIMARY KEY, session TEXT NOT NULL, correlation TEXT NOT NULL, frame TEXT NOT NULL);
       CREATE INDEX IF NOT EXISTS _dws_replies_key ON _dws_replies (session, correlation);`
    )
    const logged = this.sql.exec<{ seq: number | null }>("SELECT MAX(seq) AS seq FROM _dws_log").one().seq ?? 0
    const saved = this.sql.exec<{ seq: number }>("SELECT seq FROM _dws_position WHERE id = 0").toArray()[0]?.seq ?? 0
    this.position = Math.max(logged, saved)
    // A session still marked open without a socket lost it without a close event (a restart):
    // its time to live starts now.
    const live = new Set(this.liveClientIds())
    const now = Date.now()
    for (const { id } of this.sql.exec<{ id: string }>("SELECT id FROM _dws_sessions WHERE closed_at IS NULL").toArray()) {
      if (!live.has(id)) this.sql.exec("UPDATE _dws_sessions SET closed_at = ? WHERE id = ?", now, id)
    }
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
    this.init()
    const seq = this.position + 1
    const frame = encodeFrame(type, payload, meta === undefined ? { topic, seq } : { ...meta, topic, seq })
    const now = Date.now()
    this.sql.exec("INSERT INTO _dws_log (seq, topic, at, origin, frame) VALUES (?, ?, ?, ?, ?)", seq, topic, now, origin ?? null, frame)
    this.position = seq
    const appended = (this.appendsSincePrune.get(topic) ?? 0) + 1
    if (appended >= this.pruneEvery) {
      this.appendsSincePrune.delete(topic)
      this.pruneTopic(topic)
    } else {
      this.appendsSincePrune.set(topic, appended)
    }
    if (now >= this.nextAgePrune) this.prune(now)
    return frame
  }

  private markPruned(topic: string, seq: number): void {
    this.sql.exec(
      "INSERT INTO _dws_pruned (topic, seq) VALUES (?, ?) ON CONFLICT (topic) DO UPDATE SET seq = MAX(seq, excluded.seq)",
      topic,
      seq
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
    const cut = this.sql.exec<{ seq: number }>(
      "SELECT seq FROM _dws_log WHERE topic = ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
      topic,
      this.config.maxMessages
    ).toArray()[0]?.seq
    if (cut === undefined) return
    this.savePosition()
    this.sql.exec("DELETE FROM _dws_log WHERE topic = ? AND seq <= ?", topic, cut)
    this.markPruned(topic, cut)
  }

  /** Drops entries past `maxAgeMs` and sessions past their time to live; runs a few times per `maxAgeMs`. */
  prune(now: number = Date.now()): void {
    this.init()
    this.nextAgePrune = now + Math.max(1000, Math.floor(Math.min(this.config.maxAgeMs, this.config.sessionTtlMs) / 4))
    const cutoff = now - this.config.maxAgeMs
    const old = this.sql.exec<{ topic: string; seq: number }>(
      "SELECT topic, MAX(seq) AS seq FROM _dws_log WHERE at < ? GROUP BY topic",
      cutoff
    ).toArray()
    if (old.length > 0) {
      this.savePosition()
      this.sql.exec("DELETE FROM _dws_log WHERE at < ?", cutoff)
      for (const { topic, seq } of old) this.markPruned(topic, seq)
    }
    const expired = now - this.config.sessionTtlMs
    const gone = this.sql.exec<{ id: string }>(
      "SELECT id FROM _dws_sessions WHERE closed_at IS NOT NULL AND closed_at < ?",
      expired
    ).toArray()
    for (const { id } of gone) this.endSession(id)
  }

  // -- Sessions ---------------------------------------------------------------

  createSession(id: string, tokenHash: string, data: AnyData): void {
    this.init()
    this.sql.exec(
      "INSERT INTO _dws_sessions (id, token, data, topics, closed_at) VALUES (?, ?, ?, '{}', NULL) ON CONFLICT (id) DO UPDATE SET token = excluded.token, data = excluded.data, closed_at = NULL",
      id,
      tokenHash,
      JSON.stringify(data)
    )
  }

  /**
   * Takes over a session when the resume credentials are right: the token
   * is replaced by the new one, so a credential works once. Every failure
   * (unknown, ended, expired, wrong token, a watermark from the future) is
   * the same `undefined`.
   */
  claim(sessionId: string, presentedHash: string, after: number, newHash: string): ResumedSession | undefined {
    this.init()
    const row = this.sql.exec<SessionRow>(
      "SELECT token, data, topics, closed_at FROM _dws_sessions WHERE id = ?",
      sessionId
    ).toArray()[0]
    const tokenRight = sameHash(presentedHash, row?.token ?? absentHash)
    if (row === undefined || !tokenRight || after > this.position) return undefined
    if (row.closed_at !== null && Date.now() - row.closed_at > this.config.sessionTtlMs) {
      this.endSession(sessionId)
      return undefined
    }
    this.sql.exec("UPDATE _dws_sessions SET token = ?, closed_at = NULL WHERE id = ?", newHash, sessionId)
    return { id: sessionId, data: JSON.parse(row.data) as AnyData, topics: parseTopics(row.topics), after }
  }

  /**
   * Keeps the session's data and subscriptions current (called whenever the
   * connection's attachment changes, never per message). A topic new to the
   * session remembers the position it was subscribed at: a replay never
   * hands it what was published before.
   */
  saveSession(id: string, data: AnyData, topics: ReadonlyArray<string>): void {
    this.init()
    const row = this.sql.exec<{ topics: string }>("SELECT topics FROM _dws_sessions WHERE id = ?", id).toArray()[0]
    if (row === undefined) return
    const before = parseTopics(row.topics)
    const after = new Map<string, number>()
    for (const topic of topics) after.set(topic, before.get(topic) ?? this.position)
    this.sql.exec("UPDATE _dws_sessions SET data = ?, topics = ? WHERE id = ?", JSON.stringify(data), topicsJson(after), id)
  }

  /** The socket closed without ending the session: it may be resumed for `sessionTtlMs`. */
  closeSession(id: string): boolean {
    this.init()
    return this.sql.exec("UPDATE _dws_sessions SET closed_at = ? WHERE id = ?", Date.now(), id).rowsWritten > 0
  }

  endSession(id: string): void {
    this.init()
    this.sql.exec("DELETE FROM _dws_sessions WHERE id = ?", id)
    this.sql.exec("DELETE FROM _dws_replies WHERE session = ?", id)
  }

  /**
   * What a resumed session missed on `topics`, in seq order: each topic
   * from the later of the client's watermark and the position it was
   * subscribed at. One synchronous read, so no publish falls between it and
   * the socket joining the live fan-out.
   */
  replay(session: ResumedSession, topics: Iterable<string>): Replay {
    this.init()
    const from = new Map<string, number>()
    for (const topic of topics) from.set(topic, Math.max(session.after, session.topics.get(topic) ?? session.after))
    if (from.size === 0) return { frames: [], gaps: [] }
    const names = JSON.stringify(Array.from(from.keys()))
    const frames: Array<string> = []
    const rows = this.sql.exec<{ seq: number; topic: string; origin: string | null; frame: string }>(
      "SELECT seq, topic, origin, frame FROM _dws_log WHERE seq > ? AND topic IN (SELECT value FROM json_each(?)) ORDER BY seq",
      session.after,
      names
    )
    for (const row of rows) {
      if (row.seq > from.get(row.topic)! && row.origin !== session.id) frames.push(row.frame)
    }
    const gaps: Array<string> = []
    for (
      const { topic, seq } of this.sql.exec<{ topic: string; seq: number }>(
        "SELECT topic, seq FROM _dws_pruned WHERE topic IN (SELECT value FROM json_each(?))",
        names
      )
    ) {
      if (seq > from.get(topic)!) gaps.push(topic)
    }
    return { frames, gaps }
  }

  // -- Replies ------------------------------------------------------------------

  cachedReply(session: string, correlationId: string): string | undefined {
    this.init()
    return this.sql.exec<{ frame: string }>(
      "SELECT frame FROM _dws_replies WHERE session = ? AND correlation = ? LIMIT 1",
      session,
      correlationId
    ).toArray()[0]?.frame
  }

  storeReply(session: string, correlationId: string, frame: string): void {
    this.init()
    this.sql.exec("INSERT INTO _dws_replies (session, correlation, frame) VALUES (?, ?, ?)", session, correlationId, frame)
    this.sql.exec(
      "DELETE FROM _dws_replies WHERE session = ? AND id <= (SELECT id FROM _dws_replies WHERE session = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
      session,
      session,
      this.config.replyCacheSize
    )
  }
}

/**
 * The in-memory half of the reply cache: requests whose handler is still
 * running, and the sockets of the same session waiting for their answer.
 */
export class PendingReplies {
  private readonly running = new Map<string, Array<(frame: string) => void>>()

  private static key(session: string, correlationId: string): string {
    return `${session}\u0000${correlationId}`
  }

  start(session: string, correlationId: string): void {
    const key = PendingReplies.key(session, correlationId)
    if (!this.running.has(key)) this.running.set(key, [])
  }

  /** Waits for a running request's answer; false when none is running. */
  wait(session: string, correlationId: string, deliver: (frame: string) => void): boolean {
    const waiting = this.running.get(PendingReplies.key(session, correlationId))
    if (waiting === undefined) return false
    waiting.push(deliver)
    return true
  }

  finish(session: string, correlationId: string, frame: string): void {
    const key = PendingReplies.key(session, correlationId)
    const waiting = this.running.get(key)
    this.running.delete(key)
    if (waiting !== undefined) for (const deliver of waiting) deliver(frame)
  }
}
