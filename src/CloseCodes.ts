/**
 * The close codes server and client agree on: which closes mean "come
 * back" and which mean "do not". A server that bans, signs out or replaces
 * a connection closes it with a terminal code, and `durable-ws/client`
 * then stays away instead of reconnecting forever.
 *
 * | code | meaning | client |
 * |---|---|---|
 * | 1000 | normal: the conversation is over (either side) | stays closed |
 * | 1008 | policy violation (e.g. the rate-limit cut-off) | stays closed |
 * | 4400–4499 | the application says do not reconnect | stays closed |
 * | 4401 | unauthenticated / signed out | stays closed |
 * | 4403 | forbidden / banned / kicked | stays closed |
 * | 4409 | replaced: another socket resumed this session | stays closed |
 * | anything else (1001, 1006, 1011, 1012, 4000–4399, …) | transient | reconnects |
 *
 * Browser-safe: no runtime imports, so both the Durable Object and the
 * client import it.
 *
 * @since 0.1.0
 */

/**
 * The codes durable-ws gives a meaning to.
 *
 * @since 0.1.0
 * @category constants
 */
export const CloseCodes = {
  /** The conversation is over; neither side expects another. */
  Normal: 1000,
  /** The server is going away (a deploy, a restart): come back. */
  GoingAway: 1001,
  /** The connection broke the server's rules (the rate-limit cut-off): terminal. */
  PolicyViolation: 1008,
  /** Not signed in any more (an expired or revoked session): terminal. */
  Unauthenticated: 4401,
  /** Not allowed here (banned, kicked): terminal. */
  Forbidden: 4403,
  /** Another socket resumed this session (the same page opened twice): terminal. */
  Replaced: 4409
} as const

/**
 * The first and last code of the application's "do not reconnect" range.
 *
 * @since 0.1.0
 * @category constants
 */
export const terminalRange = { min: 4400, max: 4499 } as const

/**
 * Whether a close with `code` tells the client not to come back.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isTerminalCloseCode = (code: number): boolean =>
  code === CloseCodes.Normal || code === CloseCodes.PolicyViolation ||
  (code >= terminalRange.min && code <= terminalRange.max)
