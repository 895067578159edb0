/**
 * Three ways to reach subscribers on many objects, for spanning.measure.ts:
 * a spanning topic (its home delivers in batches, one call per edge at a
 * time), `federate` (one call per edge per publish, 6 at a time) and the
 * naive fan-out (one call per edge per publish, all at once: partysub's
 * design). Every edge is the same `BenchEdge` object; the publisher is one
 * of them.
 */
import * as Schema from "effect/Schema"
import type { SpannedAnswer, SpannedDelivery } from "../../src/index"
import { createRouter, federate, message, SpanningTopicHome, WebSocketDurableObject } from "../../src/index"

export const BJoin = message("B_JOIN", { topic: Schema.String })
export const BJoined = message("B_JOINED", { topic: Schema.String })
export const BNews = message("B_NEWS", { n: Schema.Number })

const router = createRouter().on(BJoin, async (ctx) => {
  await ctx.topics.subscribe(ctx.payload.topic)
  ctx.send(BJoined, { topic: ctx.payload.topic })
})

export type FanOut = "span" | "federate" | "naive"

export class BenchEdge extends WebSocketDurableObject(router, {
  span: { topics: (topic) => topic.startsWith("span:"), home: (env) => env.BENCH_HOME, edge: "BENCH_EDGE" }
}) {
  /** A local publish: what federate and the naive fan-out call on every edge. */
  async announce(topic: string, n: number): Promise<number> {
    const result = await this.ws.publish(topic, BNews, { n })
    return result.ok ? result.matched : -1
  }

  /** One publish, from this object, the way `mode` reaches the others. */
  async fanOut(mode: FanOut, topic: string, n: number, edges: ReadonlyArray<string>): Promise<boolean> {
    const namespace = this.env.BENCH_EDGE
    switch (mode) {
      case "span":
        return (await this.ws.publish(topic, BNews, { n })).ok
      case "federate": {
        const results = await federate(namespace, edges, (stub) => stub.announce(topic, n))
        return results.every((result) => result.status === "fulfilled")
      }
      case "naive": {
        const results = await Promise.allSettled(
          edges.map((edge) => namespace.get(namespace.idFromName(edge)).announce(topic, n))
        )
        return results.every((result) => result.status === "fulfilled")
      }
    }
  }
}

/** The home, counting its calls to edges: the object requests a spanning publish costs. */
export class BenchHome extends SpanningTopicHome {
  private calls = 0
  private entries = 0

  protected override deliverTo(
    edge: { readonly id: string; readonly binding: string },
    delivery: SpannedDelivery
  ): Promise<SpannedAnswer> {
    this.calls++
    for (const part of delivery.topics) this.entries += part.entries.length
    return super.deliverTo(edge, delivery)
  }

  /** Calls to edges and entries carried since the last reset. */
  counted(reset: boolean): { readonly calls: number; readonly entries: number } {
    const counted = { calls: this.calls, entries: this.entries }
    if (reset) this.calls = this.entries = 0
    return counted
  }
}
