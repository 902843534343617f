/**
 * @module test/unit/jobs/temp-db
 * Real SQLite files in a temp directory for the job tests, opened the way cache/metadata opens
 * the app's database (WAL), and a clock the tests move by hand.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Database as DB } from 'better-sqlite3';

export interface TempDb {
  readonly file: string;
  /** Opens a new connection on the same file, as a restarted process would. */
  open(): DB;
  /** Closes every connection still open and removes the directory. */
  cleanup(): void;
}

export function tempDb(): TempDb {
  const dir = mkdtempSync(path.join(tmpdir(), 'ocimirror-jobs-'));
  const file = path.join(dir, 'ocimirror.db');
  const opened: DB[] = [];
  return {
    file,
    open() {
      const db = new Database(file);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      opened.push(db);
      return db;
    },
    cleanup() {
      for (const db of opened) if (db.open) db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function clock(start = 1_700_000_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}
