/**
 * @module console/session
 * Console logins: a random session id in a cookie names a session kept in memory until it expires.
 * Memory is enough: a restart only signs everyone out, and nothing else needs to read sessions.
 * The map is bounded so a flood of logins cannot grow memory; the oldest sessions go first.
 */
import { randomBytes } from 'node:crypto';
import type { ConsoleIdentity } from './page-context.ts';

/** The cookie holding the session id (HttpOnly, SameSite=Strict, Path=/console). */
export const SESSION_COOKIE = 'ocimirror_console';

/** What a login was made with, so a revoked robot token ends the sessions it opened. */
export type SessionCredential =
  /** `digest`: SHA-256 (hex) of the token signed in with, so changing admin.token ends these sessions. */
  | { kind: 'admin-token'; digest: string }
  | { kind: 'account'; name: string } | { kind: 'robot'; id: string };

export interface Session {
  readonly id: string;
  readonly identity: ConsoleIdentity;
  readonly credential: SessionCredential;
  /** The session's CSRF token, carried by every form. */
  readonly csrf: string;
  readonly expiresAt: number;
}

export interface SessionStoreOptions {
  /** How long a login lasts (console.sessionTTL), read at each login so a reload changes it. */
  ttlMs: () => number;
  /** Makes the session's CSRF token from its id. */
  csrfFor: (sessionId: string, expiresAt: number) => string;
  now?: () => number;
  max?: number;
}

export class SessionStore {
  readonly #sessions = new Map<string, Session>();
  readonly #opts: SessionStoreOptions;
  readonly #now: () => number;
  readonly #max: number;

  constructor(opts: SessionStoreOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#max = opts.max ?? 10_000;
  }

  create(identity: ConsoleIdentity, credential: SessionCredential): Session {
    this.#sweep();
    // A Map iterates in insertion order: the first key is the oldest session.
    while (this.#sessions.size >= this.#max) this.#sessions.delete(this.#sessions.keys().next().value as string);
    const id = randomBytes(32).toString('base64url');
    const expiresAt = this.#now() + this.#opts.ttlMs();
    const session: Session = { id, identity, credential, csrf: this.#opts.csrfFor(id, expiresAt), expiresAt };
    this.#sessions.set(id, session);
    return session;
  }

  /** The live session `id` names, or undefined (unknown, or expired: then it is forgotten). */
  get(id: string | undefined): Session | undefined {
    if (id === undefined) return undefined;
    const session = this.#sessions.get(id);
    if (!session) return undefined;
    if (this.#now() >= session.expiresAt) {
      this.#sessions.delete(id);
      return undefined;
    }
    return session;
  }

  delete(id: string | undefined): void {
    if (id !== undefined) this.#sessions.delete(id);
  }

  /** Ends every session opened with robot token `robotId`. */
  revokeRobot(robotId: string): void {
    for (const [id, s] of this.#sessions) if (s.credential.kind === 'robot' && s.credential.id === robotId) this.#sessions.delete(id);
  }

  get size(): number {
    return this.#sessions.size;
  }

  #sweep(): void {
    const now = this.#now();
    for (const [id, s] of this.#sessions) if (now >= s.expiresAt) this.#sessions.delete(id);
  }
}
