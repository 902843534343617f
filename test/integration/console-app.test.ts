/**
 * The web console on the real mirror (admin token, htpasswd accounts with a viewer and an admin)
 * against the real upstream: sign-in and its cookie, the security headers, anonymous redirects,
 * viewers who see no buttons and are refused when they post anyway, CSRF, header authentication
 * for scripts, the delete confirmation, job pages and their Server-Sent Events.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { mirrorConfig, startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { accountsConfig, writeHtpasswd } from '../helpers/accounts.ts';

const ADMIN_TOKEN = 'console-test-admin-token-0123456789';
const SLOW = { timeout: 120_000 };
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const IMAGE = 'registry.test/small:latest';

interface Answer {
  status: number;
  headers: Headers;
  body: string;
}

describeWithTools(['docker-registry', 'htpasswd'], 'web console', () => {
  let upstream: Upstream;
  let m: TestMirror;
  let dir: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-console-'));
    const htpasswd = writeHtpasswd(dir, { viewer: 'viewer-password', ops: 'ops-password' });
    m = await startTestMirror(accountsConfig(upstream.url, { adminToken: ADMIN_TOKEN, htpasswd, roles: { viewer: 'pull', ops: 'admin' } }));
  }, SLOW.timeout);
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function request(pathname: string, opts: { method?: string; headers?: Record<string, string>; form?: Record<string, string>; cookie?: string } = {}): Promise<Answer> {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.cookie) headers.cookie = opts.cookie;
    let body: string | undefined;
    if (opts.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(opts.form).toString();
    }
    const res = await fetch(`${m.url}${pathname}`, { method: opts.method ?? (opts.form ? 'POST' : 'GET'), headers, body, redirect: 'manual' });
    return { status: res.status, headers: res.headers, body: await res.text() };
  }

  const csrfIn = (html: string) => /name="csrf" value="([^"]*)"/.exec(html)?.[1] ?? '';
  const cookieOf = (res: Answer, name: string) => res.headers.getSetCookie().find((c) => c.startsWith(`${name}=`));
  const pair = (setCookie: string | undefined) => (setCookie ?? '').split(';')[0] as string;

  /** Signs in through the login form; answers the session cookie and the session's CSRF token. */
  async function signIn(fields: Record<string, string>): Promise<{ cookie: string; csrf: string; setCookie: string | undefined }> {
    const page = await request('/console/login');
    const nonce = pair(cookieOf(page, 'ocimirror_console_login'));
    const res = await request('/console/login', { form: { csrf: csrfIn(page.body), ...fields }, cookie: nonce });
    expect(res.status).toBe(303);
    const setCookie = cookieOf(res, 'ocimirror_console');
    const cookie = pair(setCookie);
    const jobs = await request('/console/jobs', { cookie });
    expect(jobs.status).toBe(200);
    return { cookie, csrf: csrfIn(jobs.body), setCookie };
  }

  function expectSecurityHeaders(res: Answer): void {
    expect(res.headers.get('content-security-policy')).toBe("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'");
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
  }

  const adminHeader = { authorization: `Bearer ${ADMIN_TOKEN}` };

  it('streams a running job as Server-Sent Events: its progress, then its end', async () => {
    const store = m.mirror.background.store;
    // Queued in the far future so the runner leaves it, then claimed here: a job that runs as long as the test says.
    const later = Date.now() + 3_600_000;
    const queued = store.enqueue('evict', { reason: 'console test' }, { runAfter: later });
    const claimed = store.claim(later + 1, 1);
    expect(claimed.map((j) => j.id)).toEqual([queued.id]);
    store.setProgress(queued.id, { done: 1, total: 4 });

    const res = await fetch(`${m.url}/console/jobs/${queued.id}/events`, { headers: adminHeader, signal: AbortSignal.timeout(20_000) });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = '';
    const readUntil = async (pattern: RegExp) => {
      for (let i = 0; i < 50 && !pattern.test(text); i++) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
      }
      expect(text).toMatch(pattern);
    };
    await readUntil(/event: update\ndata: .*data-job-state[^>]*>running</);
    expect(text).toContain('value="1" max="4"');
    store.setProgress(queued.id, { done: 3, total: 4 });
    await readUntil(/value="3" max="4"/);
    store.complete(queued.id, { evicted: 0 });
    await readUntil(/event: end/);
    expect(text).toMatch(/data-job-state[^>]*>done</);
    await reader.cancel();

    const page = await request(`/console/jobs/${queued.id}`, { headers: adminHeader });
    expect(page.status).toBe(200);
    expect(page.body).toMatch(/<span data-job-state[^>]*>done<\/span>/);
    expect(page.body).toContain(`data-sse="/console/jobs/${queued.id}/events"`);
  });

  it('streams the job list too', async () => {
    const res = await fetch(`${m.url}/console/jobs/events?type=evict`, { headers: adminHeader, signal: AbortSignal.timeout(20_000) });
    expect(res.status).toBe(200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const { value } = await reader.read();
    await reader.cancel();
    expect(new TextDecoder().decode(value)).toMatch(/^event: update\ndata: <tr>/);
  });

  it('sends anonymous visitors to the login page, which asks for an account or a token', async () => {
    const res = await request('/console/jobs?state=done');
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe(`/console/login?next=${encodeURIComponent('/console/jobs?state=done')}`);
    for (const root of ['/console', '/console/']) {
      const home = await request(root);
      expect(home.status, root).toBe(303);
      expect(home.headers.get('location')).toMatch(/^\/console\/login\?next=/);
    }
    const login = await request('/console/login');
    expect(login.status).toBe(200);
    expectSecurityHeaders(login);
    for (const name of ['user', 'password', 'token']) expect(login.body).toContain(`name="${name}"`);
    expect(login.body).toMatch(/<button type="submit">/);
    expect(login.body.startsWith('<!doctype html>')).toBe(true);
  });

  it('signs in with the admin token: an HttpOnly SameSite=Strict cookie, pages with the security headers and no-store', async () => {
    const { cookie, setCookie } = await signIn({ token: ADMIN_TOKEN });
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Strict/);
    expect(setCookie).toMatch(/Path=\/console/);
    for (const page of ['/console/', '/console/jobs', '/console/access', '/console/images']) {
      const res = await request(page, { cookie });
      expect(res.status, page).toBe(200);
      expectSecurityHeaders(res);
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.body).toContain('<main id="main"');
      expect(res.body).toMatch(/<h1>/);
    }
    const jobs = await request('/console/jobs', { cookie });
    expect(jobs.body).toContain('admin-token');
    expect(jobs.body).toContain('data-action="gc"');
  });

  it('refuses a wrong token and a login form without its CSRF token', async () => {
    const page = await request('/console/login');
    const nonce = pair(cookieOf(page, 'ocimirror_console_login'));
    const wrong = await request('/console/login', { form: { csrf: csrfIn(page.body), token: 'not-the-admin-token-000000' }, cookie: nonce });
    expect(wrong.status).toBe(401);
    expect(cookieOf(wrong, 'ocimirror_console')).toBeUndefined();
    const forged = await request('/console/login', { form: { token: ADMIN_TOKEN }, cookie: nonce });
    expect(forged.status).toBe(403);
    expect(cookieOf(forged, 'ocimirror_console')).toBeUndefined();
  });

  it('shows a read-only account no action buttons and refuses its posts with 403', async () => {
    const { cookie, csrf } = await signIn({ user: 'viewer', password: 'viewer-password' });
    const jobs = await request('/console/jobs', { cookie });
    expect(jobs.body).toContain('viewer');
    expect(jobs.body).not.toContain('data-action=');
    const before = m.mirror.background.store.list({ type: 'gc' }).length;
    const res = await request('/console/actions/gc', { form: { csrf }, cookie });
    expect(res.status).toBe(403);
    expect(res.headers.get('content-type')).toContain('text/html');
    expect(res.body).toContain('<main id="main"');
    const pin = await request('/console/actions/pin', { form: { csrf, image: IMAGE }, cookie });
    expect(pin.status).toBe(403);
    expect(m.mirror.background.store.list({ type: 'gc' }).length).toBe(before);
    expect(m.mirror.background.pins.list()).toEqual([]);
  });

  it('refuses a post without the CSRF token, and queues nothing', async () => {
    const { cookie } = await signIn({ user: 'ops', password: 'ops-password' });
    const before = m.mirror.background.store.list({ type: 'gc' }).length;
    const res = await request('/console/actions/gc', { form: {}, cookie });
    expect(res.status).toBe(403);
    const wrong = await request('/console/actions/gc', { form: { csrf: 'x.y' }, cookie });
    expect(wrong.status).toBe(403);
    expect(m.mirror.background.store.list({ type: 'gc' }).length).toBe(before);
  });

  it('takes an Authorization header without any cookie: the admin token and an admin account', async () => {
    const token = await request('/console/jobs', { headers: adminHeader });
    expect(token.status).toBe(200);
    expect(token.headers.get('cache-control')).toBe('no-store');
    const account = await request('/console/access', { headers: { authorization: basic('ops', 'ops-password') } });
    expect(account.status).toBe(200);
    expect(account.body).toContain('ops');
    const bad = await request('/console/jobs', { headers: { authorization: basic('ops', 'wrong') } });
    expect(bad.status).toBe(401);
    expect(bad.headers.get('www-authenticate')).toBeNull();
    // A header cannot be forged by another site, so no CSRF token is asked for.
    const gc = await request('/console/actions/gc', { form: {}, headers: adminHeader });
    expect(gc.status).toBe(303);
    expect(gc.headers.get('location')).toMatch(/^\/console\/jobs\/\d+$/);
  });

  it('deletes an image only after the confirmation step', async () => {
    const { cookie, csrf } = await signIn({ token: ADMIN_TOKEN });
    const before = m.mirror.background.store.list({ type: 'delete' }).length;
    const unconfirmed = await request('/console/actions/delete', { form: { csrf, image: IMAGE }, cookie });
    expect(unconfirmed.status).toBe(400);
    const mismatched = await request('/console/actions/delete', { form: { csrf, image: IMAGE, confirm: 'registry.test/other:latest' }, cookie });
    expect(mismatched.status).toBe(400);
    expect(m.mirror.background.store.list({ type: 'delete' }).length).toBe(before);

    const confirm = await request(`/console/actions/delete?image=${encodeURIComponent(IMAGE)}`, { cookie });
    expect(confirm.status).toBe(200);
    expect(confirm.body).toContain(`name="confirm" value="${IMAGE}"`);
    expect(confirm.body).toContain('data-action="delete"');
    const res = await request('/console/actions/delete', { form: { csrf: csrfIn(confirm.body), image: IMAGE, confirm: IMAGE }, cookie });
    expect(res.status).toBe(303);
    const location = res.headers.get('location') as string;
    expect(location).toMatch(/^\/console\/jobs\/\d+$/);
    const job = await request(location, { cookie });
    expect(job.status).toBe(200);
    expect(job.body).toMatch(/<span data-job-state[^>]*>(queued|running|done|failed)<\/span>/);
    expect(job.body).toContain(IMAGE);
  });

  it('queues a prefetch at once and pins and unpins with a message on the page it came from', async () => {
    const { cookie, csrf } = await signIn({ token: ADMIN_TOKEN });
    const prefetch = await request('/console/actions/prefetch', { form: { csrf, image: IMAGE }, cookie });
    expect(prefetch.status).toBe(303);
    expect(prefetch.headers.get('location')).toMatch(/^\/console\/jobs\/\d+$/);
    const pin = await request('/console/actions/pin', { form: { csrf, image: IMAGE, back: '/console/jobs' }, cookie });
    expect(pin.status).toBe(303);
    expect(pin.headers.get('location')).toBe('/console/jobs');
    expect(m.mirror.background.pins.list().map((p) => p.ref)).toEqual([IMAGE]);
    const after = await request('/console/jobs', { cookie });
    expect(after.body).toContain(`Pinned ${IMAGE}`);
    const again = await request('/console/jobs', { cookie });
    expect(again.body).not.toContain(`Pinned ${IMAGE}`);
    // An off-site `back` is ignored: the image's own tag page it is.
    const offsite = await request('/console/actions/unpin', { form: { csrf, image: IMAGE, back: 'https://example.com/' }, cookie });
    expect(offsite.status).toBe(303);
    expect(offsite.headers.get('location')).toBe('/console/images/test/small/tags/latest');
    expect(m.mirror.background.pins.list()).toEqual([]);
  });

  it('lets admins create a robot token shown once, sign in with it, and revoke it, which ends its session', async () => {
    const { cookie, csrf } = await signIn({ token: ADMIN_TOKEN });
    const created = await request('/console/access/tokens', { form: { csrf, description: 'console CI', role: 'pull', expires: '30d' }, cookie });
    expect(created.status).toBe(201);
    const secret = /data-secret[^>]*>(omr_[^<]+)</.exec(created.body)?.[1] as string;
    expect(secret).toMatch(/^omr_[0-9a-f]{16}_/);
    const id = secret.slice(4, 20);
    const access = await request('/console/access', { cookie });
    expect(access.body).toContain(id);
    expect(access.body).not.toContain(secret);

    const robot = await signIn({ token: secret });
    const robotPage = await request('/console/access', { cookie: robot.cookie });
    expect(robotPage.body).toContain(`robot:${id}`);
    expect(robotPage.body).not.toContain('data-action=');

    const revoked = await request(`/console/access/tokens/${id}/revoke`, { form: { csrf }, cookie });
    expect(revoked.status).toBe(303);
    expect((await request('/console/access', { cookie })).body).not.toContain(`<code>${id}</code>`);
    expect((await request('/console/jobs', { cookie: robot.cookie })).status).toBe(303);
  });

  it('logs out: the session cookie no longer works', async () => {
    const { cookie, csrf } = await signIn({ token: ADMIN_TOKEN });
    const out = await request('/console/logout', { form: { csrf }, cookie });
    expect(out.status).toBe(303);
    expect((await request('/console/jobs', { cookie })).status).toBe(303);
  });

  it('serves its assets and answers unknown pages with an HTML 404', async () => {
    const htmx = await request('/console/assets/htmx.min.js');
    expect(htmx.status).toBe(200);
    expect(htmx.headers.get('content-type')).toContain('javascript');
    for (const name of ['console.js', 'console.css']) expect((await request(`/console/assets/${name}`)).status).toBe(200);
    expect((await request('/console/assets/..%2fpackage.json')).status).toBe(404);
    const missing = await request('/console/nothing-here', { headers: adminHeader });
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toContain('text/html');
  });
});

describe('web console without credentials configured', () => {
  it('is not served when neither admin.token nor client auth is set', async () => {
    // Nothing is pulled: an upstream that is never asked is enough.
    const m = await startTestMirror(mirrorConfig('http://127.0.0.1:9'));
    try {
      const res = await fetch(`${m.url}/console/login`, { redirect: 'manual' });
      expect(res.status).toBe(404);
      expect(res.headers.get('content-type')).toContain('application/json');
    } finally {
      await m.stop();
    }
  }, SLOW.timeout);
});
