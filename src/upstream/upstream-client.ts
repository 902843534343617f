/**
 * @module upstream/upstream-client
 * One configured upstream registry: GET/HEAD under its `/v2/`, with authentication, redirects and
 * timeouts handled, and the response body handed over as a stream. The client does not interpret
 * statuses (404, 429, 5xx come back as responses); it throws only when it could not get a response:
 * RegistryError UNAVAILABLE (503) for network failures and timeouts, BAD_GATEWAY (502)
 * for protocol violations (redirect loops, refused token realms, broken token responses), DENIED /
 * TOOMANYREQUESTS when the token service refuses, and the caller's own abort reason when its
 * signal fires. Every request, the token service's and redirect targets' included, leaves through
 * the upstream's {@link Egress}: direct, or through the configured egress proxy.
 *
 * An upstream with several `urls` tries them in order: one that gives no answer or a 5xx is skipped
 * for `failover.backoff` ({@link UrlBreaker}) and the request goes on to the next. Every answer's
 * RateLimit headers update the upstream's {@link RateLimitBudget}.
 */
import type { Readable } from 'node:stream';
import { request } from 'undici';
import type { UpstreamConfig } from '../config/schema.ts';
import { RegistryError } from '../registry/errors.ts';
import { silentLogger, type Logger } from '../util/logger.ts';
import { UpstreamAuthenticator } from './auth/authenticator.ts';
import { BulkClient } from './transport/bulk-client.ts';
import { DIRECT, Egress, type EgressConfig } from './transport/egress.ts';
import { badGateway, ProxyRefusedError, toUnavailable, unavailable } from './transport/transport-error.ts';
import { SlabPool } from '../util/read-slabs.ts';
import { RateLimitBudget, type RateLimitSnapshot } from './rate-limit.ts';
import { UrlBreaker, type UrlState } from './url-breaker.ts';

export interface UpstreamRequest {
  method: 'GET' | 'HEAD';
  /** Repository name, for the token scope (`repository:<name>:pull`); '' for `/v2/` itself. */
  repository: string;
  /** Path after `/v2/`, e.g. `library/alpine/manifests/latest`. */
  path: string;
  query?: Record<string, string>;
  /** Request headers (Accept, Range, …). Authorization and hop-by-hop headers are dropped: auth is the client's job. */
  headers?: Record<string, string>;
  /** Aborts the request, including a body still streaming. */
  signal?: AbortSignal;
  /**
   * Bounds connecting plus waiting for response headers, per hop, in ms; never the body (a body
   * fails only after `bodyTimeout` of silence). Default: the upstream's `timeout`. A caller that
   * needs the whole exchange within a deadline aborts `signal` with its own reason.
   */
  timeout?: number;
  /**
   * A GET of a blob body to store: sent on the bulk client ({@link BulkClient}), whose body chunks
   * are views of reused read slabs. The consumer may hand each chunk it is done with to the
   * response's `release`; one it keeps must simply never be released.
   */
  bulk?: boolean;
}

export interface UpstreamResponse {
  status: number;
  /** Lower-case names; repeated fields joined with ', ' (RFC 9110 §5.3). */
  headers: Record<string, string | undefined>;
  /**
   * The body as it arrives, never buffered. Consume or destroy it (a HEAD's is empty). Errors reach
   * every consumer that listens (pipeline, for await); one nobody listens to is ignored, not fatal.
   */
  body: Readable;
  /** The URL that answered, after redirects. */
  url: string;
  /**
   * On a bulk body: gives a chunk back to the read slabs once its bytes are stored. A chunk still in
   * use must never be released (its bytes would be overwritten); one never released costs only speed.
   */
  release?: (chunk: Buffer) => void;
}

