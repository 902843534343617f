import { PassThrough, type Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { RegistryError } from '../../../src/registry/errors.ts';
import { UpstreamClient } from '../../../src/upstream/upstream-client.ts';
import { createUpstreams } from '../../../src/upstream/upstream-pool.ts';
import { createLogger } from '../../../src/util/logger.ts';
import {
  basic,
  cleanupAfterEach,
  closedPort,
  json,
  rejection,
  startServer,
  startTokenRegistry,
  upstreamConfig,
  type FakeServer,
} from './fake-http.ts';

/** Everything a test opened, closed after it whatever happened. */
const { cleanup, track } = cleanupAfterEach();

const manifest = { method: 'GET', repository: 'library/alpine', path: 'library/alpine/manifests/latest' } as const;

async function drain(body: Readable): Promise<string> {
  return text(body);
}

describe('UpstreamClient bearer auth', () => {
  it('fetches an anonymous token for the pull scope and retries with it', async () => {
    const reg = track(await startTokenRegistry());
    const client = track(new UpstreamClient(upstreamConfig(reg.origin)));

    const res = await client.request(manifest);
    expect(res.status).toBe(200);
    expect(JSON.parse(await drain(res.body))).toMatchObject({ path: '/v2/library/alpine/manifests/latest' });

    expect(reg.tokenRequests).toHaveLength(1);
    const tokenReq = reg.tokenRequests[0]!;
    expect(tokenReq.headers.authorization).toBeUndefined();
    expect(tokenReq.query.get('service')).toBe('fake-registry');
    expect(tokenReq.query.getAll('scope')).toEqual(['repository:library/alpine:pull']);
    expect(reg.registryRequests.map((r) => r.headers.authorization)).toEqual([undefined, 'Bearer tok-1']);
  });

  it('sends the configured credentials to the token realm as Basic auth', async () => {
    const credentials = { username: 'mirror', password: 's3cret:with:colons' };
    const reg = track(await startTokenRegistry({ credentials }));
    const client = track(new UpstreamClient(upstreamConfig(reg.origin, { auth: credentials })));

    const res = await client.request(manifest);
    await drain(res.body);
    expect(res.status).toBe(200);
    expect(reg.tokenRequests.map((r) => r.headers.authorization)).toEqual([basic(credentials.username, credentials.password)]);
    // The registry itself only ever sees the token, never the password.
    expect(reg.registryRequests.map((r) => r.headers.authorization)).toEqual([undefined, 'Bearer tok-1']);
  });

  it('accepts a token service that answers with access_token only', async () => {
    const reg = track(await startTokenRegistry({ tokenField: 'access_token' }));
    const client = track(new UpstreamClient(upstreamConfig(reg.origin)));
    const res = await client.request(manifest);
    await drain(res.body);
    expect(res.status).toBe(200);
  });

  it('reuses a cached token for later requests, sending it up front without a 401 round trip', async () => {
    const reg = track(await startTokenRegistry());
    const client = track(new UpstreamClient(upstreamConfig(reg.origin)));

    for (let i = 0; i < 3; i++) await drain((await client.request(manifest)).body);
    expect(reg.tokenRequests).toHaveLength(1);
    expect(reg.registryRequests.map((r) => r.headers.authorization)).toEqual([undefined, 'Bearer tok-1', 'Bearer tok-1', 'Bearer tok-1']);
    expect(client.counters).toMatchObject({ requests: 3, errors: 0, tokenFetches: 1, lastErrorAt: 0, lastError: null });
    expect(client.counters.lastAnswerAt).toBeGreaterThan(0);
  });

  it('asks for a token per repository, since each has its own scope', async () => {
    const reg = track(await startTokenRegistry());
    const client = track(new UpstreamClient(upstreamConfig(reg.origin)));
    await drain((await client.request(manifest)).body);
    await drain((await client.request({ method: 'GET', repository: 'library/redis', path: 'library/redis/manifests/7' })).body);
    expect(reg.tokenRequests.map((r) => r.query.get('scope'))).toEqual(['repository:library/alpine:pull', 'repository:library/redis:pull']);
    // The second repository got its token up front: no second 401.
    expect(reg.registryRequests.filter((r) => r.headers.authorization === undefined)).toHaveLength(1);
  });

  it('asks the realm again once the cached token has expired', async () => {
    let now = Date.parse('2025-01-01T00:00:00Z');
    const reg = track(await startTokenRegistry({ expiresIn: 300 }));
    const client = track(new UpstreamClient(upstreamConfig(reg.origin), { now: () => now }));

    await drain((await client.request(manifest)).body);
    now += 260_000; // still fresh: 300 s lifetime, refreshed 30 s early
    await drain((await client.request(manifest)).body);
    expect(reg.tokenRequests).toHaveLength(1);

    now += 15_000; // inside the refresh margin
    await drain((await client.request(manifest)).body);
    expect(reg.tokenRequests).toHaveLength(2);
    expect(reg.registryRequests.at(-1)?.headers.authorization).toBe('Bearer tok-2');
  });

  it('fetches one token for many concurrent requests on the same repository', async () => {
    const reg = track(await startTokenRegistry());
    const client = track(new UpstreamClient(upstreamConfig(reg.origin)));
    await drain((await client.request(manifest)).body); // learn the challenge
    reg.tokenRequests.length = 0;

    const other = { method: 'GET', repository: 'library/nginx', path: 'library/nginx/manifests/latest' } as const;
    const responses = await Promise.all(Array.from({ length: 8 }, () => client.request(other)));
    await Promise.all(responses.map((r) => drain(r.body)));
    expect(responses.map((r) => r.status)).toEqual(Array(8).fill(200));
    expect(reg.tokenRequests).toHaveLength(1);
  });

  it('fetches a new token and retries once when the registry rejects a cached one', async () => {
    const reg = track(await startTokenRegistry());
    const client = track(new UpstreamClient(upstreamConfig(reg.origin)));
    await drain((await client.request(manifest)).body);
    reg.revokeAll();

    const res = await client.request(manifest);
    await drain(res.body);
    expect(res.status).toBe(200);
    expect(reg.tokenRequests).toHaveLength(2);
    expect(reg.registryRequests.slice(-2).map((r) => r.headers.authorization)).toEqual(['Bearer tok-1', 'Bearer tok-2']);
  });

  it('returns a second 401 to the caller instead of looping', async () => {
    const reg = track(
      await startServer((req, res, url) => {
        if (url.pathname === '/token') return json(res, 200, { token: 'never-good-enough' });
        json(res, 401, { errors: [{ code: 'UNAUTHORIZED' }] }, { 'www-authenticate': `Bearer realm="http://${req.headers.host}/token",service="s"` });
      }),
    );
    const client = track(new UpstreamClient(upstreamConfig(reg.origin)));
    const res = await client.request(manifest);
    await drain(res.body);
    expect(res.status).toBe(401);
    expect(reg.requests.map((r) => r.path)).toEqual(['/v2/library/alpine/manifests/latest', '/token', '/v2/library/alpine/manifests/latest']);
  });

  it('reports a token service that refuses the credentials as DENIED naming the upstream', async () => {
    const reg = track(await startTokenRegistry({ credentials: { username: 'u', password: 'right' } }));
    const client = track(new UpstreamClient(upstreamConfig(reg.origin, { auth: { username: 'u', password: 'wrong' } })));
    const err = await rejection(client.request(manifest));
    expect(err.code).toBe('DENIED');
    expect(err.upstreamStatus).toBe(401);
    expect(err.message).toContain('test-up');
    expect(err.message).not.toContain('wrong');
  });

  it('reports a token service that is down as UNAVAILABLE', async () => {
    const port = await closedPort();
    const reg = track(await startTokenRegistry({ realm: `http://127.0.0.1:${port}/token` }));
    const client = track(new UpstreamClient(upstreamConfig(reg.origin)));
    const err = await rejection(client.request(manifest));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.status).toBe(503);
    expect(err.message).toContain(`127.0.0.1:${port}`);
  });
});

