/**
 * Steps queued by lane: the steps of one lane run one at a time, in the
 * order they were asked for, each after the one before has settled
 * (fulfilled or rejected); lanes do not wait for each other. A lane with
 * nothing queued takes no memory.
 */
export class Lanes {
  private readonly tails = new Map<string, Promise<void>>()

  /** Runs `step` after every earlier step of `lane`; resolves or rejects as `step` does. */
  run<A>(lane: string, step: () => Promise<A>): Promise<A> {
    const result = (this.tails.get(lane) ?? Promise.resolve()).then(step)
    const done = result.then(() => undefined, () => undefined)
    this.tails.set(lane, done)
    void done.then(() => {
      if (this.tails.get(lane) === done) this.tails.delete(lane)
    })
    return result
  }
}
