/**
 * @module bench/console
 * The console's pages on the scale phase's populated cache (100,000 blobs, 10,000 tags): each page
 * fetched in turn over loopback with the admin token, after a warm-up; the time to the whole
 * answer is the server's time to render it. Target: every page's median ≤ 100 ms.
 */
import { BENCH_ADMIN_TOKEN } from './ocimirror.ts';

export interface ConsolePageTime {
  path: string;
  status: number;
  bytes: number;
  medianMs: number;
  maxMs: number;
}

const WARMUP = 3;

/** `rounds` sequential GETs of each of `paths` on `url`. */
export async function consolePages(url: string, paths: string[], rounds = 20): Promise<ConsolePageTime[]> {
  const headers = { authorization: `Bearer ${BENCH_ADMIN_TOKEN}` };
  const out: ConsolePageTime[] = [];
  for (const p of paths) {
    const times: number[] = [];
    let status = 0;
    let bytes = 0;
    for (let i = 0; i < WARMUP + rounds; i++) {
      const t0 = performance.now();
      const res = await fetch(`${url}${p}`, { headers, redirect: 'manual' });
      const body = await res.arrayBuffer();
      if (i >= WARMUP) times.push(performance.now() - t0);
      status = res.status;
      bytes = body.byteLength;
    }
    times.sort((a, b) => a - b);
    out.push({ path: p, status, bytes, medianMs: times[Math.floor(times.length / 2)]!, maxMs: times[times.length - 1]! });
  }
  return out;
}