describe('UpstreamClient token realm policy', () => {
  it('refuses a realm on a foreign host without sending it any request, and explains realmHosts', async () => {
    const foreign = track(await startServer((_req, res) => json(res, 200, { token: 'stolen' }), '127.0.0.2'));
    const credentials = { username: 'mirror', password: 'hunter2' };
    const reg = track(await startTokenRegistry({ realm: `${foreign.origin}/token` }));
    const client = track(new UpstreamClient(upstreamConfig(reg.origin, { auth: credentials })));

    const err = await rejection(client.request(manifest));
    expect(err.status).toBe(502);
    expect(err.message).toContain('realmHosts');
    expect(err.message).toContain('127.0.0.2');
    expect(foreign.requests).toHaveLength(0);
    expect(client.counters.errors).toBe(1);
  });

  it('refuses a foreign realm even for anonymous pulls', async () => {
    const foreign = track(await startServer((_req, res) => json(res, 200, { token: 't' }), '127.0.0.2'));
    const reg = track(await startTokenRegistry({ realm: `${foreign.origin}/token` }));
    const client = track(new UpstreamClient(upstreamConfig(reg.origin)));
    await rejection(client.request(manifest));
    expect(foreign.requests).toHaveLength(0);
  });

  it('uses a realm on a host listed in realmHosts', async () => {
    const tokens = track(await startServer((_req, res) => json(res, 200, { token: 'from-realm-host' }), '127.0.0.2'));
    const reg = track(
      await startServer((req, res) => {
        if (req.headers.authorization === 'Bearer from-realm-host') return json(res, 200, {});
        json(res, 401, {}, { 'www-authenticate': `Bearer realm="${tokens.origin}/token",service="s"` });
      }),
    );
    const client = track(new UpstreamClient(upstreamConfig(reg.origin, { realmHosts: ['127.0.0.2'] })));
    const res = await client.request(manifest);
    await drain(res.body);
    expect(res.status).toBe(200);
    expect(tokens.requests).toHaveLength(1);
  });

  it('refuses a realm that is not http(s)', async () => {
    const reg = track(await startTokenRegistry({ realm: 'file:///etc/passwd' }));
    const client = track(new UpstreamClient(upstreamConfig(reg.origin)));
    const err = await rejection(client.request(manifest));
    expect(err.status).toBe(502);
    expect(err.message).toContain('file');
  });
});

