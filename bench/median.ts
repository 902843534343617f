/**
 * @module bench/median
 * The run a side of a ratio reports when the bench repeats a measure in rounds.
 */

/** The item with the median `key`: the middle one of an odd count, the lower middle one of an even count. */
export function medianBy<T>(items: readonly T[], key: (item: T) => number): T {
  if (items.length === 0) throw new Error('medianBy: no items');
  return [...items].sort((a, b) => key(a) - key(b))[Math.floor((items.length - 1) / 2)]!;
}
