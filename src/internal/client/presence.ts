/**
 * The client's copy of each topic's presence: the whole state from
 * `$presence`, then `$presence_diff` applied on top (leaves first, then
 * joins, both by ref, so applying a change twice changes nothing). A whole
 * state that replaces an older one (a reconnect, a resume) is reported as
 * the difference between the two, so a member who went away while the
 * socket was down is reported as left.
 */
import type { PresenceChange } from "../../Client"
import type { PresenceDiffPayload, PresenceMembers, PresenceMeta, PresenceStatePayload } from "../../Protocol"

type Members = Map<string, Map<string, unknown>>

const defineOwn = (target: Record<string, unknown>, key: string, value: unknown): void => {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
}

const toRecord = (members: Members): PresenceMembers => {
  const out: Record<string, Array<PresenceMeta>> = {}
  for (const [key, metas] of members) defineOwn(out, key, Array.from(metas, ([ref, meta]) => ({ ref, meta })))
  return out
}

const toMembers = (record: PresenceMembers): Members => {
  const members: Members = new Map()
  for (const key of Object.keys(record)) {
    const metas = record[key]!
    if (metas.length > 0) members.set(key, new Map(metas.map((m) => [m.ref, m.meta])))
  }
  return members
}

const sameJson = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b)

/** One topic's presence as this client knows it. */
export class TopicPresence {
  private members: Members = new Map()
  count = 0
  countsOnly = false
  /** A whole state has arrived since this copy was made. */
  known = false

  constructor(readonly topic: string) {}

  get snapshot(): PresenceMembers {
    return toRecord(this.members)
  }

  /** Replaces the state; the change is the difference from the old one. */
  applyState(state: PresenceStatePayload): PresenceChange {
    this.known = true
    if ("count" in state) return this.counted(state.count)
    const next = toMembers(state.members)
    const joins: Record<string, Array<PresenceMeta>> = {}
    const leaves: Record<string, Array<PresenceMeta>> = {}
    for (const [key, metas] of this.members) {
      for (const [ref, meta] of metas) {
        const now = next.get(key)
        if (now === undefined || !now.has(ref) || !sameJson(now.get(ref), meta)) add(leaves, key, { ref, meta })
      }
    }
    for (const [key, metas] of next) {
      for (const [ref, meta] of metas) {
        const before = this.members.get(key)
        if (before === undefined || !before.has(ref) || !sameJson(before.get(ref), meta)) add(joins, key, { ref, meta })
      }
    }
    return this.replace(next, joins, leaves)
  }

  /** Applies a diff: leaves, then joins. */
  applyDiff(diff: PresenceDiffPayload): PresenceChange {
    if ("count" in diff) return this.counted(diff.count)
    const next: Members = new Map(Array.from(this.members, ([key, metas]) => [key, new Map(metas)]))
    for (const key of Object.keys(diff.leaves)) {
      const metas = next.get(key)
      for (const { ref } of diff.leaves[key]!) metas?.delete(ref)
      if (metas?.size === 0) next.delete(key)
    }
    for (const key of Object.keys(diff.joins)) {
      let metas = next.get(key)
      if (metas === undefined) next.set(key, metas = new Map())
      for (const { ref, meta } of diff.joins[key]!) metas.set(ref, meta)
    }
    return this.replace(next, diff.joins, diff.leaves)
  }

  private replace(next: Members, joins: PresenceMembers, leaves: PresenceMembers): PresenceChange {
    const joined = Array.from(next.keys()).filter((key) => !this.members.has(key))
    const left = Array.from(this.members.keys()).filter((key) => !next.has(key))
    this.members = next
    this.count = next.size
    this.countsOnly = false
    return { topic: this.topic, joins, leaves, joined, left, members: toRecord(next), count: next.size, countsOnly: false }
  }

  private counted(count: number): PresenceChange {
    this.members = new Map()
    this.count = count
    this.countsOnly = true
    return { topic: this.topic, joins: {}, leaves: {}, joined: [], left: [], members: {}, count, countsOnly: true }
  }
}

const add = (into: Record<string, Array<PresenceMeta>>, key: string, meta: PresenceMeta): void => {
  const list = Object.hasOwn(into, key) ? into[key] : undefined
  if (list === undefined) defineOwn(into, key, [meta])
  else list.push(meta)
}
