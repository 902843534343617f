/**
 * @module http/server
 * The node:http server around the hono app: one JSON access-log line per request, one Host check
 * for every request, survival of garbage on the socket (podman sends a TLS ClientHello to the
 * plain-HTTP port before falling back to http; see client-error), and a graceful drain on
 * shutdown: /readyz turns 503, the listener closes, idle keep-alive connections close, in-flight
 * pulls get the grace period to finish. A config reload swaps the app (and the fast path) for new
 * requests while requests under way finish with the one they started with.
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Server as NetServer } from 'node:net';
import type { SecureContextOptions, TLSSocket } from 'node:tls';
import { getRequestListener } from '@hono/node-server';
import type { Hono } from 'hono';
import { RegistryError } from '../registry/errors.ts';
import type { Logger } from '../util/logger.ts';
import type { Metrics, CacheLabel } from '../metrics/metrics.ts';
import type { SeriesCounters } from '../metrics/time-series.ts';
import { requestInfo } from './request-info.ts';
import { createClientErrorHandler, responseClosed, responseStarted } from './connection/client-error.ts';
import { hostError } from './connection/host-header.ts';
import { logPath } from './log-path.ts';
import { errorResponse, writeError } from './render-error.ts';
import { cidrList, clientAddress } from './connection/client-address.ts';
import { createProxyFront } from './connection/proxy-front.ts';
import { followTlsFiles, loadTlsContext, type TlsFiles } from './connection/tls-context.ts';

export interface RunningServer {
  readonly server: http.Server;
  readonly address: AddressInfo;
  readonly url: string;
  /** Requests whose response has not finished. */
  readonly inFlight: number;
  /** Stops accepting, waits for in-flight requests up to `graceMs`, then cuts what is left. */
  close(graceMs: number): Promise<{ forced: number }>;
  /** Serves new requests with `handler`; requests already started keep the one they began with. */
  setHandler(handler: RequestHandler): void;
  /** The TLS files served now; undefined on a plain-HTTP listener. */
  readonly tlsFiles: TlsFiles | undefined;
  /** Serves new handshakes with `context` (loaded from `files`) and watches those files; throws on a plain-HTTP listener. */
  setTls(files: TlsFiles, context: SecureContextOptions): void;
}

/** What a config reload can swap: the app, its fast path and whose X-Forwarded-For is believed. */
export interface RequestHandler {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  app: Hono<any>;
  /** Answers what it can before the app sees the request (see v2-routes' manifest fast path); false passes it on. */
  fast?: ((req: http.IncomingMessage, res: http.ServerResponse) => boolean) | undefined;
  /** Peers whose X-Forwarded-For names the client. */
  trustedProxies?: readonly string[] | undefined;
}

/** Route label for requests that never reached the /v2 handler's routing. */
function routeOf(url: string | undefined): string {
  const path = url?.split('?')[0] ?? '';
  if (path === '/healthz' || path === '/readyz') return 'health';
  if (path === '/metrics') return 'metrics';
  if (path.startsWith('/admin/')) return 'admin';
  if (path === '/v2' || path === '/v2/') return 'base';
  return path.startsWith('/v2/') ? 'invalid' : 'other';
}

export interface ServerOptions {
  host: string;
  port: number;
  log: Logger;
  metrics?: Metrics;
  /** Told each response's cache result and bytes, for the console's traffic history. */
  series?: SeriesCounters;
  /** How long a client may take to send a request's headers before it gets 408 (ms). */
  headersTimeoutMs?: number;
  /** Answers what it can before the app sees the request (see v2-routes' manifest fast path); false passes it on. */
  fast?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
  /** Serve HTTPS from these PEM files (reloaded when they change); clientCA requires client certificates. */
  tls?: TlsFiles | undefined;
  /** Read PROXY protocol headers from these peers only; `direct` addresses (cluster replicas) may connect without one. */
  proxyProtocol?: { trustedCidrs: readonly string[]; timeout: number; direct?: ((address: string | undefined) => boolean) | undefined } | undefined;
  /** Peers whose X-Forwarded-For names the client. */
  trustedProxies?: readonly string[] | undefined;
  /** How often the TLS files are checked for a change (ms). */
  tlsWatchIntervalMs?: number;
}

const CLIENT_CN = Symbol('ocimirror.client-cn');

/**
 * The subject CN of the connection's client certificate, read once per connection: getPeerCertificate
 * builds a new object (names, fingerprints, raw DER) on every call, and keep-alive clients send many requests.
 */