/** Per-upstream counts for metrics; plain numbers the client only ever increments. */
export interface UpstreamCounters {
  /** Calls to request(). */
  requests: number;
  /** request() calls that threw (network, protocol or auth failures; not caller aborts). */
  errors: number;
  /** Requests sent to the token service. */
  tokenFetches: number;
  /** When the upstream last answered (any HTTP status), epoch ms; 0 = never. */
  lastAnswerAt: number;
  /** When a request last got no answer, epoch ms; 0 = never. */
  lastErrorAt: number;
  /** Why, for operators (never contains credentials: messages name the upstream and the cause). */
  lastError: string | null;
}

/** Which of the upstream's URLs serves and its rate-limit budget, for metrics and the admin API. */
export interface UpstreamStatus {
  activeUrl: string;
  urls: UrlState[];
  /** Marked offline: never contacted, tags never expire. */
  offline: boolean;
  rateLimit: RateLimitSnapshot;
  /** Epoch ms until which background work waits for the budget; null when it may run. */
  backgroundPausedUntil: number | null;
}

export interface UpstreamClientOptions {
  logger?: Logger;
  /** The process-wide egress proxy settings (config `egress`); the upstream's own `proxy` beats them. Default: direct. */
  egress?: EgressConfig;
  /** Clock in epoch ms, for token lifetimes (tests move it). */
  now?: () => number;
  /** Read slabs for bulk bodies, shared by the process's clients (created in the composition root). */
  slabs?: SlabPool;
}

/** Docker Hub answers blob GETs with a redirect to its CDN; 5 hops is plenty for any registry. */
const MAX_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** undici reads bodies in 64 KiB buffers by default; 1 MiB roughly doubles download throughput. */
const BODY_HIGH_WATER_MARK = 1 << 20;
/** Headers a caller must not forward: ours to set (authorization, host) or hop-by-hop (RFC 9110 §7.6.1). */
const DROPPED_REQUEST_HEADERS = new Set([
  'authorization',
  'proxy-authorization',
  'cookie',
  'host',
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
]);
const USER_AGENT = 'ocimirror';
/** The schema's default for `upstreams[].failover.backoff`. */
const DEFAULT_FAILOVER_BACKOFF_MS = 30_000;

type RawResponse = { status: number; headers: Record<string, string | undefined>; body: Readable; url: URL; release?: (chunk: Buffer) => void };