describe('UpstreamClient basic auth', () => {
  const credentials = { username: 'mirror', password: 'pa55' };
  const basicRegistry = () =>
    startServer((req, res) => {
      if (req.headers.authorization === basic(credentials.username, credentials.password)) return json(res, 200, { ok: true });
      json(res, 401, { errors: [{ code: 'UNAUTHORIZED' }] }, { 'www-authenticate': 'Basic realm="Registry Realm"' });
    });

  it('answers a Basic challenge with the configured credentials, then sends them up front', async () => {
    const reg = track(await basicRegistry());
    const client = track(new UpstreamClient(upstreamConfig(reg.origin, { auth: credentials })));
    for (let i = 0; i < 2; i++) {
      const res = await client.request(manifest);
      await drain(res.body);
      expect(res.status).toBe(200);
    }
    expect(reg.requests.map((r) => r.headers.authorization)).toEqual([
      undefined,
      basic(credentials.username, credentials.password),
      basic(credentials.username, credentials.password),
    ]);
  });

  it('returns the 401 untouched when no credentials are configured', async () => {
    const reg = track(await basicRegistry());
    const client = track(new UpstreamClient(upstreamConfig(reg.origin)));
    const res = await client.request(manifest);
    await drain(res.body);
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Basic realm="Registry Realm"');
    expect(reg.requests).toHaveLength(1);
  });

  it('returns the 401 when the registry refuses the credentials, without retrying them again', async () => {
    const reg = track(await basicRegistry());
    const client = track(new UpstreamClient(upstreamConfig(reg.origin, { auth: { username: 'mirror', password: 'nope' } })));
    const res = await client.request(manifest);
    await drain(res.body);
    expect(res.status).toBe(401);
    expect(reg.requests).toHaveLength(2);
  });
});

