/**
 * The mirror pulling from upstreams that require authentication, end to end: real docker-registry
 * (CNCF distribution 2.8) with `auth: htpasswd` (Basic) and `auth: token` (Bearer, from the test token
 * issuer), the real mirror in between, plain unauthenticated clients in front.
 *
 * What crosses the wire between the mirror and the upstream is observed through undici's
 * diagnostics channels (`undici:request:create` for request headers, `undici:request:bodyChunkReceived`
 * for token responses), so the tests know every token the issuer handed out and every header the
 * mirror sent, without touching the mirror's code.
 */
import diagnostics from 'node:diagnostics_channel';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import type { RawConfig } from '../../src/config/schema.ts';
import { startMirror, type Mirror } from '../../src/mirror.ts';
import { createLogger } from '../../src/util/logger.ts';
import { MANIFEST_ACCEPT } from '../helpers/images.ts';
import { get, pullImage, sha256 } from '../helpers/pull.ts';
import { mirrorConfig, startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

const basicHeader = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
/** Anything shaped like a JWT (header.payload.signature, base64url, header starting `{"`). */
const JWT = /eyJ[\w-]+\.[\w-]+\.[\w-]+/g;
const PASSWORD_ENV = 'OCIMIRROR_TEST_UPSTREAM_PASSWORD';
const WRONG_PASSWORD = 'wrong-secret-7f3a9c';

/** One request some undici in this process sent (the mirror's upstream client, or a test's fetch). */
interface WireRequest {
  origin: string;
  method: string;
  path: string;
  authorization: string | undefined;
}

/** undici publishes its Request object; header storage differs between versions (array or raw string). */
interface UndiciRequestLike {
  origin?: unknown;
  method?: unknown;
  path?: unknown;
  headers?: unknown;
}

function headerOf(headers: unknown, name: string): string | undefined {
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) {
      if (String(headers[i]).toLowerCase() === name) return String(headers[i + 1]);
    }
    return undefined;
  }
  if (typeof headers === 'string') {
    for (const line of headers.split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === name) return line.slice(colon + 1).trim();
    }
  }
  return undefined;
}

function originOf(request: UndiciRequestLike): string {
  try {
    return new URL(String(request.origin)).origin;
  } catch {
    return String(request.origin);
  }
}


/** Status line, every header and the body, as the client received them, for secret scanning. */
function transcript({ res, body }: { res: Response; body: Buffer }): Buffer {
  const head = [`${res.status}`, ...[...res.headers].map(([k, v]) => `${k}: ${v}`)].join('\n');
  return Buffer.concat([Buffer.from(`${head}\n\n`), body]);
}

/** Asserts that none of `secrets` occurs in `text`, without printing the secret on failure. */
function expectNoSecrets(what: string, text: Buffer | string, secrets: readonly string[]): void {
  const buf = typeof text === 'string' ? Buffer.from(text) : text;
  expect(secrets.length).toBeGreaterThan(0);
  secrets.forEach((secret, i) => {
    expect(secret.length, `secret #${i} is non-trivial`).toBeGreaterThan(8);
    expect(buf.includes(secret), `${what} contains secret #${i}`).toBe(false);
  });
  expect(buf.toString('latin1').match(JWT), `${what} contains a JWT`).toBeNull();
}

function errorOf(body: Buffer): { code: string; message: string } {
  const parsed = JSON.parse(body.toString()) as { errors: Array<{ code: string; message: string }> };
  expect(parsed.errors).toHaveLength(1);
  return parsed.errors[0]!;
}

