/**
 * @module upstream/auth/authenticator
 * The `Authorization` an upstream wants, as Docker Hub, ghcr.io and distribution ask for it:
 *
 * - Bearer (distribution docs/spec/auth/token.md): the registry answers 401 with
 *   `Bearer realm=…,service=…,scope=…`; we GET `realm?service=…&scope=…`, anonymously or with
 *   HTTP Basic credentials when the upstream has `auth` ("the registry client … supports Basic
 *   Authentication to these token servers"), and retry with `Authorization: Bearer <token>`.
 * - Basic (RFC 7617): when the challenge is Basic and credentials exist, send them.
 *
 * What a challenge taught is remembered per upstream, so later requests carry a token (or Basic
 * credentials) up front instead of paying a 401 round trip each; a 401 on them runs the flow again.
 * Tokens and credentials are never logged, and reach only the hosts realm-policy allows.
 */
import { request, type Dispatcher } from 'undici';
import type { UpstreamConfig } from '../../config/schema.ts';
import { RegistryError } from '../../registry/errors.ts';
import type { Logger } from '../../util/logger.ts';
import { checkRealm } from './realm-policy.ts';
import { parseTokenResponse, TokenCache, type BearerToken } from './token-cache.ts';
import { badGateway, toUnavailable, unavailable } from '../transport/transport-error.ts';
import { parseWwwAuthenticate } from './www-authenticate.ts';
import { basicAuthorization } from '../../util/basic-auth.ts';

/** Token responses are a few KiB; anything far larger is not a token response. */
const MAX_TOKEN_RESPONSE_BYTES = 1 << 20;
/** Repositories whose challenge scope differs from the default one we remember, bounded. */
const MAX_LEARNED_SCOPES = 1024;

export interface AuthCounters {
  tokenFetches: number;
}

export interface AuthenticatorOptions {
  config: UpstreamConfig;
  /** The dispatcher for a request to a URL (the token realm's host may be proxied differently). */
  dispatcher: (url: URL) => Dispatcher;
  logger: Logger;
  counters: AuthCounters;
  userAgent: string;
  now?: () => number;
}

type Mode = { kind: 'none' } | { kind: 'basic' } | { kind: 'bearer'; realm: URL; service: string | undefined };

/** The scope a pull of `repository` needs (distribution docs/spec/auth/scope.md: `repository:<name>:pull`). */
export function pullScope(repository: string): string {
  return repository === '' ? '' : `repository:${repository}:pull`;
}

export class UpstreamAuthenticator {
  readonly #config: UpstreamConfig;
  readonly #dispatcher: (url: URL) => Dispatcher;
  readonly #log: Logger;
  readonly #counters: AuthCounters;
  readonly #userAgent: string;
  readonly #now: () => number;
  readonly #tokens: TokenCache;
  readonly #basic: string | undefined;
  /** Challenge scopes that differ from pullScope(repository), e.g. registries asking for `pull,push`. */
  readonly #learnedScopes = new Map<string, string>();
  #mode: Mode = { kind: 'none' };

  constructor({ config, dispatcher, logger, counters, userAgent, now = Date.now }: AuthenticatorOptions) {
    this.#config = config;
    this.#dispatcher = dispatcher;
    this.#log = logger;
    this.#counters = counters;
    this.#userAgent = userAgent;
    this.#now = now;
    this.#tokens = new TokenCache({ now });
    this.#basic = config.auth
      ? basicAuthorization(config.auth.username, config.auth.password)
      : undefined;
  }

  /** Authorization to send up front for a request on `repository`, from what earlier challenges taught. */
  async authorization(repository: string, signal?: AbortSignal): Promise<string | undefined> {
    const mode = this.#mode;
    if (mode.kind === 'basic') return this.#basic;
    if (mode.kind === 'bearer') {
      const scope = this.#learnedScopes.get(repository) ?? pullScope(repository);
      return `Bearer ${await this.#token(mode.realm, mode.service, scope, signal)}`;
    }
    return undefined;
  }

