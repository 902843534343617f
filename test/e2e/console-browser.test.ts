/**
 * @module test/e2e/console-browser
 * The web console in a real browser: Debian's Chromium driven by playwright-core against the real
 * mirror (admin token and htpasswd accounts) in front of the real upstream, images pulled through it
 * with skopeo. An operator logs in, browses to a tag, copies its pull command, pins it, deletes
 * another image and watches the job finish and the image go; a read-only account sees no action
 * buttons and is refused when it posts the form directly. Screenshots of the main pages are saved
 * under test/e2e/screenshots/ (docs/console-overview.png is copied from there).
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromiumPath, launchChromium } from '../helpers/browser.ts';
import { accountsConfig, writeHtpasswd } from '../helpers/accounts.ts';
import { startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { skopeoCopy } from '../helpers/skopeo.ts';
import { describeIf, hasTool } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

const ADMIN_TOKEN = 'console-browser-admin-token-0123456789';
const SHOTS = fileURLToPath(new URL('./screenshots/', import.meta.url));
const missing = [chromiumPath() ? [] : ['chromium'], ['docker-registry', 'skopeo', 'htpasswd'].filter((t) => !hasTool(t))].flat();

describeIf(missing.length === 0, `missing: ${missing.join(' ')}`, 'the console in Chromium', () => {
  let upstream: Upstream;
  let mirror: TestMirror;
  let browser: Browser;
  let dir: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-console-'));
    const htpasswd = writeHtpasswd(dir, { viewer: 'viewer-password', ops: 'ops-password' });
    mirror = await startTestMirror(accountsConfig(upstream.url, { adminToken: ADMIN_TOKEN, htpasswd, roles: { viewer: 'pull', ops: 'admin' } }));
    const host = new URL(mirror.url).host;
    for (const [i, ref] of ['small:latest', 'medium:latest', 'small:latest'].entries()) {
      // small twice, into a fresh layout: the second pull is served from the cache, so the overview has hits to draw.
      await skopeoCopy(`docker://${host}/${ref}`, `oci:${path.join(dir, `pull-${i}`)}:latest`, { creds: 'ops:ops-password' });
    }
    await mkdir(SHOTS, { recursive: true });
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await mirror?.stop();
    await upstream?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function login(page: Page, how: { token: string } | { user: string; password: string }): Promise<void> {
    await page.goto(`${mirror.url}/console/`);
    expect(new URL(page.url()).pathname).toBe('/console/login');
    if ('token' in how) await page.fill('input[name="token"]', how.token);
    else {
      await page.fill('input[name="user"]', how.user);
      await page.fill('input[name="password"]', how.password);
    }
    await Promise.all([page.waitForURL((u) => !u.pathname.endsWith('/login')), page.locator(`form:has(input[name="${'token' in how ? 'token' : 'password'}"]) [type="submit"]`).click()]);
  }

  describe('as an admin', () => {
    let page: Page;

    beforeAll(async () => {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: mirror.url });
      page = await context.newPage();
    });

    it('logs in with the admin token and shows the overview with charts', async () => {
      await login(page, { token: ADMIN_TOKEN });
      await page.goto(`${mirror.url}/console/`);
      await expect(page.locator('h1').first().textContent()).resolves.toBeTruthy();
      expect(await page.locator('main#main svg').count()).toBeGreaterThan(0);
      await page.screenshot({ path: path.join(SHOTS, 'overview.png'), fullPage: true });
    });

    it('browses to a tag of a pulled image and copies its pull command', async () => {
      await page.goto(`${mirror.url}/console/images`);
      await page.screenshot({ path: path.join(SHOTS, 'images.png'), fullPage: true });
      await page.getByRole('link', { name: /small/ }).first().click();
      await page.getByRole('link', { name: 'latest', exact: true }).first().click();
      const image = upstream.fixtures.image('small:latest');
      await expect(page.locator('main#main').textContent()).resolves.toContain(image.manifest.digest);
      await page.screenshot({ path: path.join(SHOTS, 'tag.png'), fullPage: true });
      const code = (await page.locator('code[data-pull="podman"]').textContent())!.trim();
      expect(code).toContain('small:latest');
      // The podman command's own button: the clipboard holds exactly the command shown.
      const button = page.locator('button[aria-label="Copy the podman command"]');
      await button.click();
      // The button says so once the clipboard write finished.
      await button.filter({ hasText: 'Copied' }).waitFor({ timeout: 5_000 });
      const copied = await page.evaluate<string>('navigator.clipboard.readText()');
      expect(copied.trim()).toBe(code);
    });

    it('pins the tag', async () => {
      await page.locator('[data-action="pin"]').click();
      // The redirect back to the tag page shows the unpin form once the pin is kept.
      await page.locator('[data-action="unpin"]').waitFor({ timeout: 10_000 });
      await expect(page.locator('[data-action="unpin"]').count()).resolves.toBe(1);
      await expect(page.locator('[data-pinned]').getAttribute('data-pinned')).resolves.toBe('yes');
      expect(mirror.mirror.background.pins.list().map((p) => p.ref)).toEqual([expect.stringMatching(/\/small:latest$/)]);
    });

    it('deletes another image after confirming, and watches the job finish and the image go', async () => {
      await page.goto(`${mirror.url}/console/images`);
      await page.getByRole('link', { name: /medium/ }).first().click();
      await page.getByRole('link', { name: 'latest', exact: true }).first().click();
      await page.locator('[data-action="delete"]').click();
      await expect(page.locator('main#main').textContent()).resolves.toMatch(/medium/);
      await page.locator('[data-action="delete"]').click();
      await page.waitForURL(/\/console\/jobs\/\d+/);
      await page.locator('[data-job-state]', { hasText: /done/ }).waitFor({ timeout: 20_000 });
      await page.screenshot({ path: path.join(SHOTS, 'job.png'), fullPage: true });
      await page.goto(`${mirror.url}/console/images`);
      await expect(page.getByRole('link', { name: /medium/ }).count()).resolves.toBe(0);
    });

    it('lays the overview out at a narrow width', async () => {
      await page.setViewportSize({ width: 360, height: 800 });
      await page.goto(`${mirror.url}/console/`);
      const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth');
      expect(overflow).toBeLessThanOrEqual(0);
      await page.screenshot({ path: path.join(SHOTS, 'overview-narrow.png'), fullPage: true });
    });
  });

  describe('as a read-only account', () => {
    it('shows no action buttons and refuses the form posted directly', async () => {
      const context = await browser.newContext();
      const page = await context.newPage();
      await login(page, { user: 'viewer', password: 'viewer-password' });
      await page.goto(`${mirror.url}/console/images`);
      await page.getByRole('link', { name: /small/ }).first().click();
      await page.getByRole('link', { name: 'latest', exact: true }).first().click();
      expect(await page.locator('[data-action]').count()).toBe(0);
      // Every page carries the session's CSRF token (the logout form at least): the refusal is about the role.
      const csrf = await page.locator('input[name="csrf"]').first().inputValue();
      const res = await page.request.post(`${mirror.url}/console/actions/unpin`, { form: { image: 'small:latest', csrf }, maxRedirects: 0 });
      const status = res.status();
      expect(status).toBe(403);
      await context.close();
    });
  });
});
