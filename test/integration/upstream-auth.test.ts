/**
 * The upstream client against the real CNCF distribution registry (Debian's docker-registry) with
 * `auth: htpasswd`: Basic credentials are sent when challenged, and without them the 401 comes back.
 * Self-contained on purpose: starts its own registry on a free port with a temp dir, stops it after.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { text } from 'node:stream/consumers';
import { promisify } from 'node:util';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { UpstreamConfig } from '../../src/config/schema.ts';
import { UpstreamClient } from '../../src/upstream/upstream-client.ts';

const REGISTRY_BIN = '/usr/bin/docker-registry';
const USER = 'mirror';
const PASSWORD = 'integration-pass';
const REPO = 'upstream-auth/test';

let dir: string | undefined;
let registry: ChildProcess | undefined;
let registryLog = '';
let origin = '';
const clients: UpstreamClient[] = [];

function config(auth: UpstreamConfig['auth']): UpstreamConfig {
  return { name: 'local-htpasswd', url: origin, urls: [origin], failover: { backoff: 30_000 }, rateLimitFloor: 0, registries: [], tagTTL: 300_000, timeout: 5_000, bodyTimeout: 5_000, fillTimeout: 60_000, auth, realmHosts: [], proxy: undefined, offline: false };
}

function client(auth: UpstreamConfig['auth']): UpstreamClient {
  const c = new UpstreamClient(config(auth));
  clients.push(c);
  return c;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Polls until the registry answers HTTP at all (401 on /v2/ means it is up), bounded. */
async function waitUntilServing(url: string, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (registry?.exitCode !== null) throw new Error(`docker-registry exited early (${registry?.exitCode}):\n${registryLog}`);
    try {
      const res = await request(`${url}/v2/`, { headersTimeout: 1_000, bodyTimeout: 1_000 });
      await res.body.dump();
      return;
    } catch (err) {
      lastError = err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`docker-registry did not serve ${url} within ${deadlineMs} ms: ${String(lastError)}\n${registryLog}`);
}

async function stopRegistry(): Promise<void> {
  const child = registry;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await Promise.race([exited, new Promise((r) => setTimeout(r, 8_000))]);
  clearTimeout(timer);
}

/** Pushes one blob with the registry's monolithic upload (distribution-spec "Pushing a blob monolithically"). */
async function pushBlob(content: Buffer, authorization: string): Promise<string> {
  const digest = `sha256:${createHash('sha256').update(content).digest('hex')}`;
  const start = await request(`${origin}/v2/${REPO}/blobs/uploads/`, { method: 'POST', headers: { authorization } });
  await start.body.dump();
  expect(start.statusCode).toBe(202);
  const location = new URL(String(start.headers.location), origin);
  location.searchParams.set('digest', digest);
  const put = await request(location, {
    method: 'PUT',
    headers: { authorization, 'content-type': 'application/octet-stream', 'content-length': String(content.length) },
    body: content,
  });
  await put.body.dump();
  expect(put.statusCode).toBe(201);
  return digest;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-upstream-auth-'));
  const htpasswd = path.join(dir, 'htpasswd');
  // bcrypt entries: distribution's htpasswd backend accepts only bcrypt.
  await promisify(execFile)('htpasswd', ['-Bbc', htpasswd, USER, PASSWORD], { timeout: 10_000 });
  const port = await freePort();
  origin = `http://127.0.0.1:${port}`;
  const configFile = path.join(dir, 'config.yml');
  await writeFile(
    configFile,
    [
      'version: 0.1',
      'log:',
      '  level: warn',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${path.join(dir, 'data')}`,
      'http:',
      `  addr: 127.0.0.1:${port}`,
      'auth:',
      '  htpasswd:',
      '    realm: ocimirror-test',
      `    path: ${htpasswd}`,
      '',
    ].join('\n'),
  );
  registry = spawn(REGISTRY_BIN, ['serve', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  registry.stdout?.on('data', (d: Buffer) => (registryLog += d.toString()));
  registry.stderr?.on('data', (d: Buffer) => (registryLog += d.toString()));
  await waitUntilServing(origin, 15_000);
}, 30_000);

afterAll(async () => {
  try {
    await Promise.all(clients.map((c) => c.close(1_000)));
    await stopRegistry();
  } finally {
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}, 20_000);

describe('UpstreamClient against docker-registry with htpasswd', () => {
  it('gets 200 from /v2/ when it has the credentials', async () => {
    const res = await client({ username: USER, password: PASSWORD }).request({ method: 'GET', repository: '', path: '' });
    await text(res.body);
    expect(res.status).toBe(200);
    expect(res.headers['docker-distribution-api-version']).toBe('registry/2.0');
  });

  it('gets the 401 and its Basic challenge without credentials', async () => {
    const res = await client(undefined).request({ method: 'GET', repository: '', path: '' });
    await text(res.body);
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toMatch(/^Basic realm="ocimirror-test"/);
  });

  it('gets the 401 when the registry refuses the credentials', async () => {
    const res = await client({ username: USER, password: 'wrong' }).request({ method: 'GET', repository: '', path: '' });
    await text(res.body);
    expect(res.status).toBe(401);
  });

  it('streams a real blob with credentials and returns a missing manifest as a 404 response', async () => {
    const content = Buffer.from(`blob for the upstream auth test ${Date.now()}`);
    const digest = await pushBlob(content, `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`);
    const c = client({ username: USER, password: PASSWORD });

    const blob = await c.request({ method: 'GET', repository: REPO, path: `${REPO}/blobs/${digest}` });
    expect(blob.status).toBe(200);
    expect(blob.headers['docker-content-digest']).toBe(digest);
    expect(Buffer.from(await text(blob.body))).toEqual(content);

    const head = await c.request({ method: 'HEAD', repository: REPO, path: `${REPO}/blobs/${digest}` });
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(content.length));
    expect(await text(head.body)).toBe('');

    const missing = await c.request({ method: 'GET', repository: REPO, path: `${REPO}/manifests/no-such-tag` });
    expect(missing.status).toBe(404);
    expect(JSON.parse(await text(missing.body)).errors[0].code).toBe('MANIFEST_UNKNOWN');
    expect(c.counters).toMatchObject({ requests: 3, errors: 0 });
  });
});
