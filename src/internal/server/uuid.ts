/**
 * UUID version 7 (RFC 9562, section 5.7): the Unix time in milliseconds in
 * the first 48 bits, then the version, 74 random bits and the variant. A
 * connection's `clientId` is one, made at its `connectedAt`: ids sort by
 * when their connection opened, and within one millisecond (all of one
 * Durable Object event) they differ by their random bits.
 */

const hex = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, "0"))

/** The UUID v7 of `ms` (a Unix time in milliseconds, as `Date.now()` gives). */
export const uuidv7 = (ms: number): string => {
  const bytes = crypto.getRandomValues(new Uint8Array(16))
  const high = Math.floor(ms / 2 ** 32) // the top 16 of the 48 bits
  const low = ms >>> 0
  bytes[0] = high >>> 8
  bytes[1] = high & 0xff
  bytes[2] = low >>> 24
  bytes[3] = (low >>> 16) & 0xff
  bytes[4] = (low >>> 8) & 0xff
  bytes[5] = low & 0xff
  bytes[6] = 0x70 | (bytes[6]! & 0x0f)
  bytes[8] = 0x80 | (bytes[8]! & 0x3f)
  const parts: Array<string> = []
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) parts.push("-")
    parts.push(hex[bytes[i]!]!)
  }
  // Joined, not concatenated: a flat string. V8's fast `JSON.stringify` (each attachment's size is
  // measured with it) gives up on a string made of pieces, and its slower path recurses.
  return parts.join("")
}
