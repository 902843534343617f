/**
 * @module test/helpers/s3-server
 * A private S3-compatible object store for integration tests: OpenStack Swift 2.30 (Debian `python3-swift`)
 * all-in-one with s3api + tempauth and `memcached`, on free loopback ports, in its own temp root:
 *
 *   <root>/
 *     etc/      swift.conf, {account,container,object,proxy}-server.conf, *.ring.gz, launch.py
 *     srv/d1/   the one storage device (1 replica)
 *     log/      one log per process
 *
 * The Debian server packages (swift-proxy, swift-object, ...) would pull in rsyslog, uwsgi and system
 * services, so the servers run from the library through a small launcher instead. Each process gets its
 * own process group, so stop() also reaches the proxy's forked worker.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { hasTool } from './tools.ts';
import { freePort } from './ports.ts';

export interface S3Server {
  /** http://127.0.0.1:<port>, the s3api endpoint (path-style buckets). */
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Temp root holding configs, rings, data and logs; removed by stop(). */
  root: string;
  stop(): Promise<void>;
}

/** The interpreter Debian's python3-swift is installed for; a `python3` earlier on PATH (pyenv) lacks it. */
const PYTHON = '/usr/bin/python3';
const SERVERS = ['account', 'container', 'object', 'proxy'] as const;
type Server = (typeof SERVERS)[number];
const READY_TIMEOUT_MS = 30_000;
const PORT_ATTEMPTS = 3;
const ACCOUNT = 'ocim';
const USER = 'mirror';
const SECRET = 'mirror-secret';
const REGION = 'us-east-1';

/** Debian packages the server needs that are not installed, for the suite's skip/fail message. */
export function missingS3Packages(): string[] {
  const missing: string[] = [];
  if (!hasTool('memcached')) missing.push('memcached');
  try {
    execFileSync(PYTHON, ['-c', 'import swift.proxy.server, swift.common.middleware.s3api.s3api'], { stdio: 'ignore', timeout: 20_000 });
  } catch {
    missing.push('python3-swift');
  }
  return missing;
}

interface Ports {
  proxy: number;
  account: number;
  container: number;
  object: number;
  memcached: number;
}

function storageServerConf(name: Server, port: number, root: string, user: string): string {
  return `[DEFAULT]
bind_ip = 127.0.0.1
bind_port = ${port}
workers = 0
user = ${user}
swift_dir = ${root}/etc
devices = ${root}/srv
mount_check = false
disable_fallocate = true
recon_cache_path = ${root}/run
log_level = WARNING
[pipeline:main]
pipeline = healthcheck ${name}-server
[filter:healthcheck]
use = egg:swift#healthcheck
[app:${name}-server]
use = egg:swift#${name}
`;
}

/** s3api needs tempauth after it (S3 signatures are checked against the user's key), slo for multipart, memcache for tokens. */
function proxyConf(ports: Ports, root: string, user: string): string {
  return `[DEFAULT]
bind_ip = 127.0.0.1
bind_port = ${ports.proxy}
workers = 1
user = ${user}
swift_dir = ${root}/etc
log_level = WARNING
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk s3api tempauth copy slo dlo proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true
[filter:s3api]
use = egg:swift#s3api
location = ${REGION}
s3_acl = false
min_segment_size = 5242880
[filter:tempauth]
use = egg:swift#tempauth
user_${ACCOUNT}_${USER} = ${SECRET} .admin
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:${ports.memcached}
${['slo', 'dlo', 'copy', 'bulk', 'listing_formats', 'proxy-logging', 'healthcheck', 'gatekeeper', 'catch_errors']
  .map((f) => `[filter:${f}]\nuse = egg:swift#${f.replace('-', '_')}\n`)
  .join('')}`;
}

function swiftConf(): string {
  return `[swift-hash]
