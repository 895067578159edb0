/** The median of a non-empty sample. */
export const median = (values: ReadonlyArray<number>): number => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/**
 * Rounds run the contenders interleaved: round `r` starts at contender
 * `r mod n` (A B C D, B C D A, …), so no contender always runs right after
 * the same one (or always first, after a garbage collection).
 */
export const rotated = <A>(items: ReadonlyArray<A>, round: number): Array<A> => {
  const shift = round % items.length
  return [...items.slice(shift), ...items.slice(0, shift)]
}
