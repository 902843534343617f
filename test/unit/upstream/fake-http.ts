/**
 * @module test/unit/upstream/fake-http
 * Tiny node:http servers standing in for a registry, its token realm and a CDN, recording every
 * request they get so tests can prove what was (and was not) sent where.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach } from 'vitest';
import type { UpstreamConfig } from '../../../src/config/schema.ts';

export interface Recorded {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
}

export interface FakeServer {
  readonly origin: string;
  readonly host: string;
  readonly port: number;
  readonly requests: Recorded[];
  close(): Promise<void>;
}

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => void;

export async function startServer(handler: Handler, host = '127.0.0.1'): Promise<FakeServer> {
  const requests: Recorded[] = [];
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://${req.headers.host ?? host}`);
    requests.push({ method: req.method ?? '', path: url.pathname, query: url.searchParams, headers: req.headers });
    handler(req, res, url);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://${host}:${port}`,
    host,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * Registers an afterEach that runs `cleanup` newest first, whatever the test did; `track` adds the
 * closing of a server or client to it and hands the thing back.
 */
export function cleanupAfterEach(): { cleanup: Array<() => Promise<unknown>>; track: <T extends { close(): Promise<unknown> }>(thing: T) => T } {
  const cleanup: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    while (cleanup.length > 0) await cleanup.pop()?.();
  });
  const track = <T extends { close(): Promise<unknown> }>(thing: T): T => {
    cleanup.push(() => thing.close());
    return thing;
  };
  return { cleanup, track };
}

/** A port nothing listens on: bound, then released. */
export async function closedPort(): Promise<number> {
  const s = await startServer(() => {});
  await s.close();
  return s.port;
}

export function upstreamConfig(url: string, overrides: Partial<UpstreamConfig> = {}): UpstreamConfig {
  return {
    name: 'test-up',
    url,
    urls: [url],
    failover: { backoff: 30_000 },
    rateLimitFloor: 0,
    registries: [],
    tagTTL: 300_000,
    timeout: 5_000,
    bodyTimeout: 30_000,
    fillTimeout: 3_600_000,
    auth: undefined,
    realmHosts: [],
    proxy: undefined,
    offline: false,
    ...overrides,
  };
}

export function json(res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function basic(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

/** The repository in `/v2/<repo>/(manifests|blobs|tags)/…`. */
export function repositoryOf(path: string): string {
  const m = /^\/v2\/(.+?)\/(?:manifests|blobs|tags)\//.exec(path);
  return m?.[1] ?? '';
}

export interface TokenRegistryOptions {
  /** Overrides the realm the challenge names (default: this server's /token). */
  realm?: string;
  /** Credentials the token endpoint demands; anonymous tokens when absent. */
  credentials?: { username: string; password: string };
  expiresIn?: number;
  tokenField?: 'token' | 'access_token';
  /** Serves GETs under /v2/ once authorised; default a small manifest body. */
  serve?: Handler;
}

export interface TokenRegistry extends FakeServer {
  /** Requests to /token only. */
  readonly tokenRequests: Recorded[];
  /** Requests under /v2/ only. */
  readonly registryRequests: Recorded[];
  /** Makes every token issued so far invalid, as a registry that rotated its keys. */
  revokeAll(): void;
}

/** Registry and token service on one server, as distribution with `auth: token` plus a token issuer. */
export async function startTokenRegistry(options: TokenRegistryOptions = {}): Promise<TokenRegistry> {
  const valid = new Set<string>();
  let issued = 0;
  const tokenRequests: Recorded[] = [];
  const registryRequests: Recorded[] = [];
  let self: FakeServer | undefined;
  const server = await startServer((req, res, url) => {
    const recorded = self?.requests.at(-1) as Recorded;
    if (url.pathname === '/token') {
      tokenRequests.push(recorded);
      const { credentials } = options;
      if (credentials && req.headers.authorization !== basic(credentials.username, credentials.password)) {
        json(res, 401, { details: 'incorrect username or password' });
        return;
      }
      const token = `tok-${++issued}`;
      valid.add(token);
      json(res, 200, { [options.tokenField ?? 'token']: token, ...(options.expiresIn ? { expires_in: options.expiresIn } : {}) });
      return;
    }
    registryRequests.push(recorded);
    const auth = req.headers.authorization;
    if (!auth?.startsWith('Bearer ') || !valid.has(auth.slice(7))) {
      const repo = repositoryOf(url.pathname);
      const scope = repo ? `,scope="repository:${repo}:pull"` : '';
      json(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }, {
        'www-authenticate': `Bearer realm="${options.realm ?? `${self?.origin}/token`}",service="fake-registry"${scope}`,
      });
      return;
    }
    if (options.serve) {
      options.serve(req, res, url);
      return;
    }
    json(res, 200, { schemaVersion: 2, path: url.pathname });
  });
  self = server;
  return { ...server, tokenRequests, registryRequests, revokeAll: () => valid.clear() };
}

/** The RegistryError `promise` rejects with (fails the test if it resolves or rejects otherwise). */
export { rejection } from '../../helpers/thrown.ts';
