/**
 * Client accounts on the real mirror: accounts from a file `htpasswd -B` wrote, the Docker token
 * flow as skopeo drives it, Basic credentials straight on /v2/ (curl), robot tokens managed with
 * the CLI, and refusals that change nothing: a pull-only account's writes get 403, bad or forged
 * credentials 401 with the challenge, and repeated failures 429.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeWithTools } from '../helpers/tools.ts';
import { get } from '../helpers/pull.ts';
import { MANIFEST_ACCEPT } from '../helpers/images.ts';
import { skopeoCopy } from '../helpers/skopeo.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { mirrorConfig, runCli, startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { accountsConfig, writeHtpasswd } from '../helpers/accounts.ts';
import { TestClock } from '../helpers/clock.ts';

const ADMIN_TOKEN = 'auth-test-admin-token-0123456789';
const SLOW = { timeout: 120_000 };
const run = promisify(execFile);
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describeWithTools(['docker-registry', 'htpasswd', 'skopeo', 'curl'], 'client accounts', () => {
  let upstream: Upstream;
  let m: TestMirror;
  let dir: string;
  let htpasswd: string;
  const clock = new TestClock();
  const manifestUrl = () => `${m.url}/v2/small/manifests/latest`;

  beforeAll(async () => {
    upstream = await startUpstream();
    dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-auth-'));
    htpasswd = writeHtpasswd(dir, { node: 'node-password', ops: 'ops-password' });
    m = await startTestMirror(accountsConfig(upstream.url, { adminToken: ADMIN_TOKEN, htpasswd, roles: { node: 'pull', ops: 'admin' } }), { clock });
  }, SLOW.timeout);
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('challenges a request without credentials with the Docker token flow', async () => {
    const base = await get(`${m.url}/v2/`);
    expect(base.res.status).toBe(401);
    expect(base.res.headers.get('www-authenticate')).toBe(`Bearer realm="${m.url}/auth/token",service="ocimirror"`);
    const manifest = await get(manifestUrl(), { accept: MANIFEST_ACCEPT });
    expect(manifest.res.status).toBe(401);
    expect(manifest.res.headers.get('www-authenticate')).toContain('scope="repository:small:pull"');
    expect(JSON.parse(manifest.body.toString()).errors[0].code).toBe('UNAUTHORIZED');
  });

  it('serves an account that sends Basic credentials straight to /v2/ (curl)', async () => {
    const { stdout } = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-u', 'node:node-password', '-H', `Accept: ${MANIFEST_ACCEPT}`, manifestUrl()]);
    expect(stdout).toBe('200');
  });

  it('copies an image with skopeo through the token flow', SLOW, async () => {
    const out = await mkdtemp(path.join(tmpdir(), 'ocimirror-auth-copy-'));
    try {
      await expect(skopeoCopy(`docker://${new URL(m.url).host}/small:v1`, `dir:${out}`)).rejects.toThrow(/unauthorized|authentication required/i);
      await skopeoCopy(`docker://${new URL(m.url).host}/small:v1`, `dir:${out}`, { creds: 'node:node-password' });
      const manifest = JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8'));
      expect(manifest.layers.length).toBeGreaterThan(0);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });

  it('grants a token only the scopes both asked for and allowed, and serves hits with it', async () => {
    const res = await fetch(`${m.url}/auth/token?service=ocimirror&scope=repository:small:pull,push`, { headers: { authorization: basic('node', 'node-password') } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { token: string; expires_in: number };
    expect(body.expires_in).toBe(300);
    const claims = JSON.parse(Buffer.from(body.token.split('.')[1]!, 'base64url').toString());
    expect(claims.access).toEqual([{ type: 'repository', name: 'small', actions: ['pull'] }]);
    const first = await get(manifestUrl(), { accept: MANIFEST_ACCEPT, authorization: `Bearer ${body.token}` });
    const second = await get(manifestUrl(), { accept: MANIFEST_ACCEPT, authorization: `Bearer ${body.token}` });
    expect([first.res.status, second.res.status]).toEqual([200, 200]);
    expect(second.res.headers.get('x-cache')).toBe('HIT');
    // The token names one repository: another one sends the client back for a new token.
    const other = await get(`${m.url}/v2/medium/manifests/latest`, { accept: MANIFEST_ACCEPT, authorization: `Bearer ${body.token}` });
    expect(other.res.status).toBe(401);
  });

  it('refuses a pull-only account any write with 403 DENIED, and nothing changes', async () => {
    const auth = basic('node', 'node-password');
    const before = await get(manifestUrl(), { accept: MANIFEST_ACCEPT, authorization: auth });
    const digest = before.res.headers.get('docker-content-digest')!;
    const jobs = () => fetch(`${m.url}/admin/v1/jobs`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }).then((r) => r.json());
    const jobsBefore = await jobs();
    for (const [method, url] of [
      ['DELETE', `${m.url}/v2/small/manifests/${digest}`],
      ['PUT', `${m.url}/v2/small/manifests/latest`],
      ['POST', `${m.url}/v2/small/blobs/uploads/`],
      ['POST', `${m.url}/admin/v1/gc`],
      ['DELETE', `${m.url}/admin/v1/images?image=registry.test/small:latest`],
    ] as const) {
      const res = await fetch(url, { method, headers: { authorization: auth, 'content-type': 'application/json' }, body: method === 'PUT' ? '{}' : undefined });
      expect(res.status, `${method} ${url}`).toBe(403);
      expect(((await res.json()) as { errors: Array<{ code: string }> }).errors[0]!.code).toBe('DENIED');
    }
    expect(await jobs()).toEqual(jobsBefore);
    const after = await get(manifestUrl(), { accept: MANIFEST_ACCEPT, authorization: auth });
    expect(after.res.status).toBe(200);
    expect(after.res.headers.get('docker-content-digest')).toBe(digest);
  });

  it('exchanges an OAuth2 password grant (containerd) for a token', async () => {
    const form = new URLSearchParams({ grant_type: 'password', username: 'node', password: 'node-password', service: 'ocimirror', scope: 'repository:small:pull', client_id: 'containerd-client' });
    const res = await fetch(`${m.url}/auth/token`, { method: 'POST', body: form, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(res.status).toBe(200);
    const { access_token } = (await res.json()) as { access_token: string };
    expect((await get(manifestUrl(), { accept: MANIFEST_ACCEPT, authorization: `Bearer ${access_token}` })).res.status).toBe(200);
  });

  it('re-reads the htpasswd file when it changes', async () => {
    const auth = basic('late', 'late-password');
    expect((await get(manifestUrl(), { accept: MANIFEST_ACCEPT, authorization: auth })).res.status).toBe(401);
    execFileSync('htpasswd', ['-Bb', htpasswd, 'late', 'late-password'], { stdio: 'ignore' });
    // The file is polled every second; bounded at 10 s.
    let status = 0;
    for (let i = 0; i < 50 && status !== 403; i++) {
      await new Promise((r) => setTimeout(r, 200));
      status = (await get(manifestUrl(), { accept: MANIFEST_ACCEPT, authorization: auth })).res.status;
    }
    // Known now, but no rule names 'late': authenticated, and denied.
    expect(status).toBe(403);
    clock.advance(3_600_000); // past the backoff the first refusal may have started
  });

  it('opens the admin API to admin accounts', async () => {
    const res = await fetch(`${m.url}/admin/v1/usage`, { headers: { authorization: basic('ops', 'ops-password') } });
    expect(res.status).toBe(200);
  });

  it('creates, lists and revokes robot tokens with the CLI; a revoked token gets 401', SLOW, async () => {
    const conn = ['--url', m.url, '--token', ADMIN_TOKEN];
    const created = await runCli(['token', 'create', '--description', 'ci runner', '--role', 'pull', '--expires', '30d', ...conn]);
    expect(created.code, created.stderr).toBe(0);
    const token = created.stdout.trim();
    expect(token).toMatch(/^omr_[0-9a-f]{16}_/);
    const id = token.split('_')[1]!;
    expect((await get(manifestUrl(), { accept: MANIFEST_ACCEPT, authorization: basic('robot', token) })).res.status).toBe(200);
    expect((await get(manifestUrl(), { accept: MANIFEST_ACCEPT, authorization: `Bearer ${token}` })).res.status).toBe(200);
    const tokenRes = await fetch(`${m.url}/auth/token?service=ocimirror&scope=repository:small:pull`, { headers: { authorization: basic('robot', token) } });
    expect(tokenRes.status).toBe(200);

    const listed = await runCli(['token', 'list', ...conn]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain(id);
    expect(listed.stdout).toContain('ci runner');
    expect(listed.stdout).not.toContain(token);

    const revoked = await runCli(['token', 'revoke', id, ...conn]);
    expect(revoked.code, revoked.stderr).toBe(0);
    const refused = await get(manifestUrl(), { accept: MANIFEST_ACCEPT, authorization: basic('robot', token) });
    expect(refused.res.status).toBe(401);
    expect(refused.res.headers.get('www-authenticate')).toContain('realm=');
  });

  it('opens the admin API to admin robot tokens', async () => {
    const res = await fetch(`${m.url}/admin/v1/tokens`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ description: 'automation', role: 'admin' }) });
    expect(res.status).toBe(201);
    const { token } = (await res.json()) as { token: string };
    expect((await fetch(`${m.url}/admin/v1/usage`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
  });

  it('refuses bearer tokens that are unsigned, signed with another key, expired or for another service', async () => {
    const key = await readFile(path.join(m.dataDir, 'auth', 'token.key'));
    const now = Math.floor(clock.now() / 1000);
    const access = [{ type: 'repository', name: 'small', actions: ['pull'] }];
    const signed = (k: Uint8Array, aud: string, exp: number) =>
      new SignJWT({ access }).setProtectedHeader({ alg: 'HS256' }).setIssuer('ocimirror').setAudience(aud).setSubject('node').setIssuedAt(now - 600).setExpirationTime(exp).sign(k);
    const forged = {
      'alg none': new UnsecuredJWT({ access }).setIssuer('ocimirror').setAudience('ocimirror').setSubject('node').setIssuedAt(now).setExpirationTime(now + 300).encode(),
      'another key': await signed(randomBytes(48), 'ocimirror', now + 300),
      expired: await signed(key, 'ocimirror', now - 60),
      'another service': await signed(key, 'other-service', now + 300),
    };
    for (const [what, token] of Object.entries(forged)) {
      const { res } = await get(manifestUrl(), { accept: MANIFEST_ACCEPT, authorization: `Bearer ${token}` });
      expect(res.status, what).toBe(401);
      expect(res.headers.get('www-authenticate'), what).toContain('Bearer realm=');
    }
    // The same key, service and lifetime does verify: the refusals above are for what each changed.
    const good = await signed(key, 'ocimirror', now + 300);
    expect((await get(manifestUrl(), { accept: MANIFEST_ACCEPT, authorization: `Bearer ${good}` })).res.status).toBe(200);
    clock.advance(3_600_000); // past the backoff these failures started
  });

  it('answers a wrong password with 401 and the challenge, then 429 after repeated failures', async () => {
    const wrong = basic('node', 'not-the-password');
    const statuses: number[] = [];
    let challenge: string | null = null;
    for (let i = 0; i < 8; i++) {
      const { res } = await get(manifestUrl(), { accept: MANIFEST_ACCEPT, authorization: wrong });
      statuses.push(res.status);
      challenge ??= res.headers.get('www-authenticate');
    }
    expect(statuses.slice(0, 6)).toEqual([401, 401, 401, 401, 401, 401]);
    expect(statuses.slice(6)).toEqual([429, 429]);
    expect(challenge).toContain(`realm="${m.url}/auth/token"`);
    // Even the right password waits out the backoff; after it, it works again.
    expect((await get(manifestUrl(), { accept: MANIFEST_ACCEPT, authorization: basic('node', 'node-password') })).res.status).toBe(429);
    clock.advance(3_600_000);
    expect((await get(manifestUrl(), { accept: MANIFEST_ACCEPT, authorization: basic('node', 'node-password') })).res.status).toBe(200);
  });
});

describeWithTools(['docker-registry'], 'client accounts with anonymous pulls', () => {
  let upstream: Upstream;
  let m: TestMirror;

  beforeAll(async () => {
    upstream = await startUpstream();
    m = await startTestMirror(mirrorConfig(upstream.url, { auth: { anonymous: 'pull' } } as never));
  }, SLOW.timeout);
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
  });

  it('lets unauthenticated clients pull but not write', async () => {
    expect((await get(`${m.url}/v2/`)).res.status).toBe(200);
    const { res } = await get(`${m.url}/v2/small/manifests/latest`, { accept: MANIFEST_ACCEPT });
    expect(res.status).toBe(200);
    const del = await fetch(`${m.url}/v2/small/manifests/${res.headers.get('docker-content-digest')}`, { method: 'DELETE' });
    expect(del.status).toBe(401);
    expect(del.headers.get('www-authenticate')).toContain('scope="repository:small:pull,delete"');
  });
});
