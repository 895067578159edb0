/**
 * Helpers for the recovery suites: sockets that take their `$session`,
 * joins confirmed by an rpc, publishes and controls through the fixture's
 * `onRequest`, and resumes read up to `$resumed`.
 */
import { expect } from "vitest"
import { openOn, stubOf } from "./durable"
import type { Frame, TestSocket } from "./socket"

export interface Session {
  readonly sessionId: string
  readonly token: string
  readonly seq: number
}

export const isPublished = (frame: Frame) => frame.type === "R_SAID"

/** Opens a socket and takes its `$session` (the first frame). */
export const open = async (namespace: DurableObjectNamespace, name: string, query = "") => {
  const socket = await openOn(namespace, name, { query })
  const first = await socket.next()
  expect(first.type).toBe("$session")
  return { socket, session: first.payload as Session }
}

export const resumeQuery = (session: Session, seq: number, extra = "") =>
  `?dws_resume=${session.sessionId}.${session.token}.${seq}${extra}`

export const join = async (socket: TestSocket, ...topics: ReadonlyArray<string>) => {
  for (const topic of topics) socket.send({ type: "R_JOIN", payload: { topic } })
  // An rpc after the joins: its answer means they were handled (one connection's frames run in order).
  socket.send({ type: "R_WHO_AM_I", meta: { correlationId: `joined-${Math.random()}` } })
  await socket.next((f) => f.type === "R_YOU_ARE")
}

export const publish = async (
  namespace: DurableObjectNamespace,
  name: string,
  topic: string,
  texts: ReadonlyArray<string>
) => {
  const res = await stubOf(namespace, name).fetch("http://test.local/publish", {
    method: "POST",
    body: JSON.stringify({ topic, texts })
  })
  return res.json<Array<{ ok: boolean }>>()
}

export const control = async <A>(namespace: DurableObjectNamespace, name: string, path: string, body?: unknown): Promise<A> => {
  const res = await stubOf(namespace, name).fetch(`http://test.local/${path}`, {
    method: body === undefined ? "GET" : "POST",
    body: body === undefined ? null : JSON.stringify(body)
  })
  return res.json<A>()
}

/** Frames until `$resumed`, which ends the resume. */
export const untilResumed = async (socket: TestSocket, timeoutMs?: number) => {
  const frames: Array<Frame> = []
  for (;;) {
    const frame = await socket.next(undefined, timeoutMs)
    frames.push(frame)
    if (frame.type === "$resumed") return frames
  }
}

export const texts = (frames: ReadonlyArray<Frame>) => frames.filter(isPublished).map((f) => f.payload.text as string)
export const seqs = (frames: ReadonlyArray<Frame>) => frames.filter(isPublished).map((f) => f.meta!.seq as number)

export const whoAmI = async (socket: TestSocket) => {
  const correlationId = `who-${Math.random()}`
  socket.send({ type: "R_WHO_AM_I", meta: { correlationId } })
  return (await socket.next((f) => f.meta?.correlationId === correlationId)).payload as {
    data: Record<string, unknown>
    topics: Array<string>
  }
}

/** Resumes `session` on a new socket: its `$session`, then every frame up to `$resumed`. */
export const resume = async (namespace: DurableObjectNamespace, name: string, session: Session, seq = 0, extra = "") => {
  const socket = await openOn(namespace, name, { query: resumeQuery(session, seq, extra) })
  const fresh = await socket.next()
  expect(fresh.type).toBe("$session")
  const frames = await untilResumed(socket)
  return { socket, session: fresh.payload as Session, frames, outcome: frames.at(-1)!.payload as Record<string, unknown> }
}
