/**
 * @module test/helpers/haproxy
 * A real HAProxy in the foreground for tests that put the mirror behind a TCP load balancer.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { waitFor } from './wait.ts';

export interface Haproxy {
  /** `show stat` from the stats socket, one record per line of its CSV. */
  stats(): Promise<Array<Record<string, string>>>;
  stop(): Promise<void>;
}

/** Runs HAProxy in the foreground with `sections` after a global section that opens a stats socket in `dir`; resolves once `port` accepts. */
export async function startHaproxy(dir: string, sections: string[], port: number): Promise<Haproxy> {
  const socketPath = path.join(dir, 'haproxy.sock');
  const cfg = path.join(dir, 'haproxy.cfg');
  await writeFile(cfg, ['global', `  stats socket ${socketPath} mode 600 level admin`, 'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 60s', '  timeout server 60s', '  timeout check 5s', ...sections, ''].join('\n'));
  const child: ChildProcess = spawn('haproxy', ['-db', '-f', cfg], { stdio: 'ignore' });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  try {
    await waitFor(
      'haproxy to listen',
      () =>
        new Promise<boolean>((resolve) => {
          const s = net.connect({ host: '127.0.0.1', port }, () => {
            s.destroy();
            resolve(true);
          });
          s.on('error', () => resolve(false));
        }),
      10_000,
      50,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  const stats = () =>
    new Promise<Array<Record<string, string>>>((resolve, reject) => {
      const s = net.connect(socketPath, () => s.end('show stat\n'));
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString()));
      s.on('error', reject);
      s.on('close', () => {
        const [head, ...rows] = got.trim().split('\n');
        const keys = (head ?? '').replace(/^# /, '').split(',');
        resolve(rows.map((row) => Object.fromEntries(row.split(',').map((v, i) => [keys[i] ?? String(i), v]))));
      });
    });
  return { stats, stop };
}
