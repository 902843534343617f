/**
 * @module auth/authenticator
 * Turns an Authorization header into an identity and an identity into allowed actions. Verified
 * headers are kept in a small LRU keyed by the header itself, so a bcrypt comparison or a JWT
 * signature check happens once per credential, not once per request: the manifest fast path
 * only looks here. Entries live until the token expires or a minute passes, and all are dropped
 * when the htpasswd file is re-read or a robot token is revoked. Failures count against the
 * client's address (auth/failure-limiter) and are logged without the secret. A request without an
 * Authorization header that came with a verified client certificate (mutual TLS) is made by the
 * account the certificate names (auth/certificate-accounts); a header, when there is one, counts.
 */
import { LRUCache } from 'lru-cache';
import { RegistryError } from '../registry/errors.ts';
import type { Logger } from '../util/logger.ts';
import type { CertificateAccounts } from './certificate-accounts.ts';
import type { FailureLimiter } from './failure-limiter.ts';
import { BCRYPT_MAX_PASSWORD_BYTES, type HtpasswdAccounts } from './htpasswd.ts';
import { ROBOT_PREFIX, type RobotTokens } from './robot-tokens.ts';
import { actionsOf, maxRole, type AccessRules, type Action, type Role } from './rules.ts';
import type { TokenService } from './token-service.ts';

export type Identity =
  | { kind: 'anonymous' }
  /** `via`: the account was named by a client certificate rather than proved by a password. */
  | { kind: 'account'; name: string; via?: 'certificate' }
  | { kind: 'robot'; id: string; role: Role }
  /** `account`: the htpasswd account the token was issued to, whose rules are applied again on use. */
  | { kind: 'bearer'; subject: string; account: string | undefined; access: Map<string, ReadonlySet<Action>> };

interface Cached {
  identity: Identity;
  until: number;
}

/** How long a verified Basic credential or robot token is trusted before it is checked again. */
const CACHE_MS = 60_000;
const ANONYMOUS: Identity = { kind: 'anonymous' };

/**
 * Longest Authorization header verified: a bearer token granting dozens of repositories stays
 * well under it, and anything longer is refused before base64, bcrypt or a signature check run.
 */
export const MAX_AUTHORIZATION_CHARS = 8192;
/** Longest user name in Basic credentials (bytes, UTF-8). */
export const MAX_USER_BYTES = 256;
/** How much of a refused user name goes into the log. */
const LOGGED_USER_CHARS = 64;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function loggable(user: string | undefined): string | undefined {
  return user === undefined || user.length <= LOGGED_USER_CHARS ? user : `${user.slice(0, LOGGED_USER_CHARS)}…`;
}

export interface AuthenticatorDeps {
  accounts: HtpasswdAccounts | undefined;
  /** Accounts named by client certificates; undefined: certificates name no account. */
  certificates?: CertificateAccounts | undefined;
  robots: RobotTokens;
  tokens: TokenService;
  rules: AccessRules;
  anonymous: 'none' | 'pull';
  limiter: FailureLimiter;
  log: Logger;
  now?: () => number;
}

export class Authenticator {
  readonly #d: AuthenticatorDeps;
  readonly #now: () => number;
  readonly #cache = new LRUCache<string, Cached>({ max: 1024 });
  /** Identities by certificate CN: the mapping never changes while the process runs. */
  readonly #byCertificate = new LRUCache<string, Identity>({ max: 1024 });

  constructor(deps: AuthenticatorDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
    const drop = () => this.#cache.clear();
    if (deps.accounts) deps.accounts.onReload = drop;
    deps.robots.onRevoke = drop;
  }

  get service(): string {
    return this.#d.tokens.service;
  }

  get tokens(): TokenService {
    return this.#d.tokens;
  }

