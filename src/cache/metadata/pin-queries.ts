/**
 * @module cache/metadata/pin-queries
 * The `pins` table: pins added through the admin API, as normalised image references (what a pin
 * protects is worked out in metadata/pins). Statements are prepared once.
 */
import type { Database, Statement } from 'better-sqlite3';

export interface PinRow {
  ref: string;
  createdAt: number;
}

export class PinQueries {
  readonly #add: Statement<[string, number]>;
  readonly #remove: Statement<[string]>;
  readonly #all: Statement<[], PinRow>;

  constructor(db: Database) {
    this.#add = db.prepare('INSERT OR IGNORE INTO pins (ref, created_at) VALUES (?, ?)');
    this.#remove = db.prepare('DELETE FROM pins WHERE ref = ?');
    this.#all = db.prepare('SELECT ref, created_at AS createdAt FROM pins ORDER BY ref');
  }

  /** Adds a pin; one already there keeps its creation time. */
  add(ref: string, createdAt: number): void {
    this.#add.run(ref, createdAt);
  }

  /** Removes a pin; false when there was none. */
  remove(ref: string): boolean {
    return this.#remove.run(ref).changes > 0;
  }

  /** Every pin, ordered by reference. */
  all(): PinRow[] {
    return this.#all.all();
  }
}
