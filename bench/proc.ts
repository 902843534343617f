/**
 * @module bench/proc
 * Child processes for the bench, each bounded in time and each stopped by its own pid:
 * `run` for commands that finish (own process group, so a timeout also ends a pipeline's members),
 * `startDaemon` for servers, and `Cleanup`, the LIFO list of stops that run.ts empties in `finally` and on signals.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';

export const log = (msg: string): void => void process.stderr.write(`[bench ${(performance.now() / 1000).toFixed(1)}s] ${msg}\n`);

/** Environment for children: loopback only, so no proxy variables. */
export function childEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  for (const k of Object.keys(env)) if (/^(https?|all|no)_proxy$/i.test(k)) delete env[k];
  return env;
}

export class Cleanup {
  readonly #stops: { what: string; fn: () => unknown }[] = [];
  #closed = false;
  #running: Promise<void> | undefined;

  /** Registers a stop; once a run has begun (a signal), the stop runs at once instead. */
  defer(what: string, fn: () => unknown): void {
    this.#stops.push({ what, fn });
    if (this.#closed) void this.run();
  }

  /** Runs every stop once, newest first; a failing stop is reported and the rest still run. Concurrent calls share one pass. */
  run(): Promise<void> {
    this.#closed = true;
    this.#running ??= this.#drain().finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #drain(): Promise<void> {
    for (let s = this.#stops.pop(); s; s = this.#stops.pop()) {
      try {
        await s.fn();
      } catch (err) {
        log(`cleanup: ${s.what} failed: ${(err as Error).message}`);
      }
    }
  }
}

/** Children of `run` still alive, so a signal can end them. */
const running = new Set<ChildProcess>();
let refusing = false;

/** Kills every running command; later `run` calls fail at once. */
export function killRunning(): void {
  refusing = true;
  for (const child of running) killGroup(child, 'SIGKILL');
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal);
  } catch {
    /* already gone */
  }
}

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface RunOptions {
  timeoutMs: number;
  /** Called once the process is spawned, with its stdin still open (a start barrier). */
  onSpawn?: (child: ChildProcess) => void;
}

/** Runs a command to its end or `timeoutMs` (then its whole process group is killed and this rejects). */
export function run(cmd: string, args: string[], { timeoutMs, onSpawn }: RunOptions): Promise<Ran> {
  const started = performance.now();
  if (refusing) return Promise.reject(new Error(`${cmd}: the bench is stopping`));
  if (!(timeoutMs > 0)) return Promise.reject(new Error(`${cmd}: no time bound given`));
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: childEnv(), detached: true, stdio: [onSpawn ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    running.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child, 'SIGKILL');
    }, timeoutMs);
    child.once('spawn', () => onSpawn?.(child));
    child.once('error', (e) => {
      clearTimeout(timer);
      running.delete(child);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      running.delete(child);
      const ms = performance.now() - started;
      const stdout = Buffer.concat(out).toString();
      const stderr = Buffer.concat(err).toString();
      if (timedOut) reject(new Error(`${cmd} ${args.join(' ')}: timed out after ${timeoutMs} ms\n${stderr.slice(-2000)}`));
      else resolve({ code, stdout, stderr, ms });
    });
  });
}

/** `run`, failing on a non-zero exit with the command's stderr. */
export async function mustRun(cmd: string, args: string[], opts: RunOptions): Promise<Ran> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}\n${r.stderr.slice(-2000)}`);
  return r;
}

export interface Daemon {
  readonly pid: number;
  readonly logFile: string;
  /** True once the process has exited. */
  readonly exited: boolean;
  logText(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it is gone. */
  stop(graceMs?: number): Promise<void>;
}

/** Starts a long-running server with stdout and stderr appended to `logFile`. */
export function startDaemon(cmd: string, args: string[], logFile: string, env: NodeJS.ProcessEnv = {}): Daemon {
  const fd = openSync(logFile, 'a');
  const child = spawn(cmd, args, { env: childEnv(env), stdio: ['ignore', fd, fd] });
  closeSync(fd);
  let exited = false;
  const gone = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  }).then(() => void (exited = true));
  if (child.pid === undefined) throw new Error(`could not start ${cmd}`);
  return {
    pid: child.pid,
    logFile,
    get exited() {
      return exited;
    },
    logText: () => readFileSync(logFile, 'utf8'),
    async stop(graceMs = 10_000) {
      if (exited) return;
      child.kill('SIGTERM');
      if (await Promise.race([gone.then(() => true), sleep(graceMs, false)])) return;
      child.kill('SIGKILL');
      await Promise.race([gone, sleep(2_000)]);
    },
  };
}

/** Polls `probe` every `everyMs` until it returns a value, the daemon exits, or `timeoutMs` passes. */
export async function waitFor<T>(what: string, daemon: Daemon, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 20_000, everyMs = 5): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const v = await probe();
    if (v !== undefined) return v;
    if (daemon.exited) throw new Error(`${what} exited during start-up:\n${daemon.logText().slice(-3000)}`);
    await sleep(everyMs);
  }
  throw new Error(`${what} not ready within ${timeoutMs} ms:\n${daemon.logText().slice(-3000)}`);
}

/** Resolves true once `url` answers any HTTP status; an https `url` is verified against the PEM file `caFile`. */
export async function answers(url: string, caFile?: string): Promise<true | undefined> {
  if (caFile) {
    return new Promise((resolve) => {
      const req = https.get(url, { ca: readFileSync(caFile), timeout: 1_000 }, (res) => res.resume().once('end', () => resolve(true)).once('error', () => resolve(undefined)));
      req.once('timeout', () => req.destroy());
      req.once('error', () => resolve(undefined));
    });
  }
  return fetch(url, { signal: AbortSignal.timeout(1_000) }).then(
    async (r) => (await r.arrayBuffer(), true as const),
    () => undefined,
  );
}
