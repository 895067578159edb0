/**
 * Wraps a contender's class so the object itself counts the time it spends
 * handling WebSocket messages, from `webSocketMessage` being called to its
 * work having settled. The same wrapper goes around every contender.
 *
 * `GET …/__stats` answers `{ ms, messages }` for this instance and resets it.
 * Time in workerd advances in whole milliseconds; summed over many messages
 * the figure is unbiased, which is why the driver sums and never reads one.
 */
// A mixin's constructor must take `any[]` (TypeScript's rule for mixins).
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type ObjectClass = new(...args: any[]) => {
  fetch(request: Request): Response | Promise<Response>
  webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void | Promise<void>
}

export const measured = <Base extends ObjectClass>(base: Base) => {
  class Measured extends base {
    #ms = 0
    #messages = 0

    override fetch(request: Request): Response | Promise<Response> {
      if (new URL(request.url).pathname.endsWith("/__stats")) {
        const stats = { ms: this.#ms, messages: this.#messages }
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
  }
  return Measured
}
