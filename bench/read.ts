/**
 * @module bench/read
 * Phase 3: cache-hit reads of one blob with `curl -o /dev/null`, N clients at once. Throughput is the bytes of
 * all clients over the slowest client's transfer time (curl's own clock, so process start-up is not counted);
 * the best of `repeats` runs counts. Each curl runs under `sh -c '…; times'`, which reports its CPU time: a curl
 * near 100 % of a core is itself the limit.
 */
import { run } from './proc.ts';

export interface ReadResult {
  clients: number;
  mibPerS: number;
  /** Busiest curl's CPU (user+sys) over its transfer time, % of one core, in the best run. */
  curlCpuPct: number;
}

const MiB = 1024 * 1024;
/** POSIX `times`: the shell's own user/sys, then its children's (`0m1.234s 0m0.567s`). */
const TIMES = /(\d+)m([\d.]+)s (\d+)m([\d.]+)s\s*$/;

async function readOnce(url: string, bytes: number, timeoutMs: number): Promise<{ s: number; cpuS: number }> {
  const r = await run('sh', ['-c', 'curl -sS --fail -o /dev/null -w "%{http_code} %{size_download} %{time_total}\\n" "$0" && times', url], { timeoutMs });
  const [code, size, total] = r.stdout.trim().split('\n')[0]!.split(' ');
  if (r.code !== 0 || code !== '200' || Number(size) !== bytes) {
    throw new Error(`read ${url}: exit ${r.code}, HTTP ${code}, ${size} of ${bytes} bytes\n${r.stderr}`);
  }
  const t = TIMES.exec(r.stdout.trim());
  const cpuS = t ? Number(t[1]) * 60 + Number(t[2]) + Number(t[3]) * 60 + Number(t[4]) : NaN;
  return { s: Number(total), cpuS };
}

export async function readThroughput(url: string, bytes: number, clients: number, repeats: number, timeoutMs: number): Promise<ReadResult> {
  let best: ReadResult | undefined;
  for (let i = 0; i < repeats; i++) {
    const runs = await Promise.all(Array.from({ length: clients }, () => readOnce(url, bytes, timeoutMs)));
    const slowest = Math.max(...runs.map((r) => r.s));
    const result = {
      clients,
      mibPerS: (clients * bytes) / MiB / slowest,
      curlCpuPct: Math.max(...runs.map((r) => (100 * r.cpuS) / r.s)),
    };
    if (!best || result.mibPerS > best.mibPerS) best = result;
  }
  return best!;
}
