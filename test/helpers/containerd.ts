/**
 * containerd / ctr as a registry-mirror client for e2e tests.
 *
 * startContainerd() runs a private containerd (own root, state, temp, opt dir and gRPC socket under one temp
 * dir; CRI and the probing snapshotters disabled) so it never touches the system's containerd, and returns a
 * handle whose pull() runs `ctr images pull --hosts-dir DIR REF` and reports the pulled image's target digest.
 * writeHostsToml() writes the `<dir>/<registryHost>/hosts.toml` that points containerd at a mirror.
 *
 * Facts this relies on (containerd 1.6.20, see /work/shared/peers.md and containerd docs/hosts.md):
 *  - ctr does not normalise references: pass fully qualified refs (docker.io/library/alpine:latest).
 *  - with --hosts-dir, containerd sends `?ns=<registryHost>` on every request to a host that is not the
 *    registry itself; plain http hosts need no --plain-http.
 *  - a host URL with a path gets `/v2` appended unless `override_path = true`, in which case the path IS the
 *    API root (so `http://h:p/v2` + override_path behaves like `http://h:p`).
 *  - if every [host] fails (including a 404), containerd falls back to `server`; default here is a closed port
 *    so a fallback fails loudly instead of going to the internet.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';

// ---------------------------------------------------------------------------------------------------------------
// process helper (kept local so this file has no dependencies on other helpers)

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout as raw bytes. */
  stdoutBuf: Buffer;
  durationMs: number;
  timedOut: boolean;
}

export class CommandError extends Error {
  constructor(
    message: string,
    readonly result: RunResult,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

const PROXY_VARS = ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy'];

/** Environment for child tools: no proxies (loopback only), no CONTAINERD_* defaults leaking in. */
function childEnv(extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of PROXY_VARS) delete env[k];
  for (const k of Object.keys(env)) if (k.startsWith('CONTAINERD_')) delete env[k];
  return { ...env, ...extra };
}

/** Run a command to completion, bounded by timeoutMs (SIGTERM, then SIGKILL 2 s later). Never rejects on exit code. */
export function runCommand(
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const started = Date.now();
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv(opts.env), cwd: opts.cwd });
    } catch (err) {
      reject(err);
      return;
    }
    const out: Buffer[] = [];
    const errb: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => errb.push(b));
    let timedOut = false;
    let killTimer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), 2_000);
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      const stdoutBuf = Buffer.concat(out);
      resolve({
        code,
        signal,
        stdout: stdoutBuf.toString('utf8'),
        stdoutBuf,
        stderr: Buffer.concat(errb).toString('utf8'),
        durationMs: Date.now() - started,
        timedOut,
      });
    });
  });
}

function describeFailure(cmd: string, args: readonly string[], r: RunResult): string {
  const why = r.timedOut ? `timed out after ${r.durationMs} ms` : `exited with ${r.code ?? r.signal}`;
  const tail = (s: string) => s.trim().split('\n').slice(-25).join('\n');
  return `${cmd} ${args.join(' ')} ${why}\n--- stderr ---\n${tail(r.stderr)}\n--- stdout ---\n${tail(r.stdout)}`;
}

/** Resolves when a binary is on PATH. */
export function hasBinary(name: string): boolean {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  return dirs.some((d) => existsSync(path.join(d, name)));
}

/** True when `containerd` and `ctr` are installed (and we are root, which containerd needs). */
export function containerdAvailable(): { ok: boolean; reason?: string } {
  if (!hasBinary('containerd')) return { ok: false, reason: 'containerd not on PATH (apt-get install -y containerd)' };
  if (!hasBinary('ctr')) return { ok: false, reason: 'ctr not on PATH (apt-get install -y containerd)' };
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return { ok: false, reason: 'containerd needs root' };
  return { ok: true };
}

// ---------------------------------------------------------------------------------------------------------------
// hosts.toml

/** Port 1 on loopback: nothing listens there, so a connection is refused at once (a fallback fails loudly). */
export const CLOSED_SERVER = 'http://127.0.0.1:1';

