/**
 * @module cache/metadata/robot-token-queries
 * The `robot_tokens` table: client robot tokens (auth/robot-tokens), each a public id, the SHA-256
 * of its secret, a role, a description and an optional expiry. Statements are prepared once.
 */
import type { Database, Statement } from 'better-sqlite3';

export interface RobotTokenRow {
  id: string;
  hash: Buffer;
  role: string;
  description: string;
  createdAt: number;
  expiresAt: number | null;
}

const COLUMNS = 'id, hash, role, description, created_at AS createdAt, expires_at AS expiresAt';

export class RobotTokenQueries {
  readonly #insert: Statement<[string, Buffer, string, string, number, number | null]>;
  readonly #get: Statement<[string], RobotTokenRow>;
  readonly #all: Statement<[], RobotTokenRow>;
  readonly #remove: Statement<[string]>;

  constructor(db: Database) {
    this.#insert = db.prepare('INSERT INTO robot_tokens (id, hash, role, description, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)');
    this.#get = db.prepare(`SELECT ${COLUMNS} FROM robot_tokens WHERE id = ?`);
    this.#all = db.prepare(`SELECT ${COLUMNS} FROM robot_tokens ORDER BY created_at, id`);
    this.#remove = db.prepare('DELETE FROM robot_tokens WHERE id = ?');
  }

  insert(row: RobotTokenRow): void {
    this.#insert.run(row.id, row.hash, row.role, row.description, row.createdAt, row.expiresAt);
  }

  get(id: string): RobotTokenRow | undefined {
    return this.#get.get(id);
  }

  /** Every token, oldest first. */
  all(): RobotTokenRow[] {
    return this.#all.all();
  }

  /** Deletes a token; false when there was none. */
  remove(id: string): boolean {
    return this.#remove.run(id).changes > 0;
  }
}
