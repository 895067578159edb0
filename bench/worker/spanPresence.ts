/**
 * Presence across objects, for presence.measure.ts: `PresenceEdge` objects
 * whose `hall:` topics span objects, homed in `PresenceHome`, which counts
 * the presence calls in both directions (the object requests a burst costs).
 */
import * as Schema from "effect/Schema"
import type { PresenceEdge, PresencePart, PresencePartAnswer } from "../../src/index"
import { createRouter, message, SpanningTopicHome, WebSocketDurableObject } from "../../src/index"

export const PJoin = message("P_JOIN", { topic: Schema.String, name: Schema.String })
export const PWatch = message("P_WATCH", { topic: Schema.String })

const router = createRouter()
  .on(PWatch, (ctx) => ctx.topics.subscribe(ctx.payload.topic))
  .on(PJoin, async (ctx) => {
    await ctx.topics.subscribe(ctx.payload.topic)
    await ctx.presence.track(ctx.payload.topic, ctx.payload.name, { since: 0 })
  })

export class BenchPresenceEdge extends WebSocketDurableObject(router, {
  presence: { flushMs: 5 },
  span: { topics: (topic) => topic.startsWith("hall:"), home: (env) => env.BENCH_PRESENCE_HOME, edge: "BENCH_PRESENCE_EDGE" }
}) {}

export class BenchPresenceHome extends SpanningTopicHome {
  private updates = 0
  private deliveries = 0

  override presenceUpdate(topic: string, edge: { readonly id: string; readonly binding: string }, part: PresencePart): PresencePartAnswer {
    this.updates++
    return super.presenceUpdate(topic, edge, part)
  }

  protected override presenceEdge(edge: { readonly id: string; readonly binding: string }): PresenceEdge {
    const real = super.presenceEdge(edge)
    return {
      deliverPresence: (topic, update) => {
        this.deliveries++
        return real.deliverPresence(topic, update)
      },
      checkPresence: (topic, epoch, counter) => real.checkPresence(topic, epoch, counter)
    }
  }

  /** Edge → home updates and home → edge deliveries so far. */
  counted(): { readonly updates: number; readonly deliveries: number } {
    return { updates: this.updates, deliveries: this.deliveries }
  }
}