export class UpstreamClient {
  readonly name: string;
  readonly config: UpstreamConfig;
  readonly #counters: UpstreamCounters = { requests: 0, errors: 0, tokenFetches: 0, lastAnswerAt: 0, lastErrorAt: 0, lastError: null };
  readonly #egress: Egress;
  readonly #bulk: BulkClient;
  readonly #auth: UpstreamAuthenticator;
  readonly #log: Logger;
  readonly #bases: URL[];
  readonly #breaker: UrlBreaker;
  readonly #budget: RateLimitBudget;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(config: UpstreamConfig, { logger = silentLogger, now = Date.now, egress = DIRECT, slabs = new SlabPool() }: UpstreamClientOptions = {}) {
    // Defensive defaults: configs built by hand (not by the schema) may lack the failover keys.
    const urls = config.urls?.length ? config.urls : [config.url];
    const bases = urls.map((u) => new URL(u));
    for (const base of bases) {
      if (base.protocol !== 'http:' && base.protocol !== 'https:') {
        throw new TypeError(`Expected upstream ${config.name} url to be http(s), got '${base.href}'`);
      }
    }
    for (const key of ['timeout', 'bodyTimeout'] as const) {
      if (!Number.isFinite(config[key]) || config[key] <= 0) {
        throw new TypeError(`Expected upstream ${config.name} ${key} to be a positive number of ms, got ${config[key]}`);
      }
    }
    this.name = config.name;
    this.config = config;
    this.#bases = bases;
    this.#breaker = new UrlBreaker(urls, config.failover?.backoff ?? DEFAULT_FAILOVER_BACKOFF_MS, now);
    this.#budget = new RateLimitBudget(now);
    this.#log = logger.child({ module: 'upstream', upstream: config.name });
    this.#egress = new Egress(config, egress, {
      connectTimeout: config.timeout,
      headersTimeout: config.timeout,
      // The longest pause between two body chunks, never a bound on the whole body: a stalled
      // upstream fails the body instead of holding its client (whole-body deadlines are the callers').
      bodyTimeout: config.bodyTimeout,
      // Keep connections for the bursts of a pull (manifest, config, layers); servers may shorten it.
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 10 * 60_000,
    });
    if (this.#egress.proxied) this.#log.info(this.#egress.describe(), 'upstream requests go through an egress proxy');
    this.#bulk = new BulkClient({ bodyIdleTimeout: config.bodyTimeout, proxyFor: (url) => this.#egress.hop(url), slabs });
    this.#auth = new UpstreamAuthenticator({
      config,
      dispatcher: (url) => this.#egress.dispatcher(url),
      logger: this.#log,
      counters: this.#counters,
      userAgent: USER_AGENT,
      now,
    });
  }

  /** Live counters; read them at scrape time. */
  get counters(): Readonly<UpstreamCounters> {
    return this.#counters;
  }

  /** Which URL serves, each URL's state and the rate-limit budget. */
  status(): UpstreamStatus {
    return {
      activeUrl: this.#breaker.active,
      urls: this.#breaker.states(),
      offline: this.config.offline === true,
      rateLimit: { ...this.#budget.snapshot },
      backgroundPausedUntil: this.backgroundPausedUntil() ?? null,
    };
  }

  /**
   * Until when background work (prefetch, refresh) should wait because the registry's remaining
   * budget is under `rateLimitFloor` (epoch ms); undefined when it may go on.
   */
  backgroundPausedUntil(): number | undefined {
    return this.#budget.pausedUntil(this.config.rateLimitFloor ?? 0);
  }

  async request(req: UpstreamRequest): Promise<UpstreamResponse> {
    const { signal } = req;
    signal?.throwIfAborted();
    if (this.#closed) throw new RegistryError('UNAVAILABLE', { message: `upstream ${this.name} is shutting down` });
    // An offline upstream is never dialled: the proxies serve what is cached (an outage, as for an
    // unreachable one) and a miss fails at once instead of waiting out connect timeouts.
    if (this.config.offline) {
      throw new RegistryError('UNAVAILABLE', { message: `upstream ${this.name} is offline (upstreams[].offline): only cached and imported content is served`, detail: { upstream: this.name } });
    }
    this.#counters.requests++;
    // Validates the path before anything is sent (the same for every base).
    this.#url(this.#bases[0] as URL, req.path, req.query);
    try {
      const order = this.#breaker.order();
      let failure: unknown;
      for (const [n, i] of order.entries()) {
        const base = this.#bases[i] as URL;
        const last = n === order.length - 1;
        let res: UpstreamResponse;
        try {
          res = await this.#requestAt(base, req);
        } catch (err) {
          // A caller's abort or deadline says nothing about this URL; protocol and auth errors would repeat on a mirror.
          if (signal?.aborted || !(err instanceof RegistryError) || err.code !== 'UNAVAILABLE') throw err;
          this.#breaker.failed(i, err.message);
          this.#onFailover(base, err.message, last);
          failure = err;
          continue;
        }
        if (res.status >= 500 && new URL(res.url).origin === base.origin) {
          const reason = `answered ${res.status}`;
          this.#breaker.failed(i, reason);
          this.#onFailover(base, reason, last);
          if (!last) {
            destroyQuietly(res.body);
            continue;
          }
        } else {
          this.#breaker.succeeded(i);
        }
        this.#counters.lastAnswerAt = Date.now();
        return res;
      }
      throw failure;
    } catch (err) {
      // A caller's deadline aborts with a RegistryError (proxy/upstream-deadline): the upstream's
      // failure to answer in time, counted like any other; a client going away is not.
      if (!signal?.aborted || signal.reason instanceof RegistryError) {
        this.#counters.errors++;
        this.#counters.lastErrorAt = Date.now();
        this.#counters.lastError = (err as Error).message;
      }
      throw err;
    }
  }

  #onFailover(base: URL, reason: string, last: boolean): void {
    if (this.#bases.length === 1) return;
    this.#log.warn({ url: base.origin, reason, backoffMs: this.config.failover?.backoff }, last ? 'upstream URL failed; no other URL to try' : 'upstream URL failed; trying the next one');
  }

  /** One request against one of the upstream's base URLs, with authentication and redirects. */
  async #requestAt(base: URL, req: UpstreamRequest): Promise<UpstreamResponse> {
    const { method, repository, signal, timeout = this.config.timeout } = req;
    const bulk = req.bulk === true && method === 'GET';
    const url = this.#url(base, req.path, req.query);
    const headers = requestHeaders(req.headers);
    const sent = await this.#auth.authorization(repository, signal);
    let res = await this.#follow(base, method, url, headers, sent, signal, timeout, bulk);
    if (res.status === 401 && res.url.origin === base.origin) {
      let retry: string | undefined;
      try {
        retry = await this.#auth.respond(res.headers['www-authenticate'], repository, sent, signal);
      } catch (err) {
        destroyQuietly(res.body);
        throw err;
      }
      if (retry !== undefined) {
        await discard(res.body, timeout);
        // One retry only: a second 401 goes back to the caller as it is.
        res = await this.#follow(base, method, url, headers, retry, signal, timeout, bulk);
      }
    }
    this.#budget.observe(res.headers);
    return { status: res.status, headers: res.headers, body: res.body, url: res.url.href, ...(res.release ? { release: res.release } : {}) };
  }

  /**
   * Stops new requests and closes the connections, waiting up to `graceMs` for responses in flight
   * (an unconsumed body would otherwise hold close() open forever), then destroys what is left.
   */
  close(graceMs = 5_000): Promise<void> {
    this.#closed = true;
    this.#closing ??= this.#close(graceMs);
    return this.#closing;
  }

  async #close(graceMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), graceMs);
    });
    // Destroying below makes a pending close() reject; that is the expected end, not an error.
    const closed = Promise.all([this.#egress.close(), this.#bulk.close()]).then(
      () => 'closed' as const,
      () => 'closed' as const,
    );
    const outcome = await Promise.race([closed, timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.#bulk.destroy();
      await this.#egress.destroy();
    }
  }

  #url(base: URL, path: string, query: Record<string, string> | undefined): URL {
    if (/[?#]/.test(path)) throw new TypeError(`Expected an upstream path without query or fragment, got '${path}'`);
    const prefix = `${base.pathname.replace(/\/+$/, '')}/v2/`;
    const url = new URL(`${base.origin}${prefix}${path.replace(/^\/+/, '')}`);
    // `..` segments would escape /v2/ after URL normalisation.
    if (!url.pathname.startsWith(prefix)) throw new TypeError(`Expected an upstream path inside /v2/, got '${path}'`);
    for (const [k, v] of Object.entries(query ?? {})) url.searchParams.append(k, v);
    return url;
  }

  /**
   * Sends and follows redirects (RFC 9110 §15.4), re-issuing the same method: only GET and HEAD
   * are ever sent, so 303's "switch to GET" changes nothing. Authorization goes only to the
   * upstream's own origin: a CDN that a blob redirects to gets a signed URL, not our token.
   */
  async #follow(
    base: URL,
    method: 'GET' | 'HEAD',
    url: URL,
    headers: Record<string, string>,
    authorization: string | undefined,
    signal: AbortSignal | undefined,
    timeout: number,
    bulk: boolean,
  ): Promise<RawResponse> {
    let current = url;
    for (let hop = 0; ; hop++) {
      const sameOrigin = current.origin === base.origin;
      const hopHeaders = authorization !== undefined && sameOrigin ? { ...headers, authorization } : headers;
      const res = await this.#send(method, current, hopHeaders, signal, timeout, bulk);
      const location = res.headers.location;
      if (!REDIRECT_STATUSES.has(res.status) || location === undefined) return res;
      await discard(res.body, timeout);
      if (hop >= MAX_REDIRECTS) {
        throw badGateway(`upstream ${this.name} redirected more than ${MAX_REDIRECTS} times (last from ${current.host})`, {
          upstreamStatus: res.status,
        });
      }
      let next: URL;
      try {
        next = new URL(location, current);
      } catch (cause) {
        throw badGateway(`upstream ${this.name} redirected to an invalid URL`, { cause });
      }
      if (next.protocol !== 'http:' && next.protocol !== 'https:') {
        throw badGateway(`upstream ${this.name} redirected to a ${next.protocol} URL`);
      }
      // Hosts only: redirect URLs to CDNs carry signatures in their query.
      this.#log.debug({ status: res.status, from: current.host, to: next.host }, 'following upstream redirect');
      current = next;
    }
  }

  /**
   * One HTTP exchange, on undici or (a bulk GET) on the bulk client. `timeout` covers connect +
   * response headers through our own timer, which is cleared once headers arrive, so a slow
   * multi-GiB body is never cut by it. The caller's signal stays attached for the body's lifetime
   * (either client destroys the body when it fires).
   */
  async #send(
    method: 'GET' | 'HEAD',
    url: URL,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
    timeout: number,
    bulk: boolean,
  ): Promise<RawResponse> {
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeout);
    const onAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const detach = () => signal?.removeEventListener('abort', onAbort);
    let res: Omit<RawResponse, 'url'>;
    try {
      res = bulk
        ? await this.#bulk.get(url, headers, { signal: controller.signal })
        : await request(url, {
            dispatcher: this.#egress.dispatcher(url),
            method,
            headers,
            signal: controller.signal,
            headersTimeout: timeout,
            highWaterMark: BODY_HIGH_WATER_MARK,
          }).then((r) => ({ status: r.statusCode, headers: flattenHeaders(r.headers), body: r.body }));
      // A plain-http request through a proxy that wants credentials gets the proxy's own 407.
      if (res.status === 407 && this.#egress.hop(url) !== undefined) {
        destroyQuietly(res.body);
        throw new ProxyRefusedError(407);
      }
    } catch (err) {
      detach();
      if (signal?.aborted) throw signal.reason ?? err;
      if (timedOut) throw unavailable(this.name, url, `no response headers within ${timeout} ms`, err);
      throw toUnavailable(err, this.name, url);
    } finally {
      clearTimeout(timer);
    }
    res.body.once('close', detach);
    // A body the caller drops, then aborts or loses to a reset, errors with nobody listening; that
    // must not take the process down. Consumers (pipeline, for await, .on('error')) still see errors.
    res.body.on('error', ignore);
    return { ...res, url };
  }
}