  /**
   * The identity for a header already verified, without any I/O (the manifest fast path), else
   * undefined. Without a header: the account `certificate` (a verified client certificate's CN)
   * names, else anonymous.
   */
  cached(header: string | undefined, certificate?: string): Identity | undefined {
    if (header === undefined) return certificate === undefined ? ANONYMOUS : this.#certificateIdentity(certificate);
    if (header.length > MAX_AUTHORIZATION_CHARS) return undefined;
    const hit = this.#cache.get(header);
    if (!hit) return undefined;
    if (this.#now() < hit.until) return hit.identity;
    this.#cache.delete(header);
    return undefined;
  }

  /**
   * The identity behind `header` (anonymous when there is none). Throws UNAUTHORIZED (with
   * `challenge`) for credentials that do not check out and TOOMANYREQUESTS while the client is
   * backing off.
   */
  async authenticate(header: string | undefined, client: string, challenge: string, opts: { bearer?: boolean; certificate?: string | undefined } = {}): Promise<Identity> {
    const known = this.cached(header, opts.certificate);
    if (known) return known;
    const header_ = header as string;
    const wait = this.#d.limiter.blockedFor(client);
    if (wait !== undefined) {
      throw new RegistryError('TOOMANYREQUESTS', { message: 'too many failed authentication attempts; try again later', headers: { 'Retry-After': String(wait) } });
    }
    const found =
      header_.length > MAX_AUTHORIZATION_CHARS
        ? { until: 0, reason: `authorization header longer than ${MAX_AUTHORIZATION_CHARS} characters` }
        : await this.#verify(header_, opts.bearer ?? true);
    if (!found.identity) {
      this.#d.limiter.fail(client);
      // The user name is logged (it tells an operator whose password is wrong); the secret never is.
      this.#d.log.warn({ client, user: loggable(found.user), reason: found.reason }, 'client authentication failed');
      throw new RegistryError('UNAUTHORIZED', { message: 'authentication required: the credentials were not accepted', headers: { 'WWW-Authenticate': challenge } });
    }
    this.#d.limiter.succeed(client);
    this.#cache.set(header_, { identity: found.identity, until: Math.min(found.until, this.#now() + CACHE_MS) });
    return found.identity;
  }

  /** The actions `identity` may take on a repository: `canonical` for rules, `requested` (the client's name) for bearer tokens. */
  allowed(identity: Identity, canonical: string, requested: string): readonly Action[] {
    const anonymousRole: Role | undefined = this.#d.anonymous === 'pull' ? 'pull' : undefined;
    switch (identity.kind) {
      case 'anonymous':
        return actionsOf(anonymousRole);
      case 'account':
        return actionsOf(maxRole(this.#d.rules.roleFor(identity.name, canonical), anonymousRole));
      case 'robot':
        return actionsOf(identity.role);
      case 'bearer': {
        const granted = identity.access.get(requested);
        return granted ? [...granted] : actionsOf(anonymousRole);
      }
    }
  }

  /**
   * Whether `identity` may take `action` on a repository (see {@link allowed}). A bearer token's
   * grant names the repository as the client did; an account's rules are applied again to the
   * registry this request routes to, since a name without a registry (`library/alpine` with
   * containerd's `?ns=`) may reach a different one than the token endpoint could tell.
   */
  may(identity: Identity, canonical: string, requested: string, action: Action): boolean {
    if (identity.kind === 'bearer') {
      const granted = identity.access.get(requested);
      if (granted && (granted.has(action) || granted.has('*'))) {
        if (identity.account === undefined) return true;
        const rule = this.allowed({ kind: 'account', name: identity.account }, canonical, requested);
        return rule.includes(action) || rule.includes('*');
      }
      if (granted) return false;
    }
    const list = this.allowed(identity, canonical, requested);
    return list.includes(action) || list.includes('*');
  }

  /** Whether `identity` may use the admin API. */
  isAdmin(identity: Identity): boolean {
    if (identity.kind === 'account') return this.#d.rules.isAdmin(identity.name);
    return identity.kind === 'robot' && identity.role === 'admin';
  }

  /** May requests without credentials pass where any valid identity is enough (GET /v2/)? */
  get anonymousPull(): boolean {
    return this.#d.anonymous === 'pull';
  }

  /** Verifies Basic credentials or a robot token (for /auth/token, which takes no bearer JWTs). */
  async #verify(header: string, bearer: boolean): Promise<{ identity?: Identity; until: number; user?: string; reason: string }> {
    const sp = header.indexOf(' ');
    const scheme = (sp === -1 ? header : header.slice(0, sp)).toLowerCase();
    const value = sp === -1 ? '' : header.slice(sp + 1).trim();
    if (scheme === 'basic') {
      if (!BASE64.test(value)) return { until: 0, reason: 'malformed basic credentials (not base64)' };
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon === -1) return { until: 0, reason: 'malformed basic credentials (no colon)' };
      const user = decoded.slice(0, colon);
      const password = decoded.slice(colon + 1);
      if (Buffer.byteLength(user, 'utf8') > MAX_USER_BYTES) return { until: 0, user, reason: `user name longer than ${MAX_USER_BYTES} bytes` };
      if (password.startsWith(ROBOT_PREFIX)) return this.#robot(password, user);
      if (!this.#d.accounts) return { until: 0, user, reason: 'no accounts file' };
      // bcrypt reads only the first 72 bytes: a longer password would pass on its prefix alone.
      if (Buffer.byteLength(password, 'utf8') > BCRYPT_MAX_PASSWORD_BYTES) return { until: 0, user, reason: `password longer than ${BCRYPT_MAX_PASSWORD_BYTES} bytes` };
      if (await this.#d.accounts.verify(user, password)) return { identity: { kind: 'account', name: user }, until: Infinity, user, reason: '' };
      return { until: 0, user, reason: 'wrong user name or password' };
    }
    if (scheme === 'bearer') {
      if (value === '') return { until: 0, reason: 'empty bearer token' };
      if (value.startsWith(ROBOT_PREFIX)) return this.#robot(value, undefined);
      if (!bearer) return { until: 0, reason: 'bearer token where credentials are expected' };
      const verified = await this.#d.tokens.verify(value);
      if (!verified) return { until: 0, reason: 'invalid, expired or foreign bearer token' };
      const access = new Map<string, ReadonlySet<Action>>();
      for (const a of verified.access) access.set(a.name, new Set([...(access.get(a.name) ?? []), ...a.actions]));
      const account = verified.subject === '' || verified.subject.startsWith('robot:') ? undefined : verified.subject;
      return { identity: { kind: 'bearer', subject: verified.subject, account, access }, until: verified.expiresAt, user: verified.subject, reason: '' };
    }
    // The scheme is not echoed: a header that is only a secret would land in the log.
    return { until: 0, reason: 'unsupported authorization scheme' };
  }

  #certificateIdentity(cn: string): Identity {
    let identity = this.#byCertificate.get(cn);
    if (identity === undefined) {
      const name = this.#d.certificates?.accountFor(cn);
      identity = name === undefined ? ANONYMOUS : { kind: 'account', name, via: 'certificate' };
      this.#byCertificate.set(cn, identity);
    }
    return identity;
  }

  #robot(token: string, user: string | undefined): { identity?: Identity; until: number; user?: string; reason: string } {
    const robot = this.#d.robots.verify(token);
    if (!robot) return { until: 0, ...(user === undefined ? {} : { user }), reason: 'unknown, revoked or expired robot token' };
    return { identity: { kind: 'robot', id: robot.id, role: robot.role }, until: robot.expiresAt ?? Infinity, user: `robot:${robot.id}`, reason: '' };
  }
}
