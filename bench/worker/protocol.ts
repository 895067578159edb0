/**
 * The frames every contender speaks, so that each does the same work:
 * the same JSON in, the same JSON out, byte for byte where the protocol
 * allows (durable-ws adds nothing the others do not also send).
 */

/** The topic every fan-out subscriber joins. */
export const topic = "news"

/** Client → server: echo this payload back. */
export const echoFrame = (n: number) => JSON.stringify({ type: "ECHO", payload: { n, text: "hello, bench" } })

/** Client → server: the same echo, for the Effect contender's `Effect.fnUntraced` handler. */
export const echoFnFrame = (n: number) => JSON.stringify({ type: "ECHO_FN", payload: { n, text: "hello, bench" } })

/** Client → server: the same echo, for the promise contender's echo that also makes a generator per message. */
export const echoGeneratorFrame = (n: number) => JSON.stringify({ type: "ECHO_GENERATOR", payload: { n, text: "hello, bench" } })

/** Client → server: join the topic (answered with `SUBSCRIBED`). */
export const subscribeFrame = JSON.stringify({ type: "SUBSCRIBE", payload: { topic } })

/** Server → client: the subscription is in place. */
export const subscribedFrame = JSON.stringify({ type: "SUBSCRIBED" })

/** Client → server: publish one `NEWS` frame to every subscriber of the topic. */
export const publishFrame = (n: number) =>
  JSON.stringify({ type: "PUBLISH", payload: { topic, n, text: "breaking news, bench" } })

/** Client → server: an rpc echo (durable-ws contenders only), its correlationId unique per `n`. */
export const rpcFrame = (n: number) =>
  JSON.stringify({ type: "ECHO_RPC", meta: { correlationId: `rpc-${n}` }, payload: { n, text: "hello, bench" } })

/** The shapes the hand-written contenders read. */
export interface InboundFrame {
  readonly type: string
  readonly meta?: { readonly correlationId?: string }
  readonly payload?: { readonly n?: number; readonly text?: string; readonly topic?: string }
}

/** Server → client: the echo reply, `{type, meta: {timestamp}, payload}` as durable-ws sends it. */
export const echoReply = (payload: InboundFrame["payload"]) =>
  JSON.stringify({ type: "ECHO_REPLY", meta: { timestamp: Date.now() }, payload })

/** Server → client: the rpc echo's reply, `{type, meta: {correlationId, timestamp}, payload}` as durable-ws sends it. */
export const rpcReply = (frame: InboundFrame) =>
  JSON.stringify({
    type: "ECHO_RPC_REPLY",
    meta: { correlationId: frame.meta?.correlationId, timestamp: Date.now() },
    payload: frame.payload
  })

/** Server → subscribers: the published frame, `{type, payload}` as durable-ws publishes it. */
export const newsFrame = (payload: InboundFrame["payload"]) =>
  JSON.stringify({ type: "NEWS", payload: { n: payload?.n, text: payload?.text } })

/** How each server → client frame starts, for every contender; the driver checks it without parsing. */
export const prefixes = {
  echoReply: "{\"type\":\"ECHO_REPLY\"",
  subscribed: "{\"type\":\"SUBSCRIBED\"",
  news: "{\"type\":\"NEWS\"",
  rpcReply: "{\"type\":\"ECHO_RPC_REPLY\""
} as const