describe('UpstreamClient redirects', () => {
  it('follows a blob redirect to another origin without the Authorization header', async () => {
    const cdn = track(
      await startServer((req, res) => {
        res.writeHead(206, { 'content-type': 'application/octet-stream', 'content-range': 'bytes 5-9/10' });
        res.end('56789');
      }),
    );
    const reg = track(
      await startTokenRegistry({
        serve: (_req, res, url) => {
          res.writeHead(307, { location: `${cdn.origin}/blobs${url.pathname}?sig=abc` });
          res.end();
        },
      }),
    );
    const client = track(new UpstreamClient(upstreamConfig(reg.origin)));
    const res = await client.request({
      method: 'GET',
      repository: 'library/alpine',
      path: 'library/alpine/blobs/sha256:abc',
      headers: { Range: 'bytes=5-' },
    });
    expect(res.status).toBe(206);
    expect(await drain(res.body)).toBe('56789');
    expect(res.url).toBe(`${cdn.origin}/blobs/v2/library/alpine/blobs/sha256:abc?sig=abc`);
    expect(cdn.requests).toHaveLength(1);
    expect(cdn.requests[0]?.headers.authorization).toBeUndefined();
    expect(cdn.requests[0]?.headers.range).toBe('bytes=5-');
    expect(reg.registryRequests.at(-1)?.headers.authorization).toBe('Bearer tok-1');
  });

  it('keeps Authorization on a relative redirect within the upstream, re-issuing HEAD as HEAD', async () => {
    const reg = track(
      await startTokenRegistry({
        serve: (req, res, url) => {
          if (url.pathname.endsWith('/old')) {
            res.writeHead(301, { location: 'new' });
            return res.end();
          }
          res.writeHead(200, { 'docker-content-digest': 'sha256:x', 'content-length': '3' });
          res.end(req.method === 'HEAD' ? undefined : 'abc');
        },
      }),
    );
    const client = track(new UpstreamClient(upstreamConfig(reg.origin)));
    const res = await client.request({ method: 'HEAD', repository: 'r', path: 'r/manifests/old' });
    expect(res.status).toBe(200);
    expect(await drain(res.body)).toBe('');
    const last = reg.registryRequests.at(-1)!;
    expect(last.method).toBe('HEAD');
    expect(last.path).toBe('/v2/r/manifests/new');
    expect(last.headers.authorization).toBe('Bearer tok-1');
  });

  it('gives up after 5 redirects with a 502', async () => {
    let hops = 0;
    const reg = track(
      await startServer((_req, res) => {
        hops++;
        res.writeHead(302, { location: `/v2/loop/${hops}` });
        res.end();
      }),
    );
    const client = track(new UpstreamClient(upstreamConfig(reg.origin)));
    const err = await rejection(client.request(manifest));
    expect(err.status).toBe(502);
    expect(err.message).toMatch(/redirected more than 5 times/);
    expect(hops).toBe(6);
  });

  it('returns a 3xx without Location as it is', async () => {
    const reg = track(await startServer((_req, res) => json(res, 300, { choices: [] })));
    const client = track(new UpstreamClient(upstreamConfig(reg.origin)));
    const res = await client.request(manifest);
    await drain(res.body);
    expect(res.status).toBe(300);
  });
});

