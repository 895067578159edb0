import type { ReceivedFrame, TestConnection } from "../../src/Testing"

/** Waits until a frame matching `match` has been sent to a `Testing.make` connection, or fails after the timeout. */
export const frameOf = async <TData>(
  connection: TestConnection<TData>,
  match: (frame: ReceivedFrame) => boolean,
  timeoutMs = 2000
): Promise<ReceivedFrame> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const found = connection.frames.find(match)
    if (found !== undefined) return found
    if (Date.now() > deadline) {
      throw new Error(`no matching frame within ${timeoutMs} ms; got ${JSON.stringify(connection.frames)}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Resolves after `ms`: lets timers that should (or should not) fire run first. */
export const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