function clientCN(socket: TLSSocket & { [CLIENT_CN]?: string | null }): string | undefined {
  if (socket[CLIENT_CN] === undefined) socket[CLIENT_CN] = (socket.getPeerCertificate().subject?.CN as string | undefined) ?? null;
  return socket[CLIENT_CN] ?? undefined;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function startServer(app: Hono<any>, opts: ServerOptions): Promise<RunningServer> {
  // Access lines carry only the fields below, none of them a credential (request headers other
  // than User-Agent are never logged, query values other than routing ones are replaced), so they
  // skip redaction: it costs ~4 µs a line, most of the logger's share of a manifest hit.
  const accessLog = opts.log.child({ module: 'access' }, { redact: [] });
  let current = prepareHandler({ app, fast: opts.fast, trustedProxies: opts.trustedProxies });
  const headersTimeout = opts.headersTimeoutMs ?? 30_000;
  let inFlight = 0;
  const mutualTls = opts.tls?.clientCA !== undefined;
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const started = process.hrtime.bigint();
    // Read once: a reload during this request does not change what serves it.
    const { listener, fast, trustedProxies } = current;
    const socket = req.socket;
    const socketBytes = socket.bytesWritten;
    inFlight++;
    responseStarted(socket);
    // Read now: a closed socket no longer knows its peer.
    const reqInfo = requestInfo(req);
    reqInfo.client = clientAddress(req, trustedProxies);
    // The handshake already refused clients without a valid certificate; the CN names who pulled.
    if (mutualTls) reqInfo.clientCN = clientCN(socket as TLSSocket);
    res.once('close', () => {
      inFlight--;
      const info = requestInfo(req);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const bytes = socket.bytesWritten - socketBytes + (info.sendfileBytes ?? 0);
      const cache: CacheLabel = info.cache ?? (res.getHeader('x-cache') as CacheLabel | undefined) ?? 'NONE';
      // Peers' health checks come every healthInterval from each replica: successful ones only at debug.
      const routine = res.statusCode < 400 && req.url?.startsWith('/cluster/') === true;
      accessLog[routine ? 'debug' : 'info']({
        method: req.method,
        path: logPath(req.url),
        status: res.statusCode,
        bytes,
        ms,
        client: info.client,
        clientCN: info.clientCN,
        cache: cache === 'NONE' ? undefined : cache,
        upstream: info.upstream,
        completed: res.writableFinished,
        ua: req.headers['user-agent'],
      });
      opts.series?.request(cache, bytes);
      opts.metrics?.observeRequest({ route: info.route ?? routeOf(req.url), method: req.method ?? 'GET', status: res.statusCode, cache, bytes, seconds: ms / 1000 });
      // Last: it may write a pipelined request's error answer, which is not this response's bytes.
      responseClosed(socket);
    });
    const badHost = hostError(req);
    if (badHost) return writeError(badHost, req.method, res);
    if (fast?.(req, res)) return;
    void listener(req, res);
  };
  const serverOptions: http.ServerOptions = {
      keepAliveTimeout: 65_000,
      requestTimeout: 0,
      headersTimeout,
      // node checks header deadlines on this interval (30 s by default, which let a slow sender
      // run to twice the timeout); a sweep over the open connections is cheap.
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(headersTimeout / 2))),
      // hostError answers a missing Host with the envelope instead of node's empty 400.
      requireHostHeader: false,
  };
  const tlsFiles = opts.tls;
  const server: http.Server = tlsFiles
    ? https.createServer({ ...serverOptions, ...loadTlsContext(tlsFiles), requestCert: mutualTls, rejectUnauthorized: mutualTls }, onRequest)
    : http.createServer(serverOptions, onRequest);
  server.on('clientError', createClientErrorHandler(accessLog));
  const tls = tlsFiles ? followTlsFiles(server as https.Server, tlsFiles, opts.log, opts.tlsWatchIntervalMs) : undefined;
  const unwatch = () => tls?.stop();
  // Behind an L4 balancer the socket is accepted by the front end, which hands it on once the header is read.
  const front: NetServer = opts.proxyProtocol
    ? createProxyFront({ trusted: cidrList(opts.proxyProtocol.trustedCidrs), timeoutMs: opts.proxyProtocol.timeout, target: server, log: opts.log, direct: opts.proxyProtocol.direct })
    : server;
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.listen(opts.port, opts.host, () => {
      front.off('error', reject);
      resolve();
    });
  }).catch((err: unknown) => {
    unwatch();
    throw err;
  });
  // The HTTP server never listens itself then; 'listening' starts its connection tracking (header timeouts, closeIdleConnections).
  if (front !== server) server.emit('listening');
  const address = front.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    server,
    address,
    url: `${tlsFiles ? 'https' : 'http'}://${host === '0.0.0.0' ? '127.0.0.1' : host === '[::]' ? '[::1]' : host}:${address.port}`,
    get inFlight() {
      return inFlight;
    },
    setHandler(handler) {
      current = prepareHandler(handler);
    },
    get tlsFiles() {
      return tls?.files;
    },
    setTls(files, context) {
      if (!tls) throw new Error('Cannot set TLS files on a plain-HTTP listener');
      tls.switchTo(files, context);
    },
    async close(graceMs: number) {
      unwatch();
      const closed = Promise.all([
        new Promise<void>((resolve) => server.close(() => resolve())),
        front === server ? undefined : new Promise<void>((resolve) => front.close(() => resolve())),
      ]);
      server.closeIdleConnections();
      const deadline = Date.now() + graceMs;
      while (inFlight > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        server.closeIdleConnections();
      }
      const forced = inFlight;
      server.closeAllConnections();
      await closed;
      return { forced };
    },
  };
}

/** The node:http listener of a hono app, built once per app, with the CIDR list parsed. */
function prepareHandler(handler: RequestHandler) {
  const listener = getRequestListener(handler.app.fetch, {
    overrideGlobalObjects: false,
    // HTTP/1.0 may omit Host (hostError lets it through); the adapter needs some host for its URL.
    hostname: 'localhost',
    // The adapter's own refusals of a request target (e.g. a backslash in the path) get the envelope too.
    errorHandler: (err) => {
      const { status, headers, body } = errorResponse(new RegistryError('BAD_REQUEST', { message: `the request target is not valid: ${(err as Error).message}` }), 'GET');
      return new Response(body, { status, headers });
    },
  });
  return { listener, fast: handler.fast, trustedProxies: handler.trustedProxies?.length ? cidrList(handler.trustedProxies) : undefined };
}
