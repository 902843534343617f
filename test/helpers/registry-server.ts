/**
 * @module test/helpers/registry-server
 * Runs Debian's docker-registry (CNCF distribution 2.8.2) on 127.0.0.1 with its own temp dir holding
 * config.yml, the storage root and registry.log (app log and one access-log line per request).
 * Auth modes: 'none', 'htpasswd' (Basic, bcrypt file made with `htpasswd -Bbc`) and 'token' (Bearer,
 * tokens from a {@link startTokenIssuer} started alongside). With `proxy` it is distribution's own
 * pull-through cache, the reference mirror the benchmark compares against.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { freePort } from './ports.ts';
import { startTokenIssuer, type TokenIssuer } from './token-issuer.ts';

export type RegistryAuthMode = 'none' | 'htpasswd' | 'token';

export interface StartRegistryOptions {
  auth?: RegistryAuthMode;
  /** Credentials for 'htpasswd' and 'token' modes. */
  username?: string;
  password?: string;
  /** Token mode: anonymous callers get pull access instead of none. */
  anonymousPull?: boolean;
  /** Pull-through proxy mode. distribution 2.8 answers every push with 405 in this mode. */
  proxy?: { remoteurl: string; username?: string; password?: string };
}

export interface RegistryServer {
  url: string;
  /** `127.0.0.1:<port>`, as image references spell it. */
  host: string;
  port: number;
  dir: string;
  logFile: string;
  auth: RegistryAuthMode;
  /** Set in 'htpasswd' and 'token' modes. */
  credentials?: { username: string; password: string };
  /** Set in 'token' mode. */
  tokenIssuer?: TokenIssuer;
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 20_000;
const PORT_ATTEMPTS = 3;

async function logTail(file: string, lines = 20): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Settles once when the process is gone; 'error' without 'exit' is how a failed spawn (ENOENT) ends. */
function exitOf(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
}

async function stopProcess(child: ChildProcess, exit: Promise<void>): Promise<void> {
  child.kill('SIGTERM');
  const gone = await Promise.race([exit.then(() => true), sleep(5_000, false)]);
  if (!gone) {
    child.kill('SIGKILL');
    await Promise.race([exit, sleep(2_000)]);
  }
}

/**
 * Resolves once /v2/ answers with any status. Rejects if the process exits first (the log tells why) or
 * after READY_TIMEOUT_MS.
 */
async function waitReady(url: string, exit: Promise<void>): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let dead = false;
  void exit.then(() => (dead = true));
  while (Date.now() < deadline) {
    if (dead) throw new Error('docker-registry exited during startup');
    const up = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1_000) }).then(
      async (r) => (await r.arrayBuffer(), true),
      () => false,
    );
    if (up) return;
    await sleep(50);
  }
  throw new Error(`docker-registry did not answer ${url}/v2/ within ${READY_TIMEOUT_MS} ms`);
}

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<RegistryServer> {
  const { auth = 'none', username = 'ocimirror', password = 'ocimirror-pass', anonymousPull, proxy } = opts;
  const dir = await mkdtemp(join(tmpdir(), 'ocimirror-registry-'));
  const logFile = join(dir, 'registry.log');
  const configFile = join(dir, 'config.yml');
  let tokenIssuer: TokenIssuer | undefined;
  try {
    await mkdir(join(dir, 'data'));
    let authConfig: object | undefined;
    if (auth === 'htpasswd') {
      const file = join(dir, 'htpasswd');
      // docker-registry checks the bcrypt hash on every request: the minimum cost (4) keeps pushes fast.
      await promisify(execFile)('htpasswd', ['-Bbc', '-C', '4', file, username, password], { timeout: 10_000 });
      authConfig = { htpasswd: { realm: 'ocimirror-test', path: file } };
    } else if (auth === 'token') {
      tokenIssuer = await startTokenIssuer({ username, password, anonymousPull });
      const { realm, service, issuer, certFile: rootcertbundle } = tokenIssuer;
      authConfig = { token: { realm, service, issuer, rootcertbundle } };
    }
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      await writeFile(configFile, stringify({
        version: 0.1,
        log: { level: 'info', formatter: 'text' },
        storage: {
          filesystem: { rootdirectory: join(dir, 'data') },
          delete: { enabled: true },
          // Upload purging starts a background walk of the storage root; temp registries never need it.
          maintenance: { uploadpurging: { enabled: false } },
        },
        http: { addr: `127.0.0.1:${port}` },
        ...(authConfig && { auth: authConfig }),
        ...(proxy && { proxy }),
      }));
      const fd = openSync(logFile, 'w'); // per attempt, so the tail below is this attempt's
      const child = spawn('docker-registry', ['serve', configFile], { stdio: ['ignore', fd, fd] });
      closeSync(fd);
      const exit = exitOf(child);
      const url = `http://127.0.0.1:${port}`;
      try {
        await waitReady(url, exit);
      } catch (err) {
        await stopProcess(child, exit);
        const tail = await logTail(logFile);
        // freePort() closes its probe before the registry binds, so another process can take the port.
        if (attempt < PORT_ATTEMPTS && tail.includes('address already in use')) continue;
        throw new Error(`${(err as Error).message}\n--- ${logFile} ---\n${tail}`, { cause: err });
      }
      let stopping: Promise<void> | undefined;
      return {
        url,
        host: `127.0.0.1:${port}`,
        port,
        dir,
        logFile,
        auth,
        ...(auth !== 'none' && { credentials: { username, password } }),
        ...(tokenIssuer && { tokenIssuer }),
        stop: () =>
          (stopping ??= (async () => {
            await stopProcess(child, exit);
            await tokenIssuer?.stop();
            await rm(dir, { recursive: true, force: true });
          })()),
      };
    }
  } catch (err) {
    await tokenIssuer?.stop();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
