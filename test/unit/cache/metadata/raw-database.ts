/**
 * @module test/unit/cache/metadata/raw-database
 * A second connection to a metadata database file, past the Metadata API: for tests that set up
 * states the API never produces (orphan rows, a drifted usage row, an access time moved into the
 * past) or that read the file as another process would.
 */
import Database from 'better-sqlite3';
import type { Database as DB } from 'better-sqlite3';

/** Runs `fn` on its own connection to `file`, closed afterwards. */
export function withRawDatabase<T>(file: string, fn: (db: DB) => T): T {
  const db = new Database(file);
  db.pragma('busy_timeout = 5000');
  try {
    return fn(db);
  } finally {
    db.close();
  }
}
