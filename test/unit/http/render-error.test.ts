/**
 * @module test/unit/http/render-error
 * The one onError handler. OCI distribution-spec v1.1 "Error Codes": an error body is
 * `{"errors":[{"code","message","detail"}]}` with `detail` optional; "API Version Check": the
 * `Docker-Distribution-API-Version: registry/2.0` header. RFC 9110 §9.3.2: a response to HEAD
 * carries the headers GET would, and no content. RegistryError headers (Retry-After on 429,
 * Content-Range on 416, Allow on 405) reach the client; anything else is a bare 500 UNKNOWN
 * whose message stays in the log.
 */
import http from 'node:http';
import { Hono } from 'hono';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createErrorRenderer } from '../../../src/http/render-error.ts';
import { startServer, type RunningServer } from '../../../src/http/server.ts';
import { RegistryError } from '../../../src/registry/errors.ts';
import { silentLogger, type Logger } from '../../../src/util/logger.ts';

/** An app whose GET /boom throws `err`; `raw` holds what the renderer itself returned. */
function appThrowing(err: unknown, log: Logger = silentLogger) {
  const render = createErrorRenderer(log);
  const raw: Response[] = [];
  const app = new Hono();
  app.onError((e, c) => {
    const res = render(e, c);
    raw.push(res);
    return res;
  });
  app.get('/boom', () => {
    throw err;
  });
  return { app, raw };
}

