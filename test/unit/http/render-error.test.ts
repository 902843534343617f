/**
 * @module test/unit/http/render-error
 * The one onError handler. OCI distribution-spec v1.1 "Error Codes": an error body is
 * `{"errors":[{"code","message","detail"}]}` with `detail` optional; "API Version Check": the
 * `Docker-Distribution-API-Version: registry/2.0` header. RFC 9110 §9.3.2: a response to HEAD
 * carries the headers GET would, and no content. RegistryError headers (Retry-After on 429,
 * Content-Range on 416, Allow on 405) reach the client; anything else is a bare 500 UNKNOWN
 * whose message stays in the log.
 */
import { Hono } from 'hono';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createErrorRenderer } from '../../../src/http/render-error.ts';
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

/** A pino logger that keeps its JSON lines. */
function capturingLogger(): { log: Logger; lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = [];
  const dest = new Writable({
    write(chunk, _enc, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  const log = pino({ level: 'debug' }, dest);
  return { log, lines: () => chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
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

  it('logs a 5xx RegistryError at warn with its cause, and 4xx not at all', async () => {
    const { log, lines } = capturingLogger();
    await appThrowing(new RegistryError('UNAVAILABLE', { cause: new Error('ECONNREFUSED') }), log).app.request('/boom');
    await appThrowing(new RegistryError('BLOB_UNKNOWN'), log).app.request('/boom');
    const logged = lines();
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ level: 40, code: 'UNAVAILABLE', status: 503, cause: 'ECONNREFUSED', msg: 'request failed' });
  });
});
