/**
 * @module test/helpers/mirror
 * Starts the real ocimirror against a temp data dir: in-process (`startTestMirror`, same
 * composition root as `ocimirror serve`) or as a child process running the real CLI
 * (`spawnMirror`), for tests that kill or signal it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFile } from 'node:fs/promises';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.ts';
import type { RawConfig } from '../../src/config/schema.ts';
import { startMirror, type Mirror } from '../../src/mirror.ts';
import { silentLogger } from '../../src/util/logger.ts';
import type { TestClock } from './clock.ts';

export const PROJECT_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Node arguments that run the `ocimirror` CLI from the sources under test (never a stale dist/). */
export const CLI_ARGS = ['--import', 'tsx', path.join(PROJECT_ROOT, 'src/main.ts')];

export interface TestMirror {
  url: string;
  dataDir: string;
  mirror: Mirror;
  stop(): Promise<void>;
}

/**
 * A mirror config with two upstreams at the same registry: `test` (registry name
 * `registry.test`, the default for requests naming no registry) and `hub` (`docker.io`, with
 * Docker Hub's implicit `library/` for one-component names). `upstream` options apply to both.
 * Prefetch-on-pull is off unless asked for, so upstream request counts are each test's own.
 */
export function mirrorConfig(upstreamUrl: string, extra: Partial<RawConfig> & { upstream?: Record<string, unknown> } = {}): RawConfig {
  const { upstream = {}, ...rest } = extra;
  return {
    listen: '127.0.0.1:0',
    upstreams: [
      { name: 'test', url: upstreamUrl, registries: ['registry.test'], tagTTL: '1h', ...upstream },
      { name: 'hub', url: upstreamUrl, registries: ['docker.io'], tagTTL: '1h', ...upstream },
    ],
    defaultUpstream: 'test',
    prefetch: { onPull: false },
    ...rest,
  } as RawConfig;
}

/**
 * A mirror config with one upstream, `shared`, that serves Docker Hub (`docker.io`) and another
 * registry (`registry.example`) from the same upstream, and is the default: `library/` is added
 * for requests that name Docker Hub or no registry, never for those naming `registry.example`.
 */
export function sharedHubConfig(upstreamUrl: string, extra: Partial<RawConfig> = {}): RawConfig {
  return {
    listen: '127.0.0.1:0',
    upstreams: [{ name: 'shared', url: upstreamUrl, registries: ['docker.io', 'registry.example'], tagTTL: '1h' }],
    defaultUpstream: 'shared',
    prefetch: { onPull: false },
    ...extra,
  } as RawConfig;
}

export interface TestMirrorOptions {
  dataDir?: string;
  env?: NodeJS.ProcessEnv;
  /** The mirror's clock for TTLs and backoffs; tests advance it instead of sleeping. */
  clock?: TestClock;
}

export async function startTestMirror(raw: RawConfig, opts: TestMirrorOptions = {}): Promise<TestMirror> {
  const dataDir = opts.dataDir ?? (await mkdtemp(path.join(tmpdir(), 'ocimirror-test-')));
  // Storage options (maxSize, lowWatermark, maxAge) from `raw` are kept; only the path is the test's.
  const config = parseConfig({ ...raw, storage: { ...raw.storage, path: dataDir } }, { env: opts.env ?? {} });
  const mirror = await startMirror(config, silentLogger, opts.clock ? { now: opts.clock.now } : {});
  return {
    url: mirror.url,
    dataDir,
    mirror,
    async stop() {
      await mirror.stop({ graceMs: 2000, drainDelayMs: 0 });
      if (!opts.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export interface SpawnedMirror {
  url: string;
  proc: ChildProcess;
  /** Everything the process printed (JSON log lines). */
  output(): string;
  /** Resolves with the exit code (or signal name) once the process ended. */
  exited: Promise<number | string>;
  kill(signal?: NodeJS.Signals): void;
}

/** Runs `ocimirror serve --config FILE` (from source) as a child process and waits for its listening line. */
export async function spawnMirror(raw: RawConfig, dataDir: string, timeoutMs = 20_000): Promise<SpawnedMirror> {
  const file = path.join(dataDir, '..', `${path.basename(dataDir)}.yaml`);
  await writeFile(file, stringify({ ...raw, storage: { ...raw.storage, path: dataDir } }));
  return spawnServe([...CLI_ARGS, 'serve', '--config', file], { timeoutMs });
}

/**
 * Runs node with `args` (an `ocimirror serve` command line) and waits for the listening line.
 * `env` replaces the environment except for PATH; `cwd` defaults to the project root.
 */
export async function spawnServe(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<SpawnedMirror> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const proc = spawn(process.execPath, args, {
    cwd: opts.cwd ?? PROJECT_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: opts.env ? { PATH: process.env.PATH, ...opts.env } : { ...process.env, OCIMIRROR_LOG_LEVEL: 'info' },
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL'); // never leave a half-started mirror behind
      reject(new Error(`mirror did not start within ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    const onData = () => {
      const m = /"url":"(http:\/\/[^"]+)","upstreams"/.exec(out);
      if (m) {
        clearTimeout(timer);
        proc.stdout!.off('data', onData);
        resolve(m[1] as string);
      }
    };
    proc.stdout!.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`mirror exited (${code}) before listening:\n${out}`));
    });
  });
  return { url, proc, output: () => out, exited, kill: (signal = 'SIGTERM') => proc.kill(signal) };
}

export interface CliRun {
  code: number | string;
  stdout: string;
  stderr: string;
}

/**
 * Runs `ocimirror ARGS` from source with pipes (no TTY). `env` replaces the environment except PATH,
 * so the caller's OCIMIRROR_* variables never leak in.
 */
export function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [...CLI_ARGS, ...args], {
      cwd: PROJECT_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '', CI: 'true', TERM: 'dumb', ...env },
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`ocimirror ${args.join(' ')} did not exit within ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeoutMs);
    proc.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal ?? -1, stdout, stderr });
    });
  });
}
