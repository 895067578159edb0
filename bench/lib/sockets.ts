import { SELF } from "cloudflare:test"
import type { Contender } from "../worker/index"
import { prefixes, subscribeFrame } from "../worker/protocol"

/**
 * A lean client socket: it counts frames and hands each to the current
 * `sink`, without parsing, so the client side costs the same for every
 * contender and as little as possible.
 */
export interface BenchSocket {
  readonly ws: WebSocket
  sink: (data: string) => void
  send(frame: string): void
  close(): void
}

const origin = "http://bench.local"
const sessionPrefix = "{\"type\":\"$"

/** Opens a socket to `/<contender>/<name>`; `topic` tags it (raw, partyserver) as a subscriber. */
export const open = async (contender: Contender, name: string, topic?: string, extraQuery = ""): Promise<BenchSocket> => {
  const query = (topic === undefined ? "?" : `?topic=${encodeURIComponent(topic)}&`) + extraQuery
  const res = await SELF.fetch(`${origin}/${contender}/${name}${query}`, { headers: { Upgrade: "websocket" } })
  if (res.status !== 101 || res.webSocket === null) {
    throw new Error(`upgrade to ${contender}/${name} answered ${res.status}: ${await res.text()}`)
  }
  const ws = res.webSocket
  ws.accept()
  const socket: BenchSocket = {
    ws,
    sink: () => {},
    send: (frame) => ws.send(frame),
    close: () => {
      try {
        ws.close(1000, "bench done")
      } catch {
        // already closed
      }
    }
  }
  // Session frames (`$session`, `$resumed`: recovery only) are no part of any scenario's count.
  ws.addEventListener("message", (event) => {
    const data = event.data as string
    if (!data.startsWith(sessionPrefix)) socket.sink(data)
  })
  return socket
}

/**
 * Resolves once `count` frames starting with `prefix` have reached the
 * sinks `arm` installs; rejects on any other frame or after `timeoutMs`.
 * `arm` receives the function each sink calls per frame.
 */
export const expectFrames = (
  count: number,
  prefix: string,
  timeoutMs: number,
  what: string,
  arm: (frame: (data: string) => void) => void
): Promise<void> =>
  new Promise<void>((resolve, reject) => {
    let seen = 0
    let finished = false
    const finish = (error?: Error) => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      if (error === undefined) resolve()
      else reject(error)
    }
    const timer = setTimeout(
      () => finish(new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${seen} of ${count} frames`)),
      timeoutMs
    )
    arm((data) => {
      if (!data.startsWith(prefix)) return finish(new Error(`${what}: unexpected frame ${data}`))
      if (++seen === count) finish()
    })
    if (count === 0) finish()
  })

/** Opens `count` subscribers on the topic, each confirmed by `SUBSCRIBED`, a few at a time. */
export const openSubscribers = async (
  contender: Contender,
  name: string,
  topic: string,
  count: number
): Promise<Array<BenchSocket>> => {
  const sockets: Array<BenchSocket> = []
  const batch = 50
  for (let start = 0; start < count; start += batch) {
    const opened = await Promise.all(
      Array.from({ length: Math.min(batch, count - start) }, () => open(contender, name, topic))
    )
    await expectFrames(opened.length, prefixes.subscribed, 10_000, `${contender} subscriptions`, (frame) => {
      for (const socket of opened) {
        socket.sink = frame
        socket.send(subscribeFrame)
      }
    })
    sockets.push(...opened)
  }
  return sockets
}
