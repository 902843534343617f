/**
 * Live config reload on the real `ocimirror serve` process: SIGHUP and a change of the config file
 * apply new upstreams, routes, auth rules and TLS files to new requests; an invalid config keeps
 * the old one serving and names every problem in the log, /readyz and the metrics; a key that
 * needs a restart (listen) is named and left alone while the rest applies; a blob streaming
 * through a replaced upstream client during a reload completes whole.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { Agent, fetch as undiciFetch } from 'undici';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_ARGS, PROJECT_ROOT } from '../helpers/mirror.ts';
import { MANIFEST_ACCEPT } from '../helpers/images.ts';
import { freePort } from '../helpers/ports.ts';
import { makeTestCa } from '../helpers/test-pki.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { waitFor } from '../helpers/wait.ts';

const ADMIN_TOKEN = 'live-reload-admin-token-0123456789';
type LogLine = Record<string, unknown> & { msg?: string };

interface Served {
  url: string;
  proc: ChildProcess;
  lines(): LogLine[];
  /** Runs `act` and waits for the reload it causes; returns that reload's log line. */
  reloaded(act: () => unknown): Promise<LogLine>;
  stop(): Promise<void>;
}

/** `ocimirror serve --config FILE ...args` from source, as operators run it. */
async function serve(file: string, args: string[] = []): Promise<Served> {
  const proc = spawn(process.execPath, [...CLI_ARGS, 'serve', '--config', file, ...args], {
    cwd: PROJECT_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '', OCIMIRROR_LOG_LEVEL: 'info' },
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const lines = () =>
    out.split('\n').flatMap((l) => {
      try {
        return [JSON.parse(l) as LogLine];
      } catch {
        return [];
      }
    });
  const reloads = () => lines().filter((l) => typeof l.msg === 'string' && l.msg.startsWith('config reload'));
  try {
    const listening = await waitFor('the listening line', () => lines().find((l) => l.msg === 'ocimirror listening') ?? (proc.exitCode !== null ? new Error(out) : undefined), 20_000);
    if (listening instanceof Error) throw listening;
    return {
      url: listening.url as string,
      proc,
      lines,
      async reloaded(act) {
        // By time, not by count: the line of an earlier reload may still be on its way through the pipe.
        const since = Date.now();
        await act();
        return waitFor('a config reload', () => reloads().find((l) => Date.parse(l.time as string) >= since), 10_000);
      },
      async stop() {
        proc.kill('SIGTERM');
        await exited;
      },
    };
  } catch (err) {
    proc.kill('SIGKILL');
    throw new Error(`ocimirror serve did not start: ${(err as Error).message}\n${out}`);
  }
}

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describeWithTools(['docker-registry', 'openssl', 'htpasswd'], 'live config reload', () => {
  let upstream: Upstream;
  let dir: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-reload-'));
  }, 60_000);
  afterAll(async () => {
    await upstream?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const testUpstream = (extra: Record<string, unknown> = {}) => ({ name: 'test', url: upstream.url, registries: ['registry.test'], tagTTL: '1h', ...extra });
  const otherUpstream = () => ({ name: 'other', url: upstream.url, registries: ['other.example'], tagTTL: '1h' });

  describe('on SIGHUP (file watching off)', () => {
    let m: Served;
    let file: string;
    const base = (extra: Record<string, unknown> = {}) => ({
      listen: '127.0.0.1:0',
      storage: { path: path.join(dir, 'data-a') },
      upstreams: [testUpstream()],
      defaultUpstream: 'test',
      prefetch: { onPull: false },
      admin: { token: ADMIN_TOKEN },
      server: { shutdownGrace: '1s' },
      ...extra,
    });
    const write = (config: Record<string, unknown>) => writeFile(file, stringify(config));
    const hup = (config: Record<string, unknown>) => m.reloaded(async () => {
      await write(config);
      m.proc.kill('SIGHUP');
    });
    const manifest = (name: string, headers: Record<string, string> = {}) => fetch(`${m.url}/v2/${name}/manifests/latest`, { headers: { accept: MANIFEST_ACCEPT, ...headers } });

    beforeAll(async () => {
      file = path.join(dir, 'a.yaml');
      await write(base());
      m = await serve(file, ['--no-watch']);
    }, 30_000);
    afterAll(async () => {
      await m?.stop();
    });

    it('routes a registry added by a SIGHUP that it refused before', async () => {
      const before = await manifest('other.example/small');
      expect(before.status).toBe(404);
      expect(((await before.json()) as { errors: Array<{ code: string }> }).errors[0]?.code).toBe('NAME_UNKNOWN');
      const line = await hup(base({ upstreams: [testUpstream(), otherUpstream()] }));
      expect(line).toMatchObject({ msg: 'config reloaded', trigger: 'SIGHUP', changed: ['upstreams[1]'] });
      expect((await manifest('other.example/small')).status).toBe(200);
    });

    it('keeps serving the old config when the new one is invalid, names every problem, and recovers when it is fixed', async () => {
      const bad = base({ upstreams: [testUpstream({ url: 'not-a-url', bogus: 1 }), otherUpstream()] });
      const line = await hup(bad);
      expect(line.msg).toBe('config reload failed: the running config is unchanged');
      const issues = line.issues as string[];
      expect(issues.some((i) => i.startsWith('upstreams[0].url'))).toBe(true);
      expect(issues.some((i) => i.startsWith('upstreams[0]') && i.includes("'bogus'"))).toBe(true);
      // The previous config serves on, routes added by it included.
      expect((await manifest('small')).status).toBe(200);
      expect((await manifest('other.example/small')).status).toBe(200);
      const ready = await fetch(`${m.url}/readyz`);
      expect(ready.status).toBe(200);
      const body = (await ready.json()) as { status: string; configReload: { result: string; issues: string[] } };
      expect(body.status).toBe('ready');
      expect(body.configReload).toMatchObject({ result: 'failed', trigger: 'SIGHUP', issues });
      const metrics = await (await fetch(`${m.url}/metrics`)).text();
      expect(metrics).toMatch(/^ocimirror_config_reload_total\{result="failed"\} 1$/m);
      expect(metrics).toMatch(/^ocimirror_config_last_reload_success 0$/m);

      // Fixed, and applied through the admin API this time.
      await write(base({ upstreams: [testUpstream(), otherUpstream()] }));
      const res = await fetch(`${m.url}/admin/v1/reload`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ result: 'ok', trigger: 'admin', issues: [] });
      expect(await (await fetch(`${m.url}/metrics`)).text()).toMatch(/^ocimirror_config_last_reload_success 1$/m);
      expect(((await (await fetch(`${m.url}/readyz`)).json()) as { configReload: { result: string } }).configReload.result).toBe('ok');
    });

    it('names a listen change as needing a restart, stays on its port, and applies the rest', async () => {
      const port = await freePort();
      const line = await hup(base({ listen: `127.0.0.1:${port}` }));
      expect(line).toMatchObject({ msg: 'config reloaded', changed: ['upstreams[1]'] });
      const warn = await waitFor('the restart warning', () => m.lines().find((l) => l.msg === 'config changes that apply only at a restart were left as they are'));
      expect(warn.restartRequired).toEqual(['listen']);
      // The other change (the second upstream removed) applied; the old port still serves.
      expect((await manifest('other.example/small')).status).toBe(404);
      expect((await manifest('small')).status).toBe(200);
      await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
      const ready = (await (await fetch(`${m.url}/readyz`)).json()) as { configReload: { restartRequired: string[] } };
      expect(ready.configReload.restartRequired).toEqual(['listen']);
      expect(await (await fetch(`${m.url}/metrics`)).text()).toMatch(/^ocimirror_config_restart_pending 1$/m);
    });

    it('finishes a blob streaming through an upstream client that a reload replaced', async () => {
      const layer = upstream.fixtures.image('large').manifest.layers[0]!;
      upstream.proxy.throttle(4 * 2 ** 20, { pathIncludes: layer.digest, times: 1 });
      try {
        let firstBytes!: () => void;
        const started = new Promise<void>((r) => (firstBytes = r));
        const done = new Promise<{ status: number; bytes: number; digest: string }>((resolve, reject) => {
          http.get(`${m.url}/v2/large/blobs/${layer.digest}`, (res) => {
            const hash = createHash('sha256');
            let bytes = 0;
            res.on('data', (c: Buffer) => {
              hash.update(c);
              bytes += c.length;
              firstBytes();
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, digest: `sha256:${hash.digest('hex')}` }));
            res.on('error', reject);
          }).on('error', reject);
        });
        await started;
        // tagTTL changed: the 'test' client is replaced under the blob's fill.
        const line = await hup(base({ upstreams: [testUpstream({ tagTTL: '2h' })] }));
        expect(line).toMatchObject({ msg: 'config reloaded', changed: ['upstreams[0].tagTTL'] });
        const result = await done;
        expect(result).toEqual({ status: 200, bytes: layer.size, digest: layer.digest });
        expect((await manifest('small')).status).toBe(200);
      } finally {
        upstream.proxy.clear();
      }
    });

    it('applies changed auth rules to the next request', async () => {
      const htpasswd = path.join(dir, 'htpasswd');
      execFileSync('htpasswd', ['-Bbc', htpasswd, 'node', 'node-password'], { stdio: 'ignore' });
      const auth = (repositories: string[]) => ({ htpasswd, rules: [{ accounts: ['node'], repositories, roles: ['pull'] }] });
      const node = { authorization: basic('node', 'node-password') };
      await hup(base({ auth: auth(['**']) }));
      expect((await manifest('small')).status).toBe(401);
      expect((await manifest('small', node)).status).toBe(200);
      const line = await hup(base({ auth: auth(['registry.test/nothing/*']) }));
      expect(line).toMatchObject({ msg: 'config reloaded', changed: ['auth.rules[0].repositories'] });
      const denied = await manifest('small', node);
      expect(denied.status).toBe(403);
      expect(((await denied.json()) as { errors: Array<{ code: string }> }).errors[0]?.code).toBe('DENIED');
    });

    it('refuses an htpasswd file that cannot be read and keeps the accounts it has', async () => {
      const line = await hup(base({ auth: { htpasswd: path.join(dir, 'missing-htpasswd'), rules: [{ accounts: ['node'], repositories: ['**'], roles: ['pull'] }] } }));
      expect(line.msg).toBe('config reload failed: the running config is unchanged');
      expect((line.issues as string[]).some((i) => i.startsWith('auth.htpasswd: cannot read'))).toBe(true);
      expect((await manifest('small', { authorization: basic('node', 'node-password') })).status).toBe(403);
    });
  });

  describe('on a change of the config file, over TLS', () => {
    let m: Served;
    let file: string;
    let pki: string;
    let agent: Agent;
    const base = (extra: Record<string, unknown> = {}) => ({
      listen: '127.0.0.1:0',
      storage: { path: path.join(dir, 'data-b') },
      upstreams: [testUpstream()],
      defaultUpstream: 'test',
      prefetch: { onPull: false },
      tls: { cert: path.join(pki, 'one.crt'), key: path.join(pki, 'one.key') },
      ...extra,
    });
    const edit = (config: Record<string, unknown>) => m.reloaded(() => writeFile(file, stringify(config)));
    const manifest = (name: string) => undiciFetch(`${m.url}/v2/${name}/manifests/latest`, { headers: { accept: MANIFEST_ACCEPT }, dispatcher: agent });
    /** The CN of the certificate a new handshake gets. */
    const servedCN = () =>
      new Promise<string>((resolve, reject) => {
        const { port } = new URL(m.url);
        const socket = tls.connect({ host: '127.0.0.1', port: Number(port), ca: readFileSync(path.join(pki, 'ca.crt')) }, () => {
          resolve(socket.getPeerCertificate().subject.CN as string);
          socket.end();
        });
        socket.on('error', reject);
      });

    beforeAll(async () => {
      pki = path.join(dir, 'pki');
      await mkdir(pki);
      const ca = await makeTestCa(pki);
      await ca.issue('one', 'mirror-one');
      await ca.issue('two', 'mirror-two');
      agent = new Agent({ connect: { ca: readFileSync(path.join(pki, 'ca.crt')) } });
      file = path.join(dir, 'conf', 'b.yaml');
      await mkdir(path.dirname(file));
      await writeFile(file, stringify(base()));
      m = await serve(file);
    }, 30_000);
    afterAll(async () => {
      await m?.stop();
      await agent?.close();
    });

    it('picks up an edited config file without a signal', async () => {
      expect((await manifest('other.example/small')).status).toBe(404);
      const line = await edit(base({ upstreams: [testUpstream(), otherUpstream()] }));
      expect(line).toMatchObject({ msg: 'config reloaded', trigger: 'file', changed: ['upstreams[1]'] });
      expect((await manifest('other.example/small')).status).toBe(200);
    });

    it('serves the certificate a reload names to new handshakes', async () => {
      expect(await servedCN()).toBe('mirror-one');
      // As a Kubernetes ConfigMap update does: the file is replaced by rename, not written in place.
      const line = await m.reloaded(async () => {
        const next = `${file}.new`;
        await writeFile(next, stringify(base({ upstreams: [testUpstream(), otherUpstream()], tls: { cert: path.join(pki, 'two.crt'), key: path.join(pki, 'two.key') } })));
        await rename(next, file);
      });
      expect(line).toMatchObject({ msg: 'config reloaded', trigger: 'file', changed: ['tls.cert', 'tls.key'] });
      expect(await servedCN()).toBe('mirror-two');
      expect((await manifest('small')).status).toBe(200);
    });

    it('refuses TLS files that cannot be read and keeps serving the current certificate', async () => {
      const line = await edit(base({ tls: { cert: path.join(pki, 'absent.crt'), key: path.join(pki, 'two.key') } }));
      expect(line.msg).toBe('config reload failed: the running config is unchanged');
      expect((line.issues as string[]).some((i) => i.startsWith('tls.cert: cannot read'))).toBe(true);
      expect(await servedCN()).toBe('mirror-two');
    });
  });
});