  /**
   * After a 401 from the upstream: the Authorization for one retry, or undefined when retrying
   * cannot help (no usable challenge, no credentials for Basic, or the same header was just refused).
   * `sent` is what the refused request carried.
   */
  async respond(
    wwwAuthenticate: string | undefined,
    repository: string,
    sent: string | undefined,
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    const challenges = parseWwwAuthenticate(wwwAuthenticate);
    // Prefer Bearer, as containerd does (remotes/docker/auth/parse.go sorts token > digest > basic).
    const bearer = challenges.find((c) => c.scheme === 'bearer' && c.params.realm);
    if (bearer) {
      const realm = checkRealm(bearer.params.realm as string, this.#config, { withCredentials: this.#basic !== undefined });
      const service = bearer.params.service;
      const scope = bearer.params.scope ?? pullScope(repository);
      if (repository !== '' && bearer.params.scope !== undefined) this.#learnScope(repository, scope);
      this.#mode = { kind: 'bearer', realm, service };
      const key = cacheKey(realm, service, scope);
      // The token we sent was refused: it may have been revoked before its time, so fetch anew.
      if (sent?.startsWith('Bearer ')) this.#tokens.invalidate(key, sent.slice('Bearer '.length));
      const header = `Bearer ${await this.#token(realm, service, scope, signal)}`;
      return header === sent ? undefined : header;
    }
    if (challenges.some((c) => c.scheme === 'basic') && this.#basic !== undefined) {
      this.#mode = { kind: 'basic' };
      return this.#basic === sent ? undefined : this.#basic;
    }
    if (challenges.length === 0 || (this.#basic === undefined && challenges.some((c) => c.scheme === 'basic'))) {
      this.#log.debug({ schemes: challenges.map((c) => c.scheme) }, 'upstream 401 without a challenge we can answer');
    } else {
      this.#log.warn({ schemes: challenges.map((c) => c.scheme) }, 'upstream asks for an authentication scheme ocimirror does not support');
    }
    return undefined;
  }

  #token(realm: URL, service: string | undefined, scope: string, signal: AbortSignal | undefined): Promise<string> {
    return this.#tokens.getOrFetch(cacheKey(realm, service, scope), () => this.#fetchToken(realm, service, scope), signal);
  }

  /**
   * One token request. Shared by every request waiting on the same scope, so it runs detached from
   * their signals with its own timeout (the upstream's `timeout`, covering the whole exchange).
   */
  async #fetchToken(realm: URL, service: string | undefined, scope: string): Promise<BearerToken> {
    const url = new URL(realm);
    if (service !== undefined) url.searchParams.set('service', service);
    // Several scopes are space-separated in the challenge and repeated in the query (token.md, `scope`).
    for (const s of scope.split(' ')) if (s !== '') url.searchParams.append('scope', s);
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': this.#userAgent };
    if (this.#basic !== undefined) headers.authorization = this.#basic;
    const timeout = this.#config.timeout;
    this.#counters.tokenFetches++;
    const log = { realm: url.host, scope, withCredentials: this.#basic !== undefined };

    let res: Dispatcher.ResponseData;
    try {
      res = await request(url, {
        dispatcher: this.#dispatcher(url),
        method: 'GET',
        headers,
        signal: AbortSignal.timeout(timeout),
        headersTimeout: timeout,
        bodyTimeout: timeout,
      });
    } catch (err) {
      if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
        throw unavailable(this.#config.name, url, `token service did not answer within ${timeout} ms`, err);
      }
      throw toUnavailable(err, this.#config.name, url);
    }
    const body = await readCapped(res.body, MAX_TOKEN_RESPONSE_BYTES).catch((err: unknown) => {
      throw err instanceof TooLarge
        ? badGateway(`upstream ${this.#config.name}: token service ${url.host} sent ${err.message}`)
        : toUnavailable(err, this.#config.name, url);
    });
    if (res.statusCode !== 200) {
      this.#log.warn({ ...log, status: res.statusCode }, 'token service refused a token');
      throw tokenError(res.statusCode, res.headers, this.#config.name, url, this.#basic !== undefined);
    }
    try {
      const token = parseTokenResponse(JSON.parse(body.toString('utf8')), this.#now());
      this.#log.debug({ ...log, expiresAt: new Date(token.expiresAt).toISOString() }, 'fetched upstream token');
      return token;
    } catch (cause) {
      throw badGateway(`upstream ${this.#config.name}: token service ${url.host} sent an unusable token response`, { cause });
    }
  }

  #learnScope(repository: string, scope: string): void {
    if (scope === pullScope(repository)) {
      this.#learnedScopes.delete(repository);
      return;
    }
    if (this.#learnedScopes.size >= MAX_LEARNED_SCOPES) this.#learnedScopes.clear();
    this.#learnedScopes.set(repository, scope);
  }
}

function cacheKey(realm: URL, service: string | undefined, scope: string): string {
  return `${realm.href}\n${service ?? ''}\n${scope}`;
}

function tokenError(
  status: number,
  headers: Dispatcher.ResponseData['headers'],
  name: string,
  url: URL,
  withCredentials: boolean,
): RegistryError {
  const where = `upstream ${name}: token service ${url.host}`;
  // DENIED, not UNAUTHORIZED: the mirror's own credentials were refused, and a 401 would make the
  // pulling client try to log in to the mirror (the same choice as proxy/upstream-errors.ts).
  if (status === 401 || status === 403) {
    return new RegistryError('DENIED', {
      message: withCredentials
        ? `${where} refused the configured credentials (upstreams[].auth of upstream '${name}')`
        : `${where} refused an anonymous token; configure upstreams[].auth for upstream '${name}' if it needs credentials`,
      upstreamStatus: status,
    });
  }
  if (status === 429) {
    const retryAfter = headers['retry-after'];
    const value = Array.isArray(retryAfter) ? retryAfter[0] : retryAfter;
    return new RegistryError('TOOMANYREQUESTS', {
      message: `${where} is rate limiting`,
      upstreamStatus: status,
      headers: value ? { 'Retry-After': value } : {},
    });
  }
  return badGateway(`${where} answered ${status}`, { upstreamStatus: status });
}

class TooLarge extends Error {}

/** The whole body, refusing to buffer more than `limit` bytes. */
async function readCapped(body: Dispatcher.ResponseData['body'], limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += chunk.length;
    if (total > limit) {
      body.on('error', () => {});
      body.destroy();
      throw new TooLarge(`a response larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
