/**
 * Runs once in Vitest's own process, before the workerd project starts, and
 * drops two kinds of workerd log line that report what the tests do on
 * purpose, so that a run's output holds only what nobody expected:
 *
 * - Under @cloudflare/vitest-plugin, every Durable Object RPC method that
 *   rejects is also reported as an uncaught exception, although the caller
 *   handles the rejection (cloudflare/workers-sdk#14736). The federation
 *   tests make shards fail on purpose and assert every failure in
 *   `federate`'s results. Only rejections thrown by the federation fixture's
 *   `Shard` methods are dropped: any other uncaught exception still prints.
 * - Evicting an object that has open sockets (`evictDurableObject`) can
 *   make workerd note that one end of an internal WebSocket pipe went away. The hibernation tests evict on purpose and assert that nothing
 *   is lost or duplicated. The plugin already hides this note's siblings
 *   ("disconnected: WebSocket peer disconnected", ...).
 */
const expected = [
  /^uncaught exception; source = Uncaught \(in promise\); stack = \w*Error: [^\n]*\n\s+at Shard\.\w+ \([^)\n]*test\/fixtures\/federation\.ts:\d+:\d+\)\s*$/,
  /^exception = kj\/compat\/http\.c\+\+:\d+: disconnected: other end of WebSocketPipe was destroyed\nstack: [^\n]*\s*$/
]

export default function setup(): () => void {
  // The plugin forwards workerd's log lines to stdout or stderr by level.
  const restore = [process.stdout, process.stderr].map((stream) => {
    const write = stream.write
    stream.write = function(this: NodeJS.WriteStream, chunk: unknown, ...rest: Array<unknown>) {
      if (typeof chunk === "string" && expected.some((line) => line.test(chunk))) return true
      return (write as (...args: Array<unknown>) => boolean).call(this, chunk, ...rest)
    } as typeof stream.write
    return () => {
      stream.write = write
    }
  })
  return () => restore.forEach((f) => f())
}