export interface HostsTomlOptions {
  /** Root `server =` (fallback after every host failed). Default CLOSED_SERVER; `null` omits the line (containerd then falls back to the registry host itself). */
  server?: string | null;
  /** Default ["pull", "resolve"]. */
  capabilities?: string[];
  /** `override_path = true` on the mirror host(s): the URL path is the API root (no `/v2` appended). */
  overridePath?: boolean;
  skipVerify?: boolean;
  /** `ca =`: a PEM file of the CA that signed an https mirror host's certificate. */
  ca?: string;
  /** Extra headers containerd sends to the mirror host(s). */
  headers?: Record<string, string | string[]>;
  /** `dial_timeout` (e.g. "1s"); only honoured by newer containerd, ignored by 1.6. */
  dialTimeout?: string;
}

const q = (s: string): string => JSON.stringify(s); // a JSON string is a valid TOML basic string for our inputs

/**
 * Write `<dir>/<registryHost>/hosts.toml` (creating directories) so that containerd pulls `registryHost` images via
 * `mirrorUrl` (one or more `http://127.0.0.1:PORT[/path]`, tried in order). Returns the file path.
 * registryHost is the image's registry namespace as written in the ref: 'docker.io', 'registry.example.test',
 * 'myregistry:5000' or '_default' (for every registry without its own directory).
 */
export async function writeHostsToml(
  dir: string,
  registryHost: string,
  mirrorUrl: string | string[],
  opts: HostsTomlOptions = {},
): Promise<string> {
  const mirrors = Array.isArray(mirrorUrl) ? mirrorUrl : [mirrorUrl];
  if (mirrors.length === 0) throw new Error('writeHostsToml: at least one mirror URL is needed');
  for (const m of mirrors) {
    if (!/^https?:\/\/[^/]+/.test(m)) throw new Error(`writeHostsToml: mirror URL must be http(s)://host[:port][/path], got ${m}`);
  }
  if (!registryHost || registryHost.includes('/')) throw new Error(`writeHostsToml: bad registry host ${registryHost}`);
  const caps = opts.capabilities ?? ['pull', 'resolve'];
  const server = opts.server === undefined ? CLOSED_SERVER : opts.server;
  const lines: string[] = [`# written by test/helpers/containerd.ts for ${registryHost}`];
  if (server !== null) lines.push(`server = ${q(server)}`);
  for (const m of mirrors) {
    lines.push('', `[host.${q(m)}]`, `  capabilities = [${caps.map(q).join(', ')}]`);
    if (opts.overridePath) lines.push('  override_path = true');
    if (opts.skipVerify !== undefined) lines.push(`  skip_verify = ${opts.skipVerify}`);
    if (opts.ca) lines.push(`  ca = ${q(opts.ca)}`);
    if (opts.dialTimeout) lines.push(`  dial_timeout = ${q(opts.dialTimeout)}`);
    if (opts.headers && Object.keys(opts.headers).length > 0) {
      lines.push(`  [host.${q(m)}.header]`);
      for (const [k, v] of Object.entries(opts.headers)) {
        lines.push(`    ${q(k)} = ${Array.isArray(v) ? `[${v.map(q).join(', ')}]` : q(v)}`);
      }
    }
  }
  const hostDir = path.join(dir, registryHost);
  await mkdir(hostDir, { recursive: true });
  const file = path.join(hostDir, 'hosts.toml');
  await writeFile(file, lines.join('\n') + '\n');
  return file;
}

// ---------------------------------------------------------------------------------------------------------------
// containerd

export interface StartContainerdOptions {
  /** ctr namespace used by pull/removeImage/...; default 'ocimirror-test'. */
  namespace?: string;
  /** 'auto' (default): overlayfs when its plugin loaded OK, else native. */
  snapshotter?: 'auto' | 'overlayfs' | 'native';
  /** Readiness wait; default 20 000 ms. */
  startTimeoutMs?: number;
  /** containerd log level; default 'info'. */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Base dir for the temp dir; default os.tmpdir() (falls back to /tmp when that would make the socket path too long). */
  baseDir?: string;
}

export interface PullOptions {
  hostsDir: string;
  platform?: string;
  allPlatforms?: boolean;
  /** Default 120 000 ms. */
  timeoutMs?: number;
  /** `--user user[:password]`. */
  user?: string;
  /**
   * `--http-dump`: ctr logs every request and response to stderr as logrus lines, headers AND bodies (blob bytes
   * too), and parallel layer fetches interleave line by line: for eyeballing small pulls only. For reliable request
   * records use the server's access log.
   */
  httpDump?: boolean;
  extraArgs?: string[];
}

