/**
 * @module cache/metadata/disk-full-error
 * Recognises a write that failed for want of room: SQLite's SQLITE_FULL (better-sqlite3's `code`)
 * or the filesystem's ENOSPC / EDQUOT.
 */
const CODES = new Set(['SQLITE_FULL', 'ENOSPC', 'EDQUOT']);

export function isDiskFullError(err: unknown): err is Error {
  return err instanceof Error && CODES.has((err as NodeJS.ErrnoException).code ?? '');
}
