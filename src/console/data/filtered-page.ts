/**
 * @module console/data/filtered-page
 * A page of keyset-ordered rows of which only some may be shown (the repositories a viewer may
 * pull): rows are read a batch at a time after the key and filtered, and further batches are read
 * until the page is full or the rows end, never all of them. The reading is bounded: after
 * `maxBatches` batches the page ends early with a `next` key at the last row read, so a viewer who
 * may pull little of a large cache gets a short page with a "next" link, not a long scan.
 */

export interface FilteredPage<T> {
  items: T[];
  /** The key to continue after; undefined when the rows ended. */
  next: string | undefined;
}

export interface FilteredPageOptions<T> {
  /** Up to `limit` rows after the key `after`, in key order. */
  fetch: (after: string, limit: number) => T[];
  keyOf: (row: T) => string;
  /** Undefined: every row is shown (one read of `limit + 1` rows, as for admins). */
  keep: ((row: T) => boolean) | undefined;
  after: string;
  limit: number;
  /** Batches read at most (each of `limit + 1` rows). */
  maxBatches?: number;
}

export const MAX_BATCHES = 20;

export function filteredPage<T>({ fetch, keyOf, keep, after, limit, maxBatches = MAX_BATCHES }: FilteredPageOptions<T>): FilteredPage<T> {
  // One more than a page per batch: with nothing filtered, the extra row says whether a next page exists.
  const batch = limit + 1;
  const items: T[] = [];
  let cursor = after;
  for (let read = 0; read < maxBatches; read++) {
    const rows = fetch(cursor, batch);
    for (const row of rows) {
      if (keep && !keep(row)) {
        cursor = keyOf(row);
        continue;
      }
      // A shown row beyond the page: there is a next page, starting after the page's last row.
      if (items.length === limit) return { items, next: keyOf(items[limit - 1] as T) };
      items.push(row);
      cursor = keyOf(row);
    }
    if (rows.length < batch) return { items, next: undefined };
  }
  // Bounded: whatever was read is shown, the rest is one "next" away.
  return { items, next: cursor };
}

/**
 * How many rows `keep` lets through, reading batches of `batch` rows and at most `maxBatches` of
 * them; `capped` when it stopped before the rows ended (the count is then a lower bound).
 */
export function filteredCount<T>({ fetch, keyOf, keep, batch, maxBatches = MAX_BATCHES }: { fetch: (after: string, limit: number) => T[]; keyOf: (row: T) => string; keep: (row: T) => boolean; batch: number; maxBatches?: number }): { count: number; capped: boolean } {
  let count = 0;
  let cursor = '';
  for (let read = 0; read < maxBatches; read++) {
    const rows = fetch(cursor, batch);
    for (const row of rows) if (keep(row)) count++;
    if (rows.length < batch) return { count, capped: false };
    cursor = keyOf(rows[rows.length - 1] as T);
  }
  return { count, capped: true };
}
