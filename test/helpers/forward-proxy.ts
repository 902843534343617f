/**
 * @module test/helpers/forward-proxy
 * A real forward proxy for egress tests: Debian's tinyproxy on 127.0.0.1, on a free port, with its own
 * temp dir (config and log). Its log has one `Request` line per request it relays — `GET http://…` in
 * absolute form, `CONNECT host:port` for a tunnel — which is how tests prove what went through it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './ports.ts';

export interface ForwardProxyOptions {
  /** Credentials the proxy demands (tinyproxy `BasicAuth`); without them it answers 407. */
  basicAuth?: { username: string; password: string };
}

export interface ProxiedRequest {
  method: string;
  /** `http://host:port/path?query` for a relayed request, `host:port` for CONNECT. */
  target: string;
}

export interface ForwardProxy {
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** Every request the proxy received so far, in order, from its log. */
  requests(): Promise<ProxiedRequest[]>;
  /** The whole log, for failure messages. */
  log(): Promise<string>;
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 10_000;

export async function startForwardProxy(opts: ForwardProxyOptions = {}): Promise<ForwardProxy> {
  const dir = await mkdtemp(join(tmpdir(), 'ocimirror-tinyproxy-'));
  const logFile = join(dir, 'tinyproxy.log');
  const port = await freePort();
  const conf = [
    `Port ${port}`,
    'Listen 127.0.0.1',
    `LogFile "${logFile}"`,
    // Connect level logs each request line; Info adds connection details useful when a test fails.
    'LogLevel Info',
    'Timeout 60',
    'MaxClients 100',
    ...(opts.basicAuth ? [`BasicAuth ${opts.basicAuth.username} ${opts.basicAuth.password}`] : []),
  ].join('\n');
  const confFile = join(dir, 'tinyproxy.conf');
  await writeFile(confFile, `${conf}\n`);
  const child: ChildProcess = spawn('tinyproxy', ['-d', '-c', confFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  const log = () => readFile(logFile, 'utf8').catch(() => '');
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await Promise.race([exited, sleep(5_000)]);
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = performance.now() + READY_TIMEOUT_MS;
  while (!(await log()).includes('Accepting connections')) {
    if (child.exitCode !== null || performance.now() > deadline) {
      const text = await log();
      await stop();
      throw new Error(`tinyproxy did not start on port ${port}:\n${stderr}\n${text}`);
    }
    await sleep(20);
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    log,
    async requests() {
      const out: ProxiedRequest[] = [];
      for (const m of (await log()).matchAll(/Request \(file descriptor \d+\): (\S+) (\S+) HTTP\/1\.[01]/g)) {
        out.push({ method: m[1]!, target: m[2]! });
      }
      return out;
    },
    stop,
  };
}
