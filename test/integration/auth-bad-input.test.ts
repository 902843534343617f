/**
 * Bad credentials on the real mirror with accounts: malformed Authorization headers, over-long
 * user names, passwords and headers, a password that matches only in the 72 bytes bcrypt reads,
 * bearer tokens not valid yet or with a malformed grant, and oversized token requests. Each gets
 * 401 with the challenge (400 where node's HTTP parser or the token endpoint refuses the request
 * itself), never a 5xx; the mirror keeps serving and its log never carries the secrets sent.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { startMirror, type Mirror } from '../../src/mirror.ts';
import { createLogger } from '../../src/util/logger.ts';
import { TestClock } from '../helpers/clock.ts';
import { MANIFEST_ACCEPT } from '../helpers/images.ts';
import { mirrorConfig } from '../helpers/mirror.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

/** Marks every secret the tests send, so the log can be searched for it. */
const MARK = 'S3CRET';
const PASSWORD = `node-${MARK}-pw`;
const LONG_PASSWORD = `${MARK}${'p'.repeat(72 - MARK.length)}`;
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** Sends `head` as written (fetch refuses control characters and some header sizes) and returns the status line's code. */
function rawStatus(port: number, head: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let got = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer in 10 s; received: ${got.slice(0, 200)}`));
    }, 10_000);
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0));
    });
    socket.on('connect', () => socket.end(head));
  });
}

describeWithTools(['docker-registry', 'htpasswd'], 'bad client credentials', () => {
  let upstream: Upstream;
  let mirror: Mirror;
  let dataDir: string;
  let port: number;
  let text = '';
  const clock = new TestClock();
  const manifestUrl = () => `${mirror.url}/v2/small/manifests/latest`;
  const lines = () =>
    text
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);

  beforeAll(async () => {
    upstream = await startUpstream();
    dataDir = await mkdtemp(path.join(tmpdir(), 'ocimirror-auth-bad-'));
    const htpasswd = path.join(dataDir, 'htpasswd');
    execFileSync('htpasswd', ['-Bbc', htpasswd, 'node', PASSWORD], { stdio: 'ignore' });
    execFileSync('htpasswd', ['-Bb', htpasswd, 'long', LONG_PASSWORD], { stdio: 'ignore' });
    const sink = new PassThrough();
    sink.on('data', (d: Buffer) => (text += d.toString()));
    const raw = {
      ...mirrorConfig(upstream.url),
      storage: { path: path.join(dataDir, 'data') },
      auth: { htpasswd, rules: [{ accounts: ['node', 'long'], repositories: ['**'], roles: ['pull'] }] },
    };
    mirror = await startMirror(parseConfig(raw as never), createLogger('info', sink), { now: clock.now });
    port = Number(new URL(mirror.url).port);
  }, 120_000);
  afterAll(async () => {
    await mirror?.stop({ graceMs: 2000, drainDelayMs: 0 });
    await upstream?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  /** GET `url` with `authorization`; each case is one failure, so the backoff is moved past after it. */
  async function refused(url: string, authorization: string): Promise<{ status: number; challenge: string | null; code: string | undefined }> {
    const res = await fetch(url, { headers: { authorization, accept: MANIFEST_ACCEPT } });
    const body = (await res.json().catch(() => ({}))) as { errors?: Array<{ code: string }> };
    clock.advance(3_600_000);
    return { status: res.status, challenge: res.headers.get('www-authenticate'), code: body.errors?.[0]?.code };
  }

  it('answers malformed Authorization headers with 401 and the challenge on /v2/, /auth/token and the admin API', async () => {
    const cases: Array<[string, string]> = [
      ['Basic without a value', 'Basic'],
      ['Basic that is not base64', `Basic ${PASSWORD}%%`],
      ['Basic whose base64 holds no colon', `Basic ${Buffer.from(PASSWORD).toString('base64')}`],
      ['Bearer without a token', 'Bearer'],
      ['Bearer that is not a JWT', `Bearer ${PASSWORD}`],
      ['an unknown scheme', `Digest username="node", response="${PASSWORD}"`],
      ['a bare base64 secret', Buffer.from(`node:${PASSWORD}`).toString('base64')],
      ['a long run of garbage', `x${MARK}`.repeat(1000)],
      ['obs-text bytes', `Basic \u00ff\u00fe${MARK}`],
    ];
    for (const [what, header] of cases) {
      for (const url of [manifestUrl(), `${mirror.url}/auth/token?service=ocimirror&scope=repository:small:pull`, `${mirror.url}/admin/v1/usage`]) {
        const r = await refused(url, header);
        expect(r.status, `${what}: ${url}`).toBe(401);
        expect(r.code, `${what}: ${url}`).toBe('UNAUTHORIZED');
        expect(r.challenge, `${what}: ${url}`).toMatch(/realm=/);
      }
    }
  });

  it('refuses an 8 KiB user name or password, and a password that matches only in its first 72 bytes', async () => {
    for (const [what, header] of [
      ['an 8 KiB user name', basic('n'.repeat(8192), PASSWORD)],
      ['a 5 KiB user name (under the header limit)', basic('n'.repeat(5000), PASSWORD)],
      ['an 8 KiB password', basic('node', `${PASSWORD}${'x'.repeat(8192)}`)],
      ['the 72-byte password and more', basic('long', `${LONG_PASSWORD}-and-more`)],
    ] as const) {
      const r = await refused(manifestUrl(), header);
      expect(r.status, what).toBe(401);
      expect(r.challenge, what).toContain('Bearer realm=');
    }
    // The 72 bytes themselves are the password.
    expect((await refused(manifestUrl(), basic('long', LONG_PASSWORD))).status).toBe(200);
    const failed = lines().filter((l) => l.msg === 'client authentication failed');
    expect(failed.map((l) => l.reason)).toEqual(
      expect.arrayContaining(['authorization header longer than 8192 characters', 'user name longer than 256 bytes', 'password longer than 72 bytes']),
    );
  });

  it('refuses a bearer token that is not valid yet and one whose grant is malformed', async () => {
    const key = await readFile(path.join(dataDir, 'data', 'auth', 'token.key'));
    // The mirror's clock moves an hour per refusal: each token is made for the clock as it is then.
    const token = (claims: Record<string, unknown>, nbfIn = 0) => {
      const now = Math.floor(clock.now() / 1000);
      return new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuer('ocimirror').setAudience('ocimirror').setSubject('node').setIssuedAt(now).setNotBefore(now + nbfIn).setExpirationTime(now + 900).sign(key);
    };
    const access = [{ type: 'repository', name: 'small', actions: ['pull'] }];
    const notYet = await refused(manifestUrl(), `Bearer ${await token({ access }, 600)}`);
    expect(notYet.status).toBe(401);
    expect(notYet.challenge).toContain('scope="repository:small:pull"');
    for (const malformed of ['small', [null, 7, { type: 'repository', name: 5 }], { small: 'pull' }]) {
      expect((await refused(manifestUrl(), `Bearer ${await token({ access: malformed })}`)).status, JSON.stringify(malformed)).toBe(401);
    }
    // The same token, valid from now, is accepted: the refusals above are for nbf and the grant.
    expect((await refused(manifestUrl(), `Bearer ${await token({ access })}`)).status).toBe(200);
  });

  it('answers headers node cannot parse (control characters, 64 KiB) with 400 and keeps serving', async () => {
    const head = (authorization: string) => Buffer.from(`GET /v2/small/manifests/latest HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${authorization}\r\nConnection: close\r\n\r\n`, 'latin1');
    expect(await rawStatus(port, head(`Basic \u0001\u0002${MARK}\u007f`))).toBe(400);
    expect(await rawStatus(port, head(`Basic ${'A'.repeat(64 * 1024)}`))).toBe(400);
    expect(await rawStatus(port, head(`Bearer ${MARK}\u0000`))).toBe(400);
    const ok = await fetch(manifestUrl(), { headers: { authorization: basic('node', PASSWORD), accept: MANIFEST_ACCEPT } });
    expect(ok.status).toBe(200);
  });

  it('refuses oversized and malformed token requests without reading them whole', async () => {
    const big = await fetch(`${mirror.url}/auth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `grant_type=password&username=node&password=${'x'.repeat(1 << 20)}` });
    expect(big.status).toBe(400);
    const longUser = new URLSearchParams({ grant_type: 'password', username: 'n'.repeat(8192), password: PASSWORD, service: 'ocimirror' });
    const r1 = await fetch(`${mirror.url}/auth/token`, { method: 'POST', body: longUser, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    clock.advance(3_600_000);
    expect(r1.status).toBe(401);
    const longPassword = new URLSearchParams({ grant_type: 'password', username: 'long', password: `${LONG_PASSWORD}x`, service: 'ocimirror' });
    const r2 = await fetch(`${mirror.url}/auth/token`, { method: 'POST', body: longPassword, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    clock.advance(3_600_000);
    expect(r2.status).toBe(401);
    const otherService = await fetch(`${mirror.url}/auth/token?service=another&scope=repository:small:pull`, { headers: { authorization: basic('node', PASSWORD) } });
    expect(otherService.status).toBe(400);
  });

  it('answered no request with a 5xx and logged none of the secrets sent', () => {
    const access = lines().filter((l) => l.module === 'access');
    expect(access.length).toBeGreaterThan(30);
    expect(access.filter((l) => (l.status as number) >= 500)).toEqual([]);
    expect(lines().filter((l) => (l.level as number) >= 50)).toEqual([]);
    expect(text).not.toContain(MARK);
    expect(text).not.toContain(Buffer.from(`node:${PASSWORD}`).toString('base64'));
  });
});