swift_hash_path_prefix = ${Math.random().toString(16).slice(2)}
swift_hash_path_suffix = ocimirror-test
[storage-policy:0]
name = Policy-0
default = yes
`;
}

/** Swift reads /etc/swift/swift.conf unconditionally; the launcher points it at ours before a server loads. */
const LAUNCHER = `import sys
swift_dir, conf = sys.argv[1:3]
from swift.common import utils
utils.SWIFT_CONF_FILE = swift_dir + '/swift.conf'
utils.validate_hash_conf()
from swift.common import storage_policy, constraints
storage_policy.reload_storage_policies()
constraints.reload_constraints()
from swift.common.wsgi import run_wsgi
sys.exit(run_wsgi(conf, conf.rsplit('/', 1)[1][:-len('.conf')], verbose=True))
`;

/** What `swift-ring-builder <x>.builder create 8 1 1; add ...; rebalance` does, for all three rings in one interpreter start. */
const RING_BUILDER = `import sys
from swift.common.ring import RingBuilder
etc = sys.argv[1]
for name, port in zip(('account', 'container', 'object'), map(int, sys.argv[2:5])):
    b = RingBuilder(8, 1, 1)
    b.add_dev({'id': 0, 'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': port, 'device': 'd1', 'weight': 1.0,
               'replication_ip': '127.0.0.1', 'replication_port': port, 'meta': ''})
    b.rebalance()
    b.get_ring().save('%s/%s.ring.gz' % (etc, name))
`;

interface Proc {
  name: string;
  child: ChildProcess;
  exited: Promise<void>;
  logFile: string;
}

function launch(name: string, cmd: string, args: string[], logFile: string): Proc {
  const fd = openSync(logFile, 'a');
  // detached: a process group of its own, so one signal reaches every worker the server forks.
  const child = spawn(cmd, args, { stdio: ['ignore', fd, fd], detached: true });
  closeSync(fd);
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  return { name, child, exited, logFile };
}

function signalGroup(p: Proc, signal: NodeJS.Signals): void {
  if (p.child.pid === undefined || p.child.exitCode !== null || p.child.signalCode !== null) return;
  try {
    process.kill(-p.child.pid, signal);
  } catch {
    p.child.kill(signal);
  }
}

async function stopAll(procs: Proc[]): Promise<void> {
  for (const p of procs) signalGroup(p, 'SIGTERM');
  const all = Promise.all(procs.map((p) => p.exited));
  if (!(await Promise.race([all.then(() => true), sleep(5_000, false)]))) {
    for (const p of procs) signalGroup(p, 'SIGKILL');
    await Promise.race([all, sleep(2_000)]);
  }
  // A forked proxy worker can outlive its parent's exit by a moment: make sure the groups are gone.
  for (const p of procs) {
    if (p.child.pid === undefined) continue;
    try {
      process.kill(-p.child.pid, 'SIGKILL');
    } catch {
      // group already empty
    }
  }
}

async function logTail(file: string, lines = 25): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

async function waitHealthy(p: Proc, port: number, deadline: number): Promise<void> {
  let dead = false;
  void p.exited.then(() => (dead = true));
  while (Date.now() < deadline) {
    if (dead) throw new Error(`swift ${p.name} server exited during start-up`);
    const ok = await fetch(`http://127.0.0.1:${port}/healthcheck`, { signal: AbortSignal.timeout(2_000) }).then(
      async (r) => r.status === 200 && (await r.text()) === 'OK',
      () => false,
    );
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`swift ${p.name} server not healthy on port ${port} within ${READY_TIMEOUT_MS} ms`);
}

