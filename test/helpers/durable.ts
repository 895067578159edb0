import type { TestSocket } from "./socket"
import { wrap } from "./socket"

export interface UpgradeInit {
  readonly method?: string
  readonly headers?: Record<string, string>
  readonly query?: string
}

/** The stub of the object named `name` in a namespace. */
export const stubOf = (namespace: DurableObjectNamespace, name: string) => namespace.get(namespace.idFromName(name))

/** Sends an upgrade request straight to a Durable Object (no worker routing in between). */
export const upgradeOn = (namespace: DurableObjectNamespace, name: string, init: UpgradeInit = {}) =>
  stubOf(namespace, name).fetch(`http://test.local/room/${name}${init.query ?? ""}`, {
    method: init.method ?? "GET",
    headers: { Upgrade: "websocket", ...init.headers }
  })

/** Opens a WebSocket to a Durable Object, failing the test if the upgrade is refused. */
export const openOn = async (
  namespace: DurableObjectNamespace,
  name: string,
  init: UpgradeInit = {}
): Promise<TestSocket> => {
  const res = await upgradeOn(namespace, name, init)
  if (res.status !== 101 || res.webSocket === null) {
    throw new Error(`upgrade to ${name} answered ${res.status}: ${await res.text()}`)
  }
  return wrap(res.webSocket)
}

/** Polls `check` until it holds, or fails after `timeoutMs` with the last value seen. */
export const eventually = async <A>(
  probe: () => Promise<A>,
  check: (value: A) => boolean,
  timeoutMs = 5000
): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (check(value)) return value
    if (Date.now() > deadline) throw new Error(`condition not reached in ${timeoutMs} ms; last value: ${JSON.stringify(value)}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

export const bytes = (...values: ReadonlyArray<number>): ArrayBuffer => new Uint8Array(values).buffer