describe('UpstreamClient failures and timeouts', () => {
  it('throws UNAVAILABLE naming the upstream when nothing listens', async () => {
    const port = await closedPort();
    const client = track(new UpstreamClient(upstreamConfig(`http://127.0.0.1:${port}`, { name: 'hub' })));
    const err = await rejection(client.request(manifest));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.status).toBe(503);
    expect(err.message).toContain(`upstream hub (127.0.0.1:${port}) is unreachable`);
    expect(err.message).toContain('ECONNREFUSED');
    expect(err.cause).toBeDefined();
    expect(client.counters).toMatchObject({ requests: 1, errors: 1 });
  });

  it('throws UNAVAILABLE when the host name does not resolve', async () => {
    const client = track(new UpstreamClient(upstreamConfig('http://no-such-host.invalid')));
    const err = await rejection(client.request(manifest));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toContain('no-such-host.invalid');
  });

  it('throws UNAVAILABLE when response headers do not arrive within the timeout', async () => {
    const silent = track(await startServer(() => {}));
    const client = track(new UpstreamClient(upstreamConfig(silent.origin)));
    const started = performance.now();
    const err = await rejection(client.request({ ...manifest, timeout: 200 }));
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toMatch(/no response headers within 200 ms/);
  });

  it('uses the upstream’s configured timeout when the request names none', async () => {
    const silent = track(await startServer(() => {}));
    const client = track(new UpstreamClient(upstreamConfig(silent.origin, { timeout: 150 })));
    const err = await rejection(client.request(manifest));
    expect(err.code).toBe('UNAVAILABLE');
  });

  it('never times out a body that streams for longer than the timeout', async () => {
    const slow = track(
      await startServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.write('first,');
        setTimeout(() => res.end('last'), 600);
      }),
    );
    const client = track(new UpstreamClient(upstreamConfig(slow.origin, { timeout: 200 })));
    const res = await client.request(manifest);
    expect(await drain(res.body)).toBe('first,last');
  });

  /** A server that sends its head and a first chunk, then nothing, holding the connection open. */
  async function stalling(): Promise<FakeServer> {
    return track(
      await startServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '1000' });
        res.write('first,');
      }),
    );
  }

  // Bounded below the suite's timeout: with no body timeout of its own the body would hang for minutes.
  it('fails a body that goes silent for longer than the upstream’s bodyTimeout', { timeout: 5_000 }, async () => {
    const server = await stalling();
    const client = track(new UpstreamClient(upstreamConfig(server.origin, { bodyTimeout: 200 })));
    const res = await client.request(manifest);
    expect(res.status).toBe(200);
    await expect(drain(res.body)).rejects.toThrow();
  });

  it('fails a bulk (blob) body that goes silent for longer than the upstream’s bodyTimeout', { timeout: 5_000 }, async () => {
    const server = await stalling();
    const client = track(new UpstreamClient(upstreamConfig(server.origin, { bodyTimeout: 200 })));
    const res = await client.request({ method: 'GET', repository: 'library/alpine', path: 'library/alpine/blobs/sha256:00', bulk: true });
    expect(res.status).toBe(200);
    await expect(drain(res.body)).rejects.toThrow(/no bytes for 200 ms/);
  });

  it('aborts with the caller’s signal while waiting for headers', async () => {
    const silent = track(await startServer(() => {}));
    const client = track(new UpstreamClient(upstreamConfig(silent.origin)));
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('client went away')), 50);
    await expect(client.request({ ...manifest, signal: ac.signal })).rejects.toThrow('client went away');
    expect(client.counters.errors).toBe(0);
  });

  it('counts a request its caller’s deadline gave up on (an abort with a RegistryError) as an upstream error', async () => {
    const silent = track(await startServer(() => {}));
    const client = track(new UpstreamClient(upstreamConfig(silent.origin)));
    const ac = new AbortController();
    setTimeout(() => ac.abort(new RegistryError('UNAVAILABLE', { message: 'upstream test-up timed out' })), 50);
    const err = await rejection(client.request({ ...manifest, signal: ac.signal }));
    expect(err.message).toBe('upstream test-up timed out');
    expect(client.counters).toMatchObject({ errors: 1, lastError: 'upstream test-up timed out' });
  });

  it('destroys a streaming body when the caller’s signal aborts', async () => {
    const endless = track(
      await startServer((_req, res) => {
        res.writeHead(200);
        const timer = setInterval(() => res.write('x'.repeat(1024)), 10);
        res.on('close', () => clearInterval(timer));
      }),
    );
    const client = track(new UpstreamClient(upstreamConfig(endless.origin)));
    const ac = new AbortController();
    const res = await client.request({ ...manifest, signal: ac.signal });
    setTimeout(() => ac.abort(new Error('stop')), 50);
    await expect(drain(res.body)).rejects.toThrow();
  });

  it('refuses to start when the signal is already aborted', async () => {
    const reg = track(await startServer((_req, res) => json(res, 200, {})));
    const client = track(new UpstreamClient(upstreamConfig(reg.origin)));
    await expect(client.request({ ...manifest, signal: AbortSignal.abort(new Error('early')) })).rejects.toThrow('early');
    expect(reg.requests).toHaveLength(0);
  });
});

