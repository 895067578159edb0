/**
 * Runs once in Vitest's own process, before the workerd project starts.
 *
 * Under @cloudflare/vitest-plugin, every Durable Object RPC method that
 * rejects is also reported by workerd as an uncaught exception, although the
 * caller handles the rejection (cloudflare/workers-sdk#14736). The federation
 * tests make shards fail on purpose and assert every failure in `federate`'s
 * results, so those reports say nothing, yet they look like stack traces of a
 * broken run. Only rejections thrown by the federation fixture's `Shard`
 * methods are dropped: any other uncaught exception still prints.
 */
const expectedShardFailure =
  /^uncaught exception; source = Uncaught \(in promise\); stack = \w*Error: [^\n]*\n\s+at Shard\.\w+ \([^)\n]*test\/fixtures\/federation\.ts:\d+:\d+\)\s*$/

export default function setup(): () => void {
  // The plugin forwards workerd's log lines to stdout or stderr by level.
  const restore = [process.stdout, process.stderr].map((stream) => {
    const write = stream.write
    stream.write = function(this: NodeJS.WriteStream, chunk: unknown, ...rest: Array<unknown>) {
      if (typeof chunk === "string" && expectedShardFailure.test(chunk)) return true
      return (write as (...args: Array<unknown>) => boolean).call(this, chunk, ...rest)
    } as typeof stream.write
    return () => {
      stream.write = write
    }
  })
  return () => restore.forEach((f) => f())
}