/** Creates the bucket through Swift's own API (a container is a bucket to s3api). */
async function createBucket(proxyPort: number, bucket: string): Promise<void> {
  const base = `http://127.0.0.1:${proxyPort}`;
  const auth = await fetch(`${base}/auth/v1.0`, { headers: { 'X-Auth-User': `${ACCOUNT}:${USER}`, 'X-Auth-Key': SECRET }, signal: AbortSignal.timeout(10_000) });
  await auth.arrayBuffer();
  const token = auth.headers.get('x-auth-token');
  const storageUrl = auth.headers.get('x-storage-url');
  if (auth.status !== 200 || !token || !storageUrl) throw new Error(`tempauth login answered ${auth.status}`);
  const put = await fetch(`${storageUrl}/${bucket}`, { method: 'PUT', headers: { 'X-Auth-Token': token }, signal: AbortSignal.timeout(10_000) });
  await put.arrayBuffer();
  if (put.status !== 201 && put.status !== 202) throw new Error(`creating bucket ${bucket} answered ${put.status}`);
}

async function startOnce(root: string, bucket: string): Promise<{ procs: Proc[]; ports: Ports }> {
  const ports: Ports = { proxy: await freePort(), account: await freePort(), container: await freePort(), object: await freePort(), memcached: await freePort() };
  const etc = join(root, 'etc');
  const log = join(root, 'log');
  const user = userInfo().username;
  await writeFile(join(etc, 'swift.conf'), swiftConf());
  for (const s of ['account', 'container', 'object'] as const) await writeFile(join(etc, `${s}-server.conf`), storageServerConf(s, ports[s], root, user));
  await writeFile(join(etc, 'proxy-server.conf'), proxyConf(ports, root, user));
  await promisify(execFile)(PYTHON, ['-c', RING_BUILDER, etc, String(ports.account), String(ports.container), String(ports.object)], { timeout: 30_000 });

  const procs: Proc[] = [];
  try {
    const asRoot = process.getuid?.() === 0 ? ['-u', 'root'] : [];
    procs.push(launch('memcached', 'memcached', ['-l', '127.0.0.1', '-p', String(ports.memcached), '-U', '0', '-m', '64', ...asRoot], join(log, 'memcached.log')));
    for (const s of SERVERS) procs.push(launch(s, PYTHON, [join(etc, 'launch.py'), etc, join(etc, `${s}-server.conf`)], join(log, `${s}.log`)));
    const deadline = Date.now() + READY_TIMEOUT_MS;
    await Promise.all(procs.filter((p) => p.name !== 'memcached').map((p) => waitHealthy(p, ports[p.name as Server], deadline)));
    await createBucket(ports.proxy, bucket);
    return { procs, ports };
  } catch (err) {
    await stopAll(procs);
    const tails = await Promise.all(procs.map(async (p) => `--- ${p.name} (${p.logFile}) ---\n${await logTail(p.logFile)}`));
    throw Object.assign(new Error(`${(err as Error).message}\n${tails.join('\n')}`, { cause: err }), {
      portTaken: tails.some((t) => /address already in use/i.test(t)),
    });
  }
}

export async function startS3Server(opts: { bucket?: string } = {}): Promise<S3Server> {
  const bucket = opts.bucket ?? 'ocimirror';
  const root = await mkdtemp(join(tmpdir(), 'ocimirror-s3-'));
  try {
    for (const dir of ['etc', 'log', 'run', 'srv/d1']) await mkdir(join(root, dir), { recursive: true });
    await writeFile(join(root, 'etc', 'launch.py'), LAUNCHER);
    for (let attempt = 1; ; attempt++) {
      try {
        const { procs, ports } = await startOnce(root, bucket);
        let stopping: Promise<void> | undefined;
        return {
          endpoint: `http://127.0.0.1:${ports.proxy}`,
          bucket,
          region: REGION,
          accessKeyId: `${ACCOUNT}:${USER}`,
          secretAccessKey: SECRET,
          root,
          stop: () =>
            (stopping ??= (async () => {
              await stopAll(procs);
              await rm(root, { recursive: true, force: true });
            })()),
        };
      } catch (err) {
        // freePort() closes its probe before the server binds: another process may take a port in between.
        if (attempt < PORT_ATTEMPTS && (err as { portTaken?: boolean }).portTaken) continue;
        throw err;
      }
    }
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw err;
  }
}
