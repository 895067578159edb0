/**
 * The client's `on` handlers, by message type: each inbound message is
 * decoded with the schema of every handler registered for its type, and
 * the handlers run one after another, in registration order — also when an
 * asynchronous validator makes one of them wait.
 */
import type { InboundFrame } from "../../Client"
import type { MessageSchema, PayloadResult } from "../../Message"
import { decodePayload, isPendingResult } from "../../Message"

interface Subscription {
  readonly message: MessageSchema
  readonly handler: (payload: unknown, frame: InboundFrame) => void
}

export class Handlers {
  private readonly byType = new Map<string, Set<Subscription>>()

  /** Registers a handler; returns its removal. */
  add(message: MessageSchema, handler: (payload: unknown, frame: InboundFrame) => void): () => void {
    let subscriptions = this.byType.get(message.type)
    if (subscriptions === undefined) this.byType.set(message.type, subscriptions = new Set())
    const subscription: Subscription = { message, handler }
    subscriptions.add(subscription)
    return () => void subscriptions.delete(subscription)
  }

  /**
   * Hands a payload to the handlers of its type. Decode failures and
   * throwing handlers go to `report`; a Promise while a validator decides.
   */
  dispatch(payload: unknown, inbound: InboundFrame, report: (error: unknown) => void): Promise<void> | undefined {
    const subscriptions = this.byType.get(inbound.type)
    if (subscriptions === undefined) return undefined
    return run(Array.from(subscriptions), 0, payload, inbound, report)
  }
}

/** Runs the handlers from `index` on, one after another, each with the payload its schema decoded. */
const run = (
  subscriptions: ReadonlyArray<Subscription>,
  index: number,
  payload: unknown,
  inbound: InboundFrame,
  report: (error: unknown) => void
): Promise<void> | undefined => {
  for (let i = index; i < subscriptions.length; i++) {
    const subscription = subscriptions[i]!
    const decoded = decodePayload(subscription.message, payload)
    if (isPendingResult(decoded)) {
      return decoded.then(
        (settled) => {
          call(subscription, settled, inbound, report)
          return run(subscriptions, i + 1, payload, inbound, report)
        },
        (error: unknown) => {
          report(error)
          return run(subscriptions, i + 1, payload, inbound, report)
        }
      )
    }
    call(subscription, decoded, inbound, report)
  }
  return undefined
}

const call = (
  subscription: Subscription,
  decoded: PayloadResult,
  inbound: InboundFrame,
  report: (error: unknown) => void
): void => {
  if (!decoded.ok) return report(decoded.error)
  try {
    subscription.handler(decoded.value, inbound)
  } catch (error) {
    report(error)
  }
}
