import { SELF } from "cloudflare:test"

/** A frame as the server sent it, parsed. */
export interface Frame {
  readonly type: string
  readonly meta?: Record<string, unknown>
  readonly payload?: any
}

export interface TestSocket {
  readonly ws: WebSocket
  /** Every frame received so far, in order. */
  readonly frames: Array<Frame>
  send(frame: unknown): void
  sendRaw(data: string | ArrayBuffer): void
  /** The next frame not yet taken (optionally the next one matching), or a timeout error. */
  next(match?: (frame: Frame) => boolean, timeoutMs?: number): Promise<Frame>
  /** Resolves with the close event, or rejects after the timeout. */
  closed(timeoutMs?: number): Promise<{ code: number; reason: string }>
  /** Resolves once no frame has arrived for `quietMs` and returns what did arrive. */
  drain(quietMs?: number): Promise<Array<Frame>>
  close(code?: number, reason?: string): void
}

export const upgrade = (path: string, init: RequestInit & { headers?: Record<string, string> } = {}) =>
  SELF.fetch(`http://test.local${path}`, { ...init, headers: { Upgrade: "websocket", ...init.headers } })

/** Opens a WebSocket to the test worker, failing the test if the upgrade is refused. */
export const connect = async (path: string, init: RequestInit & { headers?: Record<string, string> } = {}) => {
  const res = await upgrade(path, init)
  if (res.status !== 101 || res.webSocket === null) {
    throw new Error(`upgrade to ${path} answered ${res.status}: ${await res.text()}`)
  }
  return wrap(res.webSocket)
}

export const wrap = (ws: WebSocket): TestSocket => {
  ws.accept()
  const frames: Array<Frame> = []
  let taken = 0
  const waiters = new Set<() => void>()
  let closeEvent: { code: number; reason: string } | undefined
  ws.addEventListener("message", (event) => {
    const data = typeof event.data === "string" ? event.data : new TextDecoder().decode(event.data as ArrayBuffer)
    frames.push(JSON.parse(data))
    for (const wake of waiters) wake()
  })
  ws.addEventListener("close", (event) => {
    closeEvent = { code: event.code, reason: event.reason }
    for (const wake of waiters) wake()
  })
  const waitFor = <A>(check: () => A | undefined, timeoutMs: number, what: string) =>
    new Promise<A>((resolve, reject) => {
      const attempt = () => {
        const found = check()
        if (found === undefined) return false
        clearTimeout(timer)
        waiters.delete(wake)
        resolve(found)
        return true
      }
      const wake = () => void attempt()
      const timer = setTimeout(() => {
        waiters.delete(wake)
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; frames so far: ${JSON.stringify(frames)}`))
      }, timeoutMs)
      waiters.add(wake)
      attempt()
    })
  return {
    ws,
    frames,
    send: (frame) => ws.send(JSON.stringify(frame)),
    sendRaw: (data) => ws.send(data),
    next: (match = () => true, timeoutMs = 2000) =>
      waitFor(() => {
        for (let i = taken; i < frames.length; i++) {
          if (match(frames[i]!)) {
            const frame = frames[i]!
            frames.splice(i, 1)
            return frame
          }
        }
        return undefined
      }, timeoutMs, "a frame"),
    closed: (timeoutMs = 2000) => waitFor(() => closeEvent, timeoutMs, "close"),
    drain: async (quietMs = 100) => {
      let seen = -1
      while (seen !== frames.length) {
        seen = frames.length
        await new Promise((r) => setTimeout(r, quietMs))
      }
      return frames.splice(taken)
    },
    close: (code, reason) => ws.close(code, reason)
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
