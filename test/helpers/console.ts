import { onTestFinished, vi } from "vitest"

/**
 * Captures what is logged through `console[level]` until the current test
 * ends, instead of printing it. A test that provokes a failure the library
 * logs (a refused `authenticate`, a layer that fails to build) asserts on
 * the log, so the run's output shows only what nobody expected. The Durable
 * Objects run in the tests' isolate, so their logs are captured too.
 */
export const captureConsole = (level: "error" | "warn") => {
  const spy = vi.spyOn(console, level).mockImplementation(() => {})
  onTestFinished(() => spy.mockRestore())
  return {
    /** Each call's arguments, joined as `console` would print them (errors as `Name: message`). */
    lines: (): Array<string> => spy.mock.calls.map((args) => args.map(String).join(" "))
  }
}
