/**
 * @module bench/together
 * A start barrier for N client processes: each one sets itself up, writes `ready` to stderr and blocks on a
 * line from stdin; once all are ready (or gone), one write to each stdin releases them within the same millisecond.
 * `release` is that line (default `go`); `settleMs` waits after the last `ready`, for clients that announce
 * themselves just before the program that reads the line has loaded.
 */
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { log, run, type Ran } from './proc.ts';

export async function runTogether(
  n: number,
  cmd: string,
  args: string[],
  timeoutMs: number,
  { release = 'go\n', settleMs = 0 }: { release?: string; settleMs?: number } = {},
): Promise<{ results: Ran[]; releasedAt: number }> {
  const children: ChildProcess[] = [];
  const settled = new Set<number>(); // ready or already ended
  const onSpawn = (i: number) => (child: ChildProcess) => {
    children.push(child);
    child.stdin!.on('error', () => {}); // a child that already died: its run() reports why
    let seen = '';
    const watch = (b: Buffer) => {
      seen += b.toString();
      if (!seen.includes('ready\n')) return;
      settled.add(i);
      child.stderr!.off('data', watch);
    };
    child.stderr!.on('data', watch);
  };
  // Observed at once, so a client failing before the release is reported, not an unhandled rejection.
  const done = Promise.all(Array.from({ length: n }, (_, i) => run(cmd, args, { timeoutMs, onSpawn: onSpawn(i) }).finally(() => settled.add(i))));
  done.catch(() => {});
  for (let waited = 0; settled.size < n && waited < 15_000; waited += 5) await sleep(5);
  if (settled.size < n) log(`warning: ${n - settled.size} of ${n} clients not ready after 15 s; releasing the others`);
  if (settleMs > 0) await sleep(settleMs);
  const releasedAt = performance.now();
  for (const child of children) child.stdin!.end(release);
  return { results: await done, releasedAt };
}
