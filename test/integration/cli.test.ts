/**
 * The `ocimirror` command line as an operator meets it, run as a child process from source: each
 * failure is one `ocimirror: ...` line on stderr (never a stack trace) with its own exit code (the
 * table in src/cli/program.ts), one process per data directory, and a prefetch of a tag that does
 * not exist failing on its first attempt instead of retrying a permanent 404.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/cli-error.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { mirrorConfig, runCli, spawnMirror, type CliRun, type SpawnedMirror } from '../helpers/mirror.ts';

const TOKEN = 'cli-test-admin-token-0123456789';
const SLOW = { timeout: 120_000 };


/** One `ocimirror: ...` line, no stack frames. */
function expectOneLine(run: CliRun): string {
  const lines = run.stderr.trimEnd().split('\n');
  expect(lines, run.stderr).toHaveLength(1);
  expect(lines[0], run.stderr).toMatch(/^ocimirror: /);
  expect(run.stderr).not.toMatch(/^\s+at /m);
  return lines[0] as string;
}

/** A port some other socket listens on, and a way to close it. */
async function takenPort(): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise((r) => server.close(() => r())) };
}

describe('ocimirror without a mirror to talk to', () => {
  it('says the mirror cannot be reached when --url refuses the connection, and exits 3', async () => {
    const { port, close } = await takenPort();
    await close(); // nothing listens there now
    const run = await runCli(['prefetch', '--url', `http://127.0.0.1:${port}`, '--token', TOKEN, 'registry.test/small:v1']);
    expect(run.code, run.stderr).toBe(EXIT.unreachable);
    const line = expectOneLine(run);
    expect(line).toContain(`cannot reach the mirror at http://127.0.0.1:${port}`);
    expect(line).toContain('ECONNREFUSED');
  });

  it('refuses a --url that is not a URL as a usage error', async () => {
    const run = await runCli(['gc', '--url', 'mirror.local']);
    expect(run.code).toBe(EXIT.usage);
    expect(expectOneLine(run)).toContain("--url 'mirror.local' is not an http(s) URL");
  });

  it('exits 7 naming the address when serve cannot listen because the port is taken, and leaves no lock behind', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-cli-'));
    const taken = await takenPort();
    try {
      const data = path.join(dir, 'data');
      const run = await runCli(['serve', '--listen', `127.0.0.1:${taken.port}`, '--data', data, '--upstream', 'http://127.0.0.1:1']);
      expect(run.code, run.stderr).toBe(EXIT.cannotListen);
      const line = expectOneLine(run);
      expect(line).toContain(`cannot listen on 127.0.0.1:${taken.port}`);
      expect(line).toContain('EADDRINUSE');
      expect(existsSync(path.join(data, 'lock'))).toBe(false);
    } finally {
      await taken.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('takes over a lock left by a process that no longer runs', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-cli-'));
    try {
      const data = path.join(dir, 'data');
      const gone = spawn(process.execPath, ['-e', '']);
      const deadPid = gone.pid as number;
      await new Promise((r) => gone.once('exit', r));
      await mkdir(data, { recursive: true });
      await writeFile(path.join(data, 'lock'), `${deadPid}\n`);
      const run = await runCli(['gc', '--offline', '--data', data]);
      expect(run.code, run.stderr).toBe(EXIT.ok);
      expect(existsSync(path.join(data, 'lock'))).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describeWithTools(['docker-registry'], 'ocimirror against a running mirror', () => {
  let upstream: Upstream;
  let dir: string;
  let dataDir: string;
  let mirror: SpawnedMirror;

  beforeAll(async () => {
    upstream = await startUpstream();
    dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-cli-'));
    dataDir = path.join(dir, 'data');
    mirror = await spawnMirror(mirrorConfig(upstream.url, { admin: { token: TOKEN }, jobs: { maxAttempts: 5, retryBackoff: '5s' } }), dataDir);
  }, 60_000);

  afterAll(async () => {
    mirror?.kill('SIGTERM');
    await mirror?.exited;
    await upstream?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('logs the address it listens on beside the URL clients on this host use', () => {
    const line = JSON.parse(mirror.output().split('\n').find((l) => l.includes('"ocimirror listening"')) ?? '{}');
    expect(line.listen).toBe(new URL(mirror.url).host);
  });

  it('asks for a token when none is given, and exits 4', async () => {
    const run = await runCli(['prefetch', '--url', mirror.url, 'registry.test/small:v1']);
    expect(run.code, run.stderr).toBe(EXIT.unauthorized);
    expect(expectOneLine(run)).toContain('the admin API needs a token: pass --token or set OCIMIRROR_ADMIN_TOKEN');
  });

  it('says the token was refused when it is wrong, and exits 4', async () => {
    const run = await runCli(['gc', '--url', mirror.url], { OCIMIRROR_ADMIN_TOKEN: 'not-the-token-0123456789' });
    expect(run.code, run.stderr).toBe(EXIT.unauthorized);
    expect(expectOneLine(run)).toContain('the admin token was refused (401');
  });

  it('refuses an image on a registry the mirror does not serve, naming it, and exits 5', async () => {
    const run = await runCli(['prefetch', '--url', mirror.url, '--token', TOKEN, 'quay.io/org/app:1']);
    expect(run.code, run.stderr).toBe(EXIT.refused);
    const line = expectOneLine(run);
    expect(line).toContain("registry 'quay.io' is not configured on this mirror");
    expect(line).toContain('404 NAME_UNKNOWN');
  });

  it('fails the prefetch of a tag that does not exist on its first attempt, and exits 1', SLOW, async () => {
    const before = upstream.proxy.count({ pathIncludes: '/manifests/no-such-tag' });
    const run = await runCli(['prefetch', '--url', mirror.url, '--token', TOKEN, 'registry.test/small:no-such-tag']);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(EXIT.jobFailed);
    expect(run.stderr).toMatch(/registry\.test\/small:no-such-tag: failed after 1 attempt\(s\): small:no-such-tag not found on upstream test/);
    // One answer from the upstream (a HEAD or a GET, and a token round trip at most): no retries.
    expect(upstream.proxy.count({ pathIncludes: '/manifests/no-such-tag' }) - before).toBeLessThanOrEqual(2);
  });

  it('sends an image that names no registry to the default upstream, as a pull would', SLOW, async () => {
    const run = await runCli(['prefetch', '--url', mirror.url, '--token', TOKEN, 'small:v1']);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(EXIT.ok);
    expect(run.stdout).toContain(`small:v1: ${upstream.fixtures.image('small:v1').manifest.digest} cached`);
  });

  it('writes every timestamp of the admin API as an ISO 8601 string', async () => {
    const call = async (method: string, apiPath: string, body?: unknown) => {
      const res = await fetch(`${mirror.url}/admin/v1${apiPath}`, {
        method,
        headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      expect(res.status, apiPath).toBeLessThan(300);
      return (await res.json()) as Record<string, any>;
    };
    const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
    await call('POST', '/pins', { image: 'registry.test/small:v2' });
    const { pins } = await call('GET', '/pins');
    expect(pins).toEqual([expect.objectContaining({ ref: 'registry.test/small:v2', source: 'admin', createdAt: expect.stringMatching(ISO) })]);
    const { jobs } = await call('GET', '/jobs?limit=1');
    expect(jobs[0]).toMatchObject({ createdAt: expect.stringMatching(ISO), finishedAt: expect.stringMatching(ISO), runAfter: expect.stringMatching(ISO) });
    const { upstreams } = await call('GET', '/upstreams');
    expect(upstreams.find((u: { name: string }) => u.name === 'test')).toMatchObject({ lastAnswerAt: expect.stringMatching(ISO) });
  });

  it('refuses a second serve on the same data directory, naming the pid that holds it, and exits 6', async () => {
    const lock = (await readFile(path.join(dataDir, 'lock'), 'utf8')).trim();
    expect(lock).toBe(String(mirror.proc.pid));
    const run = await runCli(['serve', '--listen', '127.0.0.1:0', '--data', dataDir, '--upstream', upstream.url]);
    expect(run.code, run.stderr).toBe(EXIT.locked);
    expect(expectOneLine(run)).toContain(`the data directory ${dataDir} is in use by process ${mirror.proc.pid}`);
    expect(await readFile(path.join(dataDir, 'lock'), 'utf8')).toBe(`${mirror.proc.pid}\n`);
  });

  it('refuses gc --offline on the directory of a running mirror, and exits 6', async () => {
    const run = await runCli(['gc', '--offline', '--data', dataDir]);
    expect(run.code, run.stderr).toBe(EXIT.locked);
    expect(expectOneLine(run)).toContain(`is in use by process ${mirror.proc.pid}`);
  });

  it('removes its lock when it stops, so gc --offline can run after it', SLOW, async () => {
    const config = path.join(dir, 'after.yaml');
    await writeFile(config, `storage:\n  path: ${dataDir}\n`);
    mirror.kill('SIGTERM');
    expect(await mirror.exited).toBe(0);
    expect(existsSync(path.join(dataDir, 'lock'))).toBe(false);
    const run = await runCli(['gc', '--offline', '--config', config]);
    expect(run.code, run.stderr).toBe(EXIT.ok);
  });
});
