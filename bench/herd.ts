/**
 * @module bench/herd
 * Phase 5: N clients ask for one uncached blob at the same instant. Each client is
 * `curl URL | sha256sum` in a shell that first blocks on a line from stdin; once every shell is up, one write
 * to each stdin releases them together. curl reports its own time to first byte; sha256sum proves the bytes.
 */
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FaultProxy } from '../test/helpers/fault-proxy.ts';
import { run } from './proc.ts';
import { settled } from './upstream.ts';

export interface HerdResult {
  clients: number;
  /** GETs of the blob that reached the upstream. */
  upstreamGets: number;
  upstreamBytes: number;
  ttfbMedianS: number;
  ttfbMaxS: number;
  /** Release → last client done. */
  wallS: number;
  sha256Ok: number;
  /** One line per client that failed (HTTP status, curl error, wrong digest). */
  failures: string[];
}

const CLIENT = 'read -r _ || exit 9; set -o pipefail; curl -sS --fail -w "%{stderr}ttfb=%{time_starttransfer} code=%{http_code}\\n" "$0" | sha256sum';

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

export async function herd(url: string, digest: string, clients: number, forwarder: FaultProxy, timeoutMs: number): Promise<HerdResult> {
  forwarder.reset();
  const shells: ChildProcess[] = [];
  const done = Array.from({ length: clients }, () => run('bash', ['-c', CLIENT, url], { timeoutMs, onSpawn: (c) => shells.push(c) }));
  for (let i = 0; shells.length < clients && i < 500; i++) await sleep(10);
  await sleep(200); // every shell reaches `read`
  const released = performance.now();
  for (const shell of shells) shell.stdin!.end('go\n');
  const results = await Promise.all(done);
  const wallS = (performance.now() - released) / 1000;
  await settled(forwarder);

  const ttfb: number[] = [];
  const failures: string[] = [];
  let sha256Ok = 0;
  results.forEach((r, i) => {
    const t = /ttfb=([\d.]+) code=(\d+)/.exec(r.stderr);
    if (t) ttfb.push(Number(t[1]));
    const hash = `sha256:${r.stdout.split(' ')[0]}`;
    if (r.code === 0 && t?.[2] === '200' && hash === digest) sha256Ok++;
    else failures.push(`client ${i}: exit ${r.code}, HTTP ${t?.[2]}, ${hash.slice(0, 19)}…: ${r.stderr.trim().slice(-200)}`);
  });
  const gets = { method: 'GET', pathIncludes: digest };
  return {
    clients,
    upstreamGets: forwarder.count(gets),
    upstreamBytes: forwarder.bytes(gets),
    ttfbMedianS: ttfb.length ? median(ttfb) : NaN,
    ttfbMaxS: ttfb.length ? Math.max(...ttfb) : NaN,
    wallS,
    sha256Ok,
    failures,
  };
}