describe('UpstreamClient requests and responses', () => {
  it('passes query and headers, drops the caller’s Authorization, and flattens response headers', async () => {
    const reg = track(
      await startServer((_req, res) => {
        res.setHeader('X-Multi', ['a', 'b']);
        res.setHeader('Docker-Content-Digest', 'sha256:abc');
        json(res, 200, {});
      }),
    );
    const client = track(new UpstreamClient(upstreamConfig(`${reg.origin}/mirror-prefix`)));
    const res = await client.request({
      ...manifest,
      query: { ns: 'docker.io', n: '10' },
      headers: { Accept: 'application/vnd.oci.image.index.v1+json', Authorization: 'Bearer client-secret', Connection: 'close' },
    });
    await drain(res.body);
    const sent = reg.requests[0]!;
    expect(sent.path).toBe('/mirror-prefix/v2/library/alpine/manifests/latest');
    expect(sent.query.get('ns')).toBe('docker.io');
    expect(sent.query.get('n')).toBe('10');
    expect(sent.headers.accept).toBe('application/vnd.oci.image.index.v1+json');
    expect(sent.headers.authorization).toBeUndefined();
    expect(sent.headers['user-agent']).toMatch(/^ocimirror/);
    expect(res.headers['x-multi']).toBe('a, b');
    expect(res.headers['docker-content-digest']).toBe('sha256:abc');
    expect(res.url).toBe(`${reg.origin}/mirror-prefix/v2/library/alpine/manifests/latest?ns=docker.io&n=10`);
  });

  it('returns 404 and 429 as responses for the caller to interpret', async () => {
    const reg = track(
      await startServer((req, res) => {
        if (req.url?.includes('missing')) return json(res, 404, { errors: [{ code: 'MANIFEST_UNKNOWN' }] });
        json(res, 429, { errors: [{ code: 'TOOMANYREQUESTS' }] }, { 'retry-after': '30' });
      }),
    );
    const client = track(new UpstreamClient(upstreamConfig(reg.origin)));
    const missing = await client.request({ ...manifest, path: 'library/alpine/manifests/missing' });
    await drain(missing.body);
    expect(missing.status).toBe(404);
    const limited = await client.request(manifest);
    await drain(limited.body);
    expect(limited.status).toBe(429);
    expect(limited.headers['retry-after']).toBe('30');
    expect(client.counters.errors).toBe(0);
  });

  it('rejects paths that would leave /v2/', async () => {
    const client = track(new UpstreamClient(upstreamConfig('http://127.0.0.1:1')));
    await expect(client.request({ ...manifest, path: '../../admin' })).rejects.toThrow(TypeError);
    await expect(client.request({ ...manifest, path: 'a/manifests/x?y=1' })).rejects.toThrow(TypeError);
  });

  it('never writes credentials or tokens to the log', async () => {
    const credentials = { username: 'mirror-user', password: 'p4ssw0rd-do-not-log' };
    const reg = track(
      await startTokenRegistry({
        credentials,
        serve: (_req, res, url) => {
          res.writeHead(302, { location: `/v2/moved${url.pathname}` });
          res.end();
        },
      }),
    );
    const lines: string[] = [];
    const sink = new PassThrough();
    sink.on('data', (chunk: Buffer) => lines.push(chunk.toString()));
    const client = track(new UpstreamClient(upstreamConfig(reg.origin, { auth: credentials }), { logger: createLogger('trace', sink) }));
    const res = await client.request(manifest).catch((e: unknown) => e);
    if (!(res instanceof Error)) await drain((res as { body: Readable }).body);
    const log = lines.join('');
    expect(log).toContain('fetched upstream token');
    expect(log).not.toContain(credentials.password);
    expect(log).not.toContain(Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64'));
    expect(log).not.toContain('tok-1');
  });

  it('refuses requests after close', async () => {
    const client = new UpstreamClient(upstreamConfig('http://127.0.0.1:1'));
    await client.close();
    const err = await rejection(client.request(manifest));
    expect(err.code).toBe('UNAVAILABLE');
  });

  it('validates its configuration', () => {
    expect(() => new UpstreamClient(upstreamConfig('ftp://x'))).toThrow(/http\(s\)/);
    expect(() => new UpstreamClient(upstreamConfig('http://x', { timeout: 0 }))).toThrow(/timeout/);
    expect(() => new UpstreamClient(upstreamConfig('http://x', { bodyTimeout: 0 }))).toThrow(/bodyTimeout/);
  });
});

describe('createUpstreams', () => {
  it('creates one client per upstream by name, reports their counters and closes them all', async () => {
    const reg = track(await startServer((_req, res) => json(res, 200, {})));
    const pool = createUpstreams([upstreamConfig(reg.origin, { name: 'a' }), upstreamConfig(reg.origin, { name: 'b' })]);
    cleanup.push(() => pool.closeAll());
    expect([...pool.keys()]).toEqual(['a', 'b']);
    await drain((await pool.get('a')!.request(manifest)).body);
    expect(pool.counters()).toMatchObject({
      a: { requests: 1, errors: 0, tokenFetches: 0 },
      b: { requests: 0, errors: 0, tokenFetches: 0, lastAnswerAt: 0 },
    });
    await pool.closeAll();
    await expect(pool.get('b')!.request(manifest)).rejects.toThrow(/shutting down/);
  });

  it('refuses duplicate names', () => {
    expect(() => createUpstreams([upstreamConfig('http://x', { name: 'a' }), upstreamConfig('http://y', { name: 'a' })])).toThrow(/unique/);
  });

  it('closes even when a response body was never consumed', async () => {
    const reg = track(
      await startServer((_req, res) => {
        res.writeHead(200);
        res.write(Buffer.alloc(4 << 20));
      }),
    );
    const client = new UpstreamClient(upstreamConfig(reg.origin));
    const res = await client.request(manifest);
    expect(res.status).toBe(200);
    const started = performance.now();
    await client.close(100);
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});
