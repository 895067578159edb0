/**
 * The client's half of resumable delivery (SPEC §11): the session it was
 * given, the watermark (the last published seq it handed to handlers), and
 * where both are kept between page loads.
 */
import type { SessionStore } from "../../Client"
import type { SessionPayload } from "../../Protocol"
import { formatResume, resumeParameter } from "../../Protocol"

/** The session as kept: `seq` is the watermark, the last published seq handed to handlers. */
type Saved = SessionPayload

const isSaved = (u: unknown): u is Saved =>
  typeof u === "object" && u !== null && typeof (u as Saved).sessionId === "string" &&
  typeof (u as Saved).token === "string" && Number.isSafeInteger((u as Saved).seq)

export class ClientSession {
  private saved: Saved | undefined
  /** The sessionId this socket asked to resume; a session frame with another id is a fresh start. */
  private asked: string | undefined = undefined

  constructor(private readonly store: SessionStore | undefined, private readonly key: string) {
    this.saved = this.load()
  }

  private load(): Saved | undefined {
    try {
      const raw = this.store?.getItem(this.key)
      const parsed: unknown = raw === null || raw === undefined ? undefined : JSON.parse(raw)
      return isSaved(parsed) ? parsed : undefined
    } catch {
      return undefined
    }
  }

  private save(): void {
    if (this.store === undefined) return
    try {
      if (this.saved === undefined) this.store.removeItem(this.key)
      else this.store.setItem(this.key, JSON.stringify(this.saved))
    } catch {
      // A full or unavailable store costs only the resume after a reload.
    }
  }

  /** Whether there is a session to resume (the server sent one, or a store kept one). */
  get resumable(): boolean {
    return this.saved !== undefined
  }

  /** The URL of the next socket: with the resume credentials when there is a session. */
  urlFor(url: string): string {
    this.asked = this.saved?.sessionId
    if (this.saved === undefined) return url
    const target = new URL(url)
    const { sessionId, token, seq } = this.saved
    target.searchParams.set(resumeParameter, formatResume({ sessionId, token, after: seq }))
    return target.toString()
  }

  /** A session frame: keep the watermark when it continues the session asked for, else start from its seq. */
  started(payload: unknown): void {
    if (!isSaved(payload)) return
    const continued = this.saved !== undefined && payload.sessionId === this.asked && payload.sessionId === this.saved.sessionId
    this.saved = { sessionId: payload.sessionId, token: payload.token, seq: continued ? this.saved!.seq : payload.seq }
    this.save()
  }

  /**
   * A published frame with seq `seq`: true when it is new (the watermark
   * moves to it), false for one already handed over.
   */
  accept(seq: number): boolean {
    if (this.saved === undefined) return true
    if (seq <= this.saved.seq) return false
    this.saved = { ...this.saved, seq }
    this.save()
    return true
  }

  /** The session is over (the client closed with 1000, or another socket took it). */
  clear(): void {
    this.saved = undefined
    this.save()
  }
}