export interface PullResult {
  /** Target digest of the image record (the index/list digest for a multi-platform image). */
  digest: string;
  stdout: string;
  stderr: string;
  durationMs: number;
}

export interface ImageRow {
  ref: string;
  type: string;
  digest: string;
}

export interface Containerd {
  readonly dir: string;
  /** gRPC socket path (`ctr -a`). */
  readonly address: string;
  readonly namespace: string;
  readonly pid: number;
  /** Snapshotter used for pulls ('overlayfs' or 'native'). */
  readonly snapshotter: string;
  /** Time from spawn until `ctr version` answered. */
  readonly startMs: number;
  /** Run `ctr -a SOCK -n NS ...args`; throws CommandError on non-zero exit. */
  ctr(args: string[], opts?: { timeoutMs?: number; namespace?: string }): Promise<RunResult>;
  pull(ref: string, opts: PullOptions): Promise<PullResult>;
  listImages(): Promise<ImageRow[]>;
  /** Target digest of an image record, or undefined when there is none. */
  imageDigest(ref: string): Promise<string | undefined>;
  /** `ctr images rm --sync`: removes the image record and (synchronous GC) its now-unreferenced blobs and snapshots. */
  removeImage(ref: string): Promise<void>;
  /** Digests of every blob in the content store (all namespaces share blobs, but ctr lists the namespace's). */
  contentDigests(): Promise<string[]>;
  /** Last `lines` lines of containerd's own log. */
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

const DIGEST_RE = /sha256:[a-f0-9]{64}/;
const live = new Map<ChildProcess, string>(); // running containerd → its temp dir
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort if a test forgot stop() or the worker is exiting early: never leave a containerd running, and
  // remove its temp dir when nothing is mounted under it (synchronous: 'exit' handlers cannot await).
  process.on('exit', () => {
    for (const [c, dir] of live) {
      try {
        if (c.pid !== undefined && c.exitCode === null) process.kill(c.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      try {
        if (mountsUnder(dir).length === 0) rmSync(dir, { recursive: true, force: true });
      } catch {
        /* best effort */
      }
    }
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, ms);
    const onExit = () => {
      clearTimeout(t);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

/** Mount points at or under `dir` (deepest first), from /proc/self/mountinfo. */
export function mountsUnder(dir: string): string[] {
  let text = '';
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const prefix = dir.endsWith('/') ? dir : dir + '/';
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const found: string[] = [];
  for (const line of text.split('\n')) {
    const mp = line.split(' ')[4];
    if (!mp) continue;
    const p = unescape(mp);
    if (p === dir || p.startsWith(prefix)) found.push(p);
  }
  return found.sort((a, b) => b.length - a.length);
}

async function unmountAll(dir: string): Promise<string[]> {
  const problems: string[] = [];
  for (let round = 0; round < 3; round++) {
    const mps = mountsUnder(dir);
    if (mps.length === 0) return problems;
    for (const mp of mps) {
      const r = await runCommand('umount', [mp], { timeoutMs: 10_000 }).catch((e: Error) => ({ code: -1, stderr: e.message }) as RunResult);
      if (r.code !== 0) {
        const lazy = await runCommand('umount', ['-l', mp], { timeoutMs: 10_000 }).catch((e: Error) => ({ code: -1, stderr: e.message }) as RunResult);
        if (lazy.code !== 0) problems.push(`${mp}: ${lazy.stderr.trim()}`);
      }
    }
  }
  const left = mountsUnder(dir);
  return left.length ? [...problems, `still mounted: ${left.join(', ')}`] : problems;
}

async function makeTempDir(base?: string): Promise<string> {
  const MAX_SOCK = 100; // sun_path is 108 bytes incl. NUL; "/c.sock.ttrpc" is the longest socket we create
  let dir = await mkdtemp(path.join(base ?? os.tmpdir(), 'ocim-ctrd-'));
  if ((dir + '/c.sock.ttrpc').length > MAX_SOCK) {
    await rm(dir, { recursive: true, force: true });
    dir = await mkdtemp('/tmp/ocim-ctrd-');
  }
  return dir;
}

function configToml(dir: string, logLevel: string): string {
  const p = (s: string) => q(path.join(dir, s));
  return `# private containerd for ocimirror tests (written by test/helpers/containerd.ts)
version = 2
root = ${p('root')}
state = ${p('state')}
temp = ${p('tmp')}
plugin_dir = ""
imports = []
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = ${p('c.sock')}

[ttrpc]
  address = ${p('c.sock.ttrpc')}

[debug]
  address = ""
  level = ${q(logLevel)}

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = ${p('opt')}
`;
}

export async function startContainerd(opts: StartContainerdOptions = {}): Promise<Containerd> {
  const avail = containerdAvailable();
  if (!avail.ok) throw new Error(`startContainerd: ${avail.reason}`);
  installExitHook();
  const namespace = opts.namespace ?? 'ocimirror-test';
  const startTimeoutMs = opts.startTimeoutMs ?? 20_000;
  const dir = await makeTempDir(opts.baseDir);
  const address = path.join(dir, 'c.sock');
  const logFile = path.join(dir, 'containerd.log');
  const configFile = path.join(dir, 'config.toml');

  let child: ChildProcess | undefined;
  let stopped = false;

  const logTail = (lines = 40): string => {
    try {
      return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no containerd log)';
    }
  };

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const problems: string[] = [];
    if (child) {
      const c = child;
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGTERM');
        if (!(await waitExit(c, 10_000))) {
          problems.push(`containerd pid ${c.pid} ignored SIGTERM for 10 s; SIGKILL`);
          c.kill('SIGKILL');
          if (!(await waitExit(c, 5_000))) problems.push(`containerd pid ${c.pid} survived SIGKILL`);
        }
      }
      live.delete(c);
    }
    problems.push(...(await unmountAll(dir)));
    if (mountsUnder(dir).length === 0) {
      await rm(dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 100 }).catch((e: Error) => problems.push(`rm ${dir}: ${e.message}`));
    } else {
      problems.push(`left ${dir} in place because something is still mounted under it`);
    }
    if (problems.length) throw new Error(`containerd stop: ${problems.join('; ')}`);
  };

  try {
    await Promise.all(['root', 'state', 'tmp', 'opt'].map((d) => mkdir(path.join(dir, d), { recursive: true })));
    await writeFile(configFile, configToml(dir, opts.logLevel ?? 'info'));
    const fd = openSync(logFile, 'a');
    const t0 = Date.now();
    try {
      child = spawn('containerd', ['--config', configFile], { stdio: ['ignore', fd, fd], env: childEnv() });
    } finally {
      closeSync(fd);
    }
    live.set(child, dir);
    const spawned = child;
    let spawnError: Error | undefined;
    spawned.on('error', (e) => (spawnError = e));

    // wait until `ctr version` answers (the server half of its output proves the gRPC API is up)
    const deadline = t0 + startTimeoutMs;
    let lastErr = '';
    for (;;) {
      if (spawnError) throw new Error(`containerd failed to spawn: ${spawnError.message}`);
      if (spawned.exitCode !== null || spawned.signalCode !== null) {
        throw new Error(`containerd exited (${spawned.exitCode ?? spawned.signalCode}) before it was ready\n${logTail()}`);
      }
      if (existsSync(address)) {
        const left = Math.max(500, Math.min(3_000, deadline - Date.now()));
        const r = await runCommand('ctr', ['-a', address, 'version'], { timeoutMs: left });
        if (r.code === 0 && /Server:/.test(r.stdout)) break;
        lastErr = r.stderr.trim() || r.stdout.trim();
      }
      if (Date.now() > deadline) {
        throw new Error(`containerd not ready after ${startTimeoutMs} ms (last ctr error: ${lastErr || 'socket not created'})\n${logTail()}`);
      }
      await sleep(50);
    }
    const startMs = Date.now() - t0;

    const ctrRaw = (args: string[], o: { timeoutMs?: number; namespace?: string } = {}) =>
      runCommand('ctr', ['-a', address, '-n', o.namespace ?? namespace, ...args], { timeoutMs: o.timeoutMs ?? 30_000 });
    const ctr = async (args: string[], o: { timeoutMs?: number; namespace?: string } = {}): Promise<RunResult> => {
      const r = await ctrRaw(args, o);
      if (r.code !== 0 || r.timedOut) throw new CommandError(describeFailure('ctr', args, r), r);
      return r;
    };

    // pick the snapshotter
    let snapshotter: string = opts.snapshotter ?? 'auto';
    if (snapshotter === 'auto') {
      const plugins = await ctr(['plugins', 'ls']);
      const overlay = plugins.stdout.split('\n').find((l) => /^io\.containerd\.snapshotter\.v1\s+overlayfs\s/.test(l));
      snapshotter = overlay && /\sok\s*$/.test(overlay) ? 'overlayfs' : 'native';
      if (snapshotter === 'native') {
        console.warn(`[containerd helper] overlayfs snapshotter unavailable (${overlay?.trim() ?? 'plugin not listed'}); using native`);
      }
    }

    const listImages = async (): Promise<ImageRow[]> => {
      const r = await ctr(['images', 'ls']);
      const rows: ImageRow[] = [];
      for (const line of r.stdout.split('\n').slice(1)) {
        const cols = line.trim().split(/\s+/);
        const digest = line.match(DIGEST_RE)?.[0];
        if (cols.length >= 3 && cols[0] && digest) rows.push({ ref: cols[0], type: cols[1] ?? '', digest });
      }
      return rows;
    };
    const imageDigest = async (ref: string) => (await listImages()).find((r) => r.ref === ref)?.digest;

    const handle: Containerd = {
      dir,
      address,
      namespace,
      pid: spawned.pid ?? -1,
      snapshotter,
      startMs,
      ctr,
      listImages,
      imageDigest,
      logTail,
      stop,
      async pull(ref, p) {
        if (p.platform && p.allPlatforms) throw new Error('pull: platform and allPlatforms are exclusive');
        const args = ['images', 'pull', '--hosts-dir', p.hostsDir, '--snapshotter', snapshotter];
        if (p.platform) args.push('--platform', p.platform);
        if (p.allPlatforms) args.push('--all-platforms');
        if (p.user) args.push('--user', p.user);
        if (p.httpDump) args.push('--http-dump');
        args.push(...(p.extraArgs ?? []), ref);
        const r = await ctrRaw(args, { timeoutMs: p.timeoutMs ?? 120_000 });
        if (r.code !== 0 || r.timedOut) {
          throw new CommandError(`${describeFailure('ctr', args, r)}\n--- containerd log ---\n${logTail(15)}`, r);
        }
        let digest = await imageDigest(ref);
        if (!digest) {
          // fallback: ctr prints "unpacking <platform> sha256:<target>..." for the image it just created
          digest = r.stdout.match(/unpacking \S+ (sha256:[a-f0-9]{64})/)?.[1];
        }
        if (!digest) throw new CommandError(`pull of ${ref} succeeded but no image record was found\n${r.stdout}`, r);
        return { digest, stdout: r.stdout, stderr: r.stderr, durationMs: r.durationMs };
      },
      async removeImage(ref) {
        // --sync runs the garbage collector before returning: the image's blobs and snapshots are gone afterwards
        // (unless another image in this namespace still references them), so a re-pull fetches them again.
        await ctr(['images', 'rm', '--sync', ref]);
      },
      async contentDigests() {
        const r = await ctr(['content', 'ls', '-q']);
        return r.stdout
          .split('\n')
          .map((l) => l.trim())
          .filter((l) => DIGEST_RE.test(l));
      },
    };
    return handle;
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}

/** Read a file that containerd wrote (e.g. for debugging); exported for tests that want the raw log. */
/**
 * A private containerd for the enclosing describe block: started in beforeAll, stopped in afterAll, read
 * through the returned getter from tests. Call it before the block's own hooks, so containerd outlives them.
 * An unusable containerd fails the block here; blocks that may skip outside CI do so before calling it.
 */
export function useContainerd(opts: StartContainerdOptions = {}): () => Containerd {
  let c: Containerd | undefined;
  beforeAll(async () => {
    c = await startContainerd(opts);
  });
  afterAll(async () => {
    await c?.stop();
  });
  return () => {
    if (!c) throw new Error('containerd is not running: read it from a test, after beforeAll');
    return c;
  };
}

export async function readContainerdLog(c: Containerd): Promise<string> {
  return readFile(path.join(c.dir, 'containerd.log'), 'utf8').catch(() => '');
}
