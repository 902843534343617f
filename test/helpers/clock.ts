/**
 * @module test/helpers/clock
 * A clock a test moves by hand, for the mirror's TTLs and backoffs: tests advance it past a tagTTL
 * instead of sleeping. It starts at the real time, so what still reads the real clock (jobs, gc)
 * sees timestamps close to its own.
 */
export class TestClock {
  #now: number;

  constructor(start = Date.now()) {
    this.#now = start;
  }

  /** The clock as a `now` option takes it (bound, so it can be passed around). */
  readonly now = (): number => this.#now;

  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`Expected a non-negative number of ms to advance, got ${ms}`);
    this.#now += ms;
  }
}
