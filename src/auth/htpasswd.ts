/**
 * @module auth/htpasswd
 * Accounts from an htpasswd file of bcrypt hashes (`htpasswd -B`: `$2y$`, or `$2a$`/`$2b$`),
 * re-read when the file changes. Lines with another hash scheme are skipped with a warning:
 * MD5-crypt and SHA-1 entries are too weak to accept. An unknown user costs one bcrypt
 * comparison too, so response times do not tell which accounts exist. Passwords longer than the
 * 72 bytes bcrypt reads are refused (`htpasswd -B` accepts them and hashes the first 72).
 */
import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import bcrypt from 'bcryptjs';
import type { Logger } from '../util/logger.ts';

export interface ParsedHtpasswd {
  accounts: Map<string, string>;
  /** 1-based line numbers of entries that are not bcrypt. */
  skipped: number[];
}

const BCRYPT = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;

export function parseHtpasswd(text: string): ParsedHtpasswd {
  const accounts = new Map<string, string>();
  const skipped: number[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    const user = colon > 0 ? line.slice(0, colon) : '';
    const hash = colon > 0 ? line.slice(colon + 1) : '';
    if (!user || !BCRYPT.test(hash)) {
      skipped.push(i + 1);
      return;
    }
    accounts.set(user, hash);
  });
  return { accounts, skipped };
}

/** bcrypt reads no further than this many bytes of a password. */
export const BCRYPT_MAX_PASSWORD_BYTES = 72;

/** Compared against when the user is unknown (a hash of a random string, cost 5 as `htpasswd -B` writes). */
const DUMMY_HASH = bcrypt.hashSync(String(Math.random()), 5);

export class HtpasswdAccounts {
  readonly #file: string;
  readonly #log: Logger;
  #accounts = new Map<string, string>();
  readonly #onChange = (cur: Stats, prev: Stats): void => {
    if (cur.mtimeMs !== prev.mtimeMs || cur.size !== prev.size || cur.ino !== prev.ino) this.reload();
  };
  /** Called after the file was re-read (cached authentications are dropped). */
  onReload: (() => void) | undefined;

  constructor(file: string, log: Logger) {
    this.#file = file;
    this.#log = log;
    this.reload();
    // Polling (1 s) rather than fs.watch: it survives editors and config-map updates that replace the file.
    watchFile(file, { interval: 1000, persistent: false }, this.#onChange);
  }

  get size(): number {
    return this.#accounts.size;
  }

  /** Reads the file again; a file that cannot be read keeps the accounts already loaded. */
  reload(): void {
    let text: string;
    try {
      text = readFileSync(this.#file, 'utf8');
    } catch (err) {
      this.#log.error({ file: this.#file, err: (err as Error).message }, 'htpasswd file cannot be read: keeping the accounts loaded before');
      return;
    }
    const { accounts, skipped } = parseHtpasswd(text);
    if (skipped.length > 0) this.#log.warn({ file: this.#file, lines: skipped }, 'htpasswd entries skipped: only bcrypt hashes (htpasswd -B) are accepted');
    this.#accounts = accounts;
    this.#log.info({ file: this.#file, accounts: accounts.size }, 'htpasswd accounts loaded');
    this.onReload?.();
  }

  /** False, without a comparison, for a password longer than bcrypt reads (its first 72 bytes would match alone). */
  async verify(user: string, password: string): Promise<boolean> {
    if (Buffer.byteLength(password, 'utf8') > BCRYPT_MAX_PASSWORD_BYTES) return false;
    const hash = this.#accounts.get(user);
    // $2y$ is PHP's and Apache's name for the same algorithm as $2b$.
    const ok = await bcrypt.compare(password, (hash ?? DUMMY_HASH).replace(/^\$2y\$/, '$2b$'));
    return ok && hash !== undefined;
  }

  close(): void {
    // This listener only: a config reload makes the next accounts on the same file before closing these.
    unwatchFile(this.#file, this.#onChange);
  }
}
