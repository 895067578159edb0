/**
 * Wraps a contender's class with two instruments, the same for every
 * contender:
 *
 * - the object counts the time it spends handling WebSocket messages, from
 *   `webSocketMessage` being called to its work having settled;
 *   `GET …/__stats` answers `{ ms, messages, born }` for this instance and
 *   resets the first two (`born` tells a woken instance from the one before);
 * - `directCalls` runs the contender's own `webSocketMessage` in a loop
 *   inside the object, on a stand-in socket whose `send` does nothing, to
 *   price the handler path without the transport.
 *
 * Time in workerd advances in whole milliseconds; summed over many messages
 * the figures are unbiased, which is why nothing here times one message.
 */
// A mixin's constructor must take `any[]` (TypeScript's rule for mixins).
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type ObjectClass = new(...args: any[]) => {
  fetch(request: Request): Response | Promise<Response>
  webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void | Promise<void>
}

/** What the driver calls inside the object (through `runInDurableObject`). */
export interface Instrumented {
  /** Handles `frame` `count` times in a row, awaiting each; returns the elapsed ms. */
  directCalls(socket: WebSocket, frame: string, count: number): Promise<number>
}

/**
 * A socket that reads the real one's attachment (connection state) and sends
 * nothing; the runtime's own send is priced by the end-to-end figures.
 */
const standIn = (socket: WebSocket): WebSocket =>
  ({
    readyState: socket.readyState,
    send: () => {},
    close: () => {},
    deserializeAttachment: () => socket.deserializeAttachment(),
    serializeAttachment: () => {}
  }) as unknown as WebSocket

export const measured = <Base extends ObjectClass>(base: Base) =>
  class Measured extends base implements Instrumented {
    #ms = 0
    #messages = 0
    readonly #born = `${Date.now()}-${Math.random()}`

    override fetch(request: Request): Response | Promise<Response> {
      if (new URL(request.url).pathname.endsWith("/__stats")) {
        const stats = { ms: this.#ms, messages: this.#messages, born: this.#born }
        this.#ms = 0
        this.#messages = 0
        return Response.json(stats)
      }
      return super.fetch(request)
    }

    override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void | Promise<void> {
      const start = performance.now()
      const done = () => {
        this.#ms += performance.now() - start
        this.#messages++
      }
      const result = super.webSocketMessage(ws, message)
      if (result === undefined) return done()
      return result.finally(done)
    }

    async directCalls(socket: WebSocket, frame: string, count: number): Promise<number> {
      const ws = standIn(socket)
      const start = performance.now()
      for (let i = 0; i < count; i++) await super.webSocketMessage(ws, frame)
      return performance.now() - start
    }
  }