/** A pino logger that keeps its lines, as written (`text`) and parsed (`lines`). */
function capturingLogger(): { log: Logger; text: () => string[]; lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = [];
  const dest = new Writable({
    write(chunk, _enc, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  const log = pino({ level: 'debug' }, dest);
  const text = () => chunks.join('').split('\n').filter(Boolean);
  return { log, text, lines: () => text().map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('createErrorRenderer', () => {
  it('renders a RegistryError as the OCI envelope with its status and JSON content type', async () => {
    const { app } = appThrowing(new RegistryError('MANIFEST_UNKNOWN', { detail: { tag: 'nope' } }));
    const res = await app.request('/boom');
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
    expect(await res.json()).toEqual({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown to registry', detail: { tag: 'nope' } }] });
  });

  it('omits detail when the error has none', async () => {
    const { app } = appThrowing(new RegistryError('DENIED', { message: 'pulls from this repository are not allowed' }));
    const res = await app.request('/boom');
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ errors: [{ code: 'DENIED', message: 'pulls from this repository are not allowed' }] });
  });

  it('renders an unusable upstream answer as 502 BAD_GATEWAY', async () => {
    const { app } = appThrowing(new RegistryError('BAD_GATEWAY', { upstreamStatus: 500 }));
    const res = await app.request('/boom');
    expect(res.status).toBe(502);
    expect(((await res.json()) as { errors: Array<{ code: string }> }).errors[0]?.code).toBe('BAD_GATEWAY');
  });

  it('sends the error\'s extra headers: Retry-After, Content-Range, Allow', async () => {
    const cases: Array<[RegistryError, Record<string, string>]> = [
      [new RegistryError('TOOMANYREQUESTS', { headers: { 'Retry-After': '30' } }), { 'retry-after': '30' }],
      [new RegistryError('RANGE_INVALID', { headers: { 'Content-Range': 'bytes */1234' } }), { 'content-range': 'bytes */1234' }],
      [new RegistryError('UNSUPPORTED', { headers: { Allow: 'GET, HEAD' } }), { allow: 'GET, HEAD' }],
    ];
    for (const [err, expected] of cases) {
      const res = await appThrowing(err).app.request('/boom');
      expect(res.status).toBe(err.status);
      for (const [name, value] of Object.entries(expected)) expect(res.headers.get(name), name).toBe(value);
    }
  });

  it('lets an error\'s headers replace the defaults it would otherwise get', async () => {
    const { app } = appThrowing(new RegistryError('UNAUTHORIZED', { headers: { 'Content-Type': 'application/problem+json' } }));
    const res = await app.request('/boom');
    expect(res.headers.get('content-type')).toBe('application/problem+json');
  });

  it('renders an unknown error as 500 UNKNOWN without its message', async () => {
    const { app } = appThrowing(new Error('SQLITE_CORRUPT at /var/lib/ocimirror/ocimirror.db'));
    const res = await app.request('/boom');
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(JSON.parse(text)).toEqual({ errors: [{ code: 'UNKNOWN', message: 'unknown error' }] });
    expect(text).not.toContain('SQLITE');
    expect(text).not.toContain('/var/lib');
  });

  it('answers HEAD with the status and headers of GET and no body', async () => {
    const { app, raw } = appThrowing(new RegistryError('TOOMANYREQUESTS', { headers: { 'Retry-After': '7' } }));
    const res = await app.request('/boom', { method: 'HEAD' });
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('7');
    expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
    expect(await res.text()).toBe('');
    // app.fetch drops HEAD bodies on its own, so look at what the renderer itself returned.
    expect(raw).toHaveLength(1);
    expect(raw[0]?.body).toBeNull();
  });

  it('gives HEAD the Content-Length of the body GET would have', async () => {
    const { app, raw } = appThrowing(new RegistryError('MANIFEST_UNKNOWN', { detail: { tag: 'nope' } }));
    const get = await app.request('/boom');
    const body = Buffer.from(await get.arrayBuffer());
    await app.request('/boom', { method: 'HEAD' });
    expect(raw[1]?.headers.get('content-length')).toBe(String(body.length));
    expect(get.headers.get('content-length')).toBe(String(body.length));
  });

  it('counts Content-Length in bytes, not characters', async () => {
    const { app, raw } = appThrowing(new RegistryError('DENIED', { message: 'zugriff verweigert für ä' }));
    await app.request('/boom', { method: 'HEAD' });
    const expected = Buffer.byteLength(JSON.stringify({ errors: [{ code: 'DENIED', message: 'zugriff verweigert für ä' }] }));
    expect(raw[0]?.headers.get('content-length')).toBe(String(expected));
  });

  it('gives GET a body from the same renderer (so the HEAD check above can fail)', async () => {
    const { app, raw } = appThrowing(new RegistryError('TOOMANYREQUESTS'));
    await app.request('/boom');
    expect(raw[0]?.body).not.toBeNull();
  });

  it('logs an unknown error with its stack at error level', async () => {
    const { log, lines } = capturingLogger();
    const { app } = appThrowing(new Error('disk on fire'), log);
    await app.request('/boom?x=1');
    const [line] = lines();
    expect(line).toMatchObject({ level: 50, msg: 'unhandled error', method: 'GET', path: '/boom' });
    expect((line?.err as { message: string; stack: string }).message).toBe('disk on fire');
    expect((line?.err as { stack: string }).stack).toMatch(/disk on fire\n\s+at /);
  });

  it('logs a 5xx RegistryError at warn with its message under err and its cause, and 4xx not at all', async () => {
    const { log, lines } = capturingLogger();
    await appThrowing(new RegistryError('UNAVAILABLE', { message: 'upstream test is unreachable', cause: new Error('ECONNREFUSED') }), log).app.request('/boom');
    await appThrowing(new RegistryError('BLOB_UNKNOWN'), log).app.request('/boom');
    const logged = lines();
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ level: 40, code: 'UNAVAILABLE', status: 503, err: 'upstream test is unreachable', cause: 'ECONNREFUSED', msg: 'request failed' });
  });

  it('writes one msg key per log line', async () => {
    const { log, text } = capturingLogger();
    await appThrowing(new RegistryError('BAD_GATEWAY', { message: 'upstream sent garbage' }), log).app.request('/boom');
    await appThrowing(new Error('disk on fire'), log).app.request('/boom');
    const raw = text();
    expect(raw).toHaveLength(2);
    // JSON.parse keeps the last of duplicate keys, so count them in the text itself.
    for (const line of raw) expect(line.match(/"msg":/g), line).toHaveLength(1);
  });
});

/** One request over a real loopback socket: status, headers and the body bytes that arrived. */
function request(url: string, method: 'GET' | 'HEAD'): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('createErrorRenderer behind the real node:http server', () => {
  let server: RunningServer;

  beforeAll(async () => {
    const app = new Hono();
    app.onError(createErrorRenderer(silentLogger));
    app.get('/manifest', () => {
      throw new RegistryError('MANIFEST_UNKNOWN', { detail: { reference: 'nope' } });
    });
    app.get('/range', () => {
      throw new RegistryError('RANGE_INVALID', { detail: { size: 10 }, headers: { 'Content-Range': 'bytes */10' } });
    });
    app.get('/crash', () => {
      throw new Error('internal');
    });
    server = await startServer(app, { host: '127.0.0.1', port: 0, log: silentLogger });
  });
  afterAll(async () => {
    await server?.close(1000);
  });

  for (const [path, status] of [['/manifest', 404], ['/range', 416], ['/crash', 500]] as const) {
    it(`sends HEAD ${path} the status, headers and Content-Length of its GET (${status}) and no body`, async () => {
      const get = await request(`${server.url}${path}`, 'GET');
      const head = await request(`${server.url}${path}`, 'HEAD');
      expect(get.status).toBe(status);
      expect(get.body.length).toBeGreaterThan(0);
      expect(get.headers['content-length']).toBe(String(get.body.length));
      expect(head.status).toBe(status);
      expect(head.headers['content-length']).toBe(String(get.body.length));
      expect(head.headers['content-type']).toBe(get.headers['content-type']);
      expect(head.headers['docker-distribution-api-version']).toBe('registry/2.0');
      expect(head.body.length).toBe(0);
    });
  }
});