function requestHeaders(input: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = { 'user-agent': USER_AGENT };
  for (const [name, value] of Object.entries(input ?? {})) {
    const lower = name.toLowerCase();
    if (!DROPPED_REQUEST_HEADERS.has(lower)) out[lower] = value;
  }
  return out;
}

function flattenHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(headers)) {
    out[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

/** Bytes of a thrown-away body worth reading to keep its connection; a longer one is cut off. */
const DISCARD_LIMIT = 128 * 1024;

/**
 * Drains a small body (a 401's or a redirect's) so the connection can be reused; one longer than
 * DISCARD_LIMIT, or that stalls longer than `timeout`, is destroyed (its connection with it).
 */
async function discard(body: Readable, timeout: number): Promise<void> {
  const timer = setTimeout(() => destroyQuietly(body), timeout);
  try {
    let read = 0;
    // Breaking out of the loop destroys the body.
    for await (const chunk of body) {
      read += (chunk as Buffer).length;
      if (read > DISCARD_LIMIT) break;
    }
  } catch {
    // A body that fails while being thrown away changes nothing for the caller.
    destroyQuietly(body);
  } finally {
    clearTimeout(timer);
  }
}

/** A body emits 'error' when destroyed; with nobody listening that would crash the process. */
function destroyQuietly(body: Readable): void {
  body.on('error', ignore);
  body.destroy();
}

function ignore(): void {}