describeWithTools(['docker-registry', 'htpasswd', 'openssl'], 'mirror pulling from upstreams that need credentials', () => {
  let basicUp: Upstream;
  let tokenUp: Upstream;
  const mirrors: TestMirror[] = [];
  const wire: WireRequest[] = [];
  /** Text of every token-service response body the mirror received. */
  let tokenResponses = '';
  let realmOrigin = '';

  const onCreate = (msg: unknown) => {
    const request = (msg as { request: UndiciRequestLike }).request;
    wire.push({
      origin: originOf(request),
      method: String(request.method),
      path: String(request.path),
      authorization: headerOf(request.headers, 'authorization'),
    });
  };
  const onChunk = (msg: unknown) => {
    const { request, chunk } = msg as { request: UndiciRequestLike; chunk: Buffer | Uint8Array };
    if (realmOrigin !== '' && originOf(request) === realmOrigin) tokenResponses += Buffer.from(chunk).toString('utf8');
  };

  const issuer = () => tokenUp.registry.tokenIssuer!;
  const creds = (up: Upstream) => up.registry.credentials!;
  /** Every token the issuer handed to the mirror so far. */
  const issuedTokens = () => [...new Set(tokenResponses.match(JWT) ?? [])];
  /** Upstream auth config: password from the environment, as operators are told to do it. */
  const authFor = (up: Upstream) => ({ auth: { username: creds(up).username, passwordEnv: PASSWORD_ENV } });
  const envFor = (up: Upstream) => ({ [PASSWORD_ENV]: creds(up).password });

  async function mirrorFor(raw: RawConfig, env: NodeJS.ProcessEnv = {}): Promise<TestMirror> {
    const m = await startTestMirror(raw, { env });
    mirrors.push(m);
    return m;
  }

  beforeAll(async () => {
    diagnostics.subscribe('undici:request:create', onCreate);
    diagnostics.subscribe('undici:request:bodyChunkReceived', onChunk);
    const [basic, token] = await Promise.allSettled([startUpstream({ auth: 'htpasswd' }), startUpstream({ auth: 'token' })]);
    if (basic.status === 'fulfilled') basicUp = basic.value;
    if (token.status === 'fulfilled') tokenUp = token.value;
    if (basic.status === 'rejected') throw basic.reason;
    if (token.status === 'rejected') throw token.reason;
    realmOrigin = new URL(issuer().realm).origin;
  });

  afterAll(async () => {
    await Promise.allSettled(mirrors.map((m) => m.stop()));
    await Promise.allSettled([basicUp?.stop(), tokenUp?.stop()]);
    diagnostics.unsubscribe('undici:request:create', onCreate);
    diagnostics.unsubscribe('undici:request:bodyChunkReceived', onChunk);
  });

  describe('Basic auth (htpasswd upstream)', () => {
    it('pulls a whole image, index children and blobs included, with the credentials from passwordEnv', async () => {
      const m = await mirrorFor(mirrorConfig(basicUp.url, { upstream: authFor(basicUp) }), envFor(basicUp));
      basicUp.proxy.reset();
      const from = wire.length;
      await pullImage(m.url, basicUp.fixtures, basicUp.fixtures.image('multi'));
      await pullImage(m.url, basicUp.fixtures, basicUp.fixtures.image('small:v1'));

      const upstreamOrigin = new URL(basicUp.url).origin;
      const sent = wire.slice(from).filter((r) => r.origin === upstreamOrigin);
      expect(sent.length).toBeGreaterThan(0);
      // Only the very first request meets the challenge; every later one carries the credentials up front.
      expect(basicUp.proxy.records.filter((r) => r.status === 401)).toHaveLength(1);
      expect(sent[0]!.authorization).toBeUndefined();
      for (const r of sent.slice(1)) expect(r.authorization).toBe(basicHeader(creds(basicUp).username, creds(basicUp).password));
    });

    it('answers 403 DENIED naming the upstream, never a 500, when it has no credentials for it', async () => {
      const m = await mirrorFor(mirrorConfig(basicUp.url));
      const image = basicUp.fixtures.image('multi');
      const blob = basicUp.fixtures.allBlobs(image)[0]!;
      const cases: Array<[string, string, string]> = [
        ['GET', `/v2/multi/manifests/latest`, 'test'],
        ['GET', `/v2/multi/manifests/${image.manifest.digest}`, 'test'],
        ['GET', `/v2/multi/blobs/${blob.digest}`, 'test'],
        ['GET', `/v2/multi/tags/list`, 'test'],
        ['GET', `/v2/docker.io/library/alpine/manifests/latest`, 'hub'],
        ['HEAD', `/v2/multi/manifests/latest`, 'test'],
        ['HEAD', `/v2/multi/blobs/${blob.digest}`, 'test'],
      ];
      for (const [method, p, upstreamName] of cases) {
        const { res, body } = await get(`${m.url}${p}`, { accept: MANIFEST_ACCEPT }, method);
        expect(res.status, `${method} ${p}: ${body.toString()}`).toBe(403);
        expect(res.headers.get('content-type')).toMatch(/^application\/json/);
        if (method === 'HEAD') continue;
        const err = errorOf(body);
        expect(err.code).toBe('DENIED');
        expect(err.message).toContain(`upstream ${upstreamName}`);
      }
    });
  });

  describe('Bearer tokens (token upstream)', () => {
    it('pulls with credentials and caches tokens per repository scope: one token per repository, none for another tag', async () => {
      const m = await mirrorFor(mirrorConfig(tokenUp.url, { upstream: authFor(tokenUp) }), envFor(tokenUp));
      const start = issuer().requests;
      const from = wire.length;

      await pullImage(m.url, tokenUp.fixtures, tokenUp.fixtures.image('small:v1'));
      // The first upstream request meets a 401 challenge (scope repository:small:pull): one token
      // request; every later request in the repository sends the cached token up front.
      const afterFirst = issuer().requests - start;
      expect(afterFirst).toBe(1);

      await pullImage(m.url, tokenUp.fixtures, tokenUp.fixtures.image('small:v2'));
      expect(issuer().requests - start - afterFirst).toBe(0);

      // A second repository is a second scope: exactly one more token, fetched up front (no 401 first).
      const fixture = tokenUp.fixtures.image('library/alpine');
      await pullImage(m.url, tokenUp.fixtures, fixture);
      expect(issuer().requests - start).toBe(2);

      const scopes = wire
        .slice(from)
        .filter((r) => r.origin === realmOrigin)
        .map((r) => new URL(r.path, realmOrigin).searchParams.getAll('scope'));
      expect(scopes).toEqual([['repository:small:pull'], ['repository:library/alpine:pull']]);
    });

    it('shares one token request among twenty concurrent cold blob requests for one repository', async () => {
      const m = await mirrorFor(mirrorConfig(tokenUp.url, { upstream: authFor(tokenUp) }), envFor(tokenUp));
      const image = tokenUp.fixtures.image('many');
      const start = issuer().requests;
      const results = await Promise.all(tokenUp.fixtures.allBlobs(image).map((b) => get(`${m.url}/v2/many/blobs/${b.digest}`)));
      expect(results.length).toBeGreaterThanOrEqual(20);
      results.forEach(({ res, body }, i) => {
        expect(res.status).toBe(200);
        expect(sha256(body)).toBe(tokenUp.fixtures.allBlobs(image)[i]!.digest);
      });
      expect(issuer().requests - start).toBe(1);
    });

    it('answers 403 DENIED naming the upstream when the token service refuses anonymous or wrong credentials', async () => {
      const anonymous = await mirrorFor(mirrorConfig(tokenUp.url));
      const wrong = await mirrorFor(mirrorConfig(tokenUp.url, { upstream: { auth: { username: creds(tokenUp).username, password: WRONG_PASSWORD } } }));
      for (const m of [anonymous, wrong]) {
        const { res, body } = await get(`${m.url}/v2/small/manifests/v1`, { accept: MANIFEST_ACCEPT });
        expect(res.status, body.toString()).toBe(403);
        const err = errorOf(body);
        expect(err.code).toBe('DENIED');
        expect(err.message).toContain('upstream test');
      }
    });
  });

  describe('credentials never leak', () => {
    it('sends the configured credentials to the token realm only, and the registry sees nothing but tokens', async () => {
      const m = await mirrorFor(mirrorConfig(tokenUp.url, { upstream: authFor(tokenUp) }), envFor(tokenUp));
      const start = issuer().requests;
      const from = wire.length;
      await pullImage(m.url, tokenUp.fixtures, tokenUp.fixtures.image('medium'));

      const expected = basicHeader(creds(tokenUp).username, creds(tokenUp).password);
      const sent = wire.slice(from);
      const toRealm = sent.filter((r) => r.origin === realmOrigin);
      // Every request the token service received in this test came from the mirror, with Basic credentials.
      expect(toRealm.length).toBe(issuer().requests - start);
      expect(toRealm.length).toBe(1);
      for (const r of toRealm) expect(r.authorization).toBe(expected);
      // The client never sent any credentials, to the mirror or anywhere.
      for (const r of sent.filter((x) => x.origin === new URL(m.url).origin)) expect(r.authorization).toBeUndefined();
      // The registry got Bearer tokens only, never the password.
      const toRegistry = sent.filter((r) => r.origin === new URL(tokenUp.url).origin);
      expect(toRegistry.length).toBeGreaterThan(0);
      for (const r of toRegistry) expect(r.authorization === undefined || r.authorization.startsWith('Bearer ')).toBe(true);
      const bearers = toRegistry.flatMap((r) => (r.authorization ? [r.authorization.slice('Bearer '.length)] : []));
      expect(bearers.length).toBeGreaterThan(0);
      for (const t of bearers) expect(issuedTokens()).toContain(t);
    });

    it('never puts the password or a token in the headers or bodies of manifests, blobs and errors', async () => {
      const tokenMirror = await mirrorFor(mirrorConfig(tokenUp.url, { upstream: authFor(tokenUp) }), envFor(tokenUp));
      const wrongMirror = await mirrorFor(mirrorConfig(tokenUp.url, { upstream: { auth: { username: creds(tokenUp).username, password: WRONG_PASSWORD } } }));
      const basicMirror = await mirrorFor(mirrorConfig(basicUp.url, { upstream: authFor(basicUp) }), envFor(basicUp));

      const seen: Array<[string, Buffer]> = [];
      const image = tokenUp.fixtures.image('small:v3');
      for (const [name, m, up] of [['token', tokenMirror, tokenUp], ['basic', basicMirror, basicUp]] as const) {
        const { manifest, blobs } = await pullImage(m.url, up.fixtures, image, { tag: 'latest' });
        seen.push([`${name} manifest`, transcript(manifest)]);
        seen.push([`${name} blob`, transcript(blobs[0]!)]);
        seen.push([`${name} HEAD manifest`, transcript(await get(`${m.url}/v2/small/manifests/latest`, { accept: MANIFEST_ACCEPT }, 'HEAD'))]);
        const missing = await get(`${m.url}/v2/small/manifests/no-such-tag`, { accept: MANIFEST_ACCEPT });
        expect(missing.res.status).toBe(404);
        seen.push([`${name} 404`, transcript(missing)]);
        const tags = await get(`${m.url}/v2/small/tags/list`);
        expect(tags.res.status).toBe(200);
        seen.push([`${name} tags`, transcript(tags)]);
      }
      const denied = await get(`${wrongMirror.url}/v2/small/manifests/latest`, { accept: MANIFEST_ACCEPT });
      expect(denied.res.status).toBe(403);
      seen.push(['wrong-credentials 403', transcript(denied)]);

      const secrets = [
        creds(tokenUp).password,
        creds(basicUp).password,
        WRONG_PASSWORD,
        basicHeader(creds(tokenUp).username, creds(tokenUp).password).slice('Basic '.length),
        basicHeader(creds(basicUp).username, creds(basicUp).password).slice('Basic '.length),
        basicHeader(creds(tokenUp).username, WRONG_PASSWORD).slice('Basic '.length),
        ...issuedTokens(),
      ];
      expect(issuedTokens().length).toBeGreaterThan(0);
      for (const [what, text] of seen) expectNoSecrets(what, text, secrets);
    });

    it('refuses a token realm on a host not allowed without contacting it, and uses it once listed in realmHosts', async () => {
      // The issuer listens on 127.0.0.1; the mirror reaches the same registry as `localhost`.
      const viaLocalhost = `http://localhost:${tokenUp.proxy.port}`;
      const refused = await mirrorFor(mirrorConfig(viaLocalhost, { upstream: authFor(tokenUp) }), envFor(tokenUp));
      const start = issuer().requests;
      const from = wire.length;
      const { res, body } = await get(`${refused.url}/v2/small/manifests/v1`, { accept: MANIFEST_ACCEPT });
      expect(res.status, body.toString()).toBe(502);
      const err = errorOf(body);
      expect(err.code).toBe('BAD_GATEWAY');
      expect(err.message).toContain('realmHosts');
      expect(err.message).toContain('upstream test');
      expect(issuer().requests).toBe(start);
      expect(wire.slice(from).filter((r) => r.origin === realmOrigin)).toEqual([]);

      const allowed = await mirrorFor(
        mirrorConfig(viaLocalhost, { upstream: { ...authFor(tokenUp), realmHosts: ['127.0.0.1'] } }),
        envFor(tokenUp),
      );
      await pullImage(allowed.url, tokenUp.fixtures, tokenUp.fixtures.image('small:v1'));
      expect(issuer().requests - start).toBe(1);
    });
  });

  describe('logs', () => {
    const running: Array<{ mirror: Mirror; dir: string }> = [];
    afterAll(async () => {
      await Promise.allSettled(running.map((r) => r.mirror.stop({ graceMs: 2000, drainDelayMs: 0 })));
      await Promise.allSettled(running.map((r) => rm(r.dir, { recursive: true, force: true })));
    });

    async function loggingMirror(raw: RawConfig, env: NodeJS.ProcessEnv) {
      let text = '';
      const sink = new Writable({
        write(chunk: Buffer | string, _enc, cb) {
          text += chunk.toString();
          cb();
        },
      });
      const dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-auth-log-'));
      const config = parseConfig({ ...raw, storage: { path: dir }, log: { level: 'debug' } }, { env });
      const mirror = await startMirror(config, createLogger('debug', sink));
      running.push({ mirror, dir });
      return { url: mirror.url, log: () => text };
    }

    it('never writes a password or a token to the log at debug level, on success or failure', async () => {
      const user = creds(tokenUp).username;
      const tokenAuth = { username: user, passwordEnv: PASSWORD_ENV };
      const raw = {
        listen: '127.0.0.1:0',
        upstreams: [
          { name: 'good', url: tokenUp.url, registries: ['registry.test'], auth: tokenAuth },
          // Same registry, wrong password: the token service refuses it.
          { name: 'wrong', url: tokenUp.url, registries: ['wrong.test'], auth: { username: user, password: WRONG_PASSWORD } },
          // Same registry through another host name: the realm is refused.
          { name: 'far', url: `http://localhost:${tokenUp.proxy.port}`, registries: ['far.test'], auth: tokenAuth },
          { name: 'basic', url: basicUp.url, registries: ['basic.test'], auth: { username: creds(basicUp).username, password: creds(basicUp).password } },
          { name: 'nocreds', url: basicUp.url, registries: ['nocreds.test'] },
        ],
        defaultUpstream: 'good',
      } as RawConfig;
      const m = await loggingMirror(raw, envFor(tokenUp));

      await pullImage(m.url, tokenUp.fixtures, tokenUp.fixtures.image('medium'));
      await pullImage(m.url, basicUp.fixtures, basicUp.fixtures.image('medium'), { tag: 'latest', prefix: 'basic.test/' });
      const failures: Array<[string, number]> = [
        ['wrong.test/small/manifests/v1', 403],
        ['far.test/small/manifests/v1', 502],
        ['nocreds.test/small/manifests/v1', 403],
        ['small/manifests/no-such-tag', 404],
      ];
      for (const [p, status] of failures) {
        const { res, body } = await get(`${m.url}/v2/${p}`, { accept: MANIFEST_ACCEPT });
        expect(res.status, `${p}: ${body.toString()}`).toBe(status);
      }

      const log = m.log();
      const lines = log.trim().split('\n').map((l) => JSON.parse(l) as { level: number });
      expect(lines.some((l) => l.level === 20), 'debug lines are written').toBe(true);
      expect(issuedTokens().length).toBeGreaterThan(0);
      expectNoSecrets('the log', log, [
        creds(tokenUp).password,
        creds(basicUp).password,
        WRONG_PASSWORD,
        basicHeader(user, creds(tokenUp).password).slice('Basic '.length),
        basicHeader(creds(basicUp).username, creds(basicUp).password).slice('Basic '.length),
        basicHeader(user, WRONG_PASSWORD).slice('Basic '.length),
        ...issuedTokens(),
      ]);
    });
  });
});
