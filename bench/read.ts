/**
 * @module bench/read
 * Phase 3: cache-hit reads of one blob, N clients released together by the start barrier. Throughput is all
 * clients' bytes over first request → last byte; the best of `repeats` runs counts. The default client is
 * bench/reader.mjs; BENCH_READER=curl uses `curl -o /dev/null` instead (under `sh -c '…; times'` for its CPU).
 * Each client's CPU over its transfer time is kept: a reader near 100 % of a core is itself the limit.
 * Over HTTPS, reader.mjs clients finish the handshake before the barrier, so only the transfer is timed.
 */
import { fileURLToPath } from 'node:url';
import { runTogether } from './together.ts';

export type Reader = 'node' | 'curl';

export interface ReadResult {
  clients: number;
  reader: Reader;
  mibPerS: number;
  /** Busiest client's CPU (user+sys) over its transfer time, % of one core, in the best run. */
  readerCpuPct: number;
}

interface ClientRun {
  status: number;
  bytes: number;
  startMs: number;
  endMs: number;
  cpuS: number;
}

const READER = fileURLToPath(new URL('reader.mjs', import.meta.url));
/** curl reports durations only, so the wall clock is read around it with `date` (a few ms of error on a 512 MiB read). */
const CURL = 'echo ready >&2; read -r _ || exit 9; s=$(date +%s.%N); curl -sS --fail -o /dev/null -w "%{http_code} %{size_download}" "$@" "$0"; echo " $s $(date +%s.%N)"; times';
const TIMES = /(\d+)m([\d.]+)s (\d+)m([\d.]+)s\s*$/;

function parseCurl(stdout: string): ClientRun {
  const [status, bytes, s, e] = stdout.trim().split('\n')[0]!.split(' ').map(Number);
  const t = TIMES.exec(stdout.trim());
  const cpuS = t ? Number(t[1]) * 60 + Number(t[2]) + Number(t[3]) * 60 + Number(t[4]) : NaN;
  return { status: status!, bytes: bytes!, startMs: s! * 1000, endMs: e! * 1000, cpuS };
}

async function readOnce(url: string, bytes: number, clients: number, reader: Reader, timeoutMs: number, caFile?: string): Promise<ReadResult> {
  const { results } = reader === 'curl'
    ? await runTogether(clients, 'sh', ['-c', CURL, url, ...(caFile ? ['--cacert', caFile] : [])], timeoutMs)
    : await runTogether(clients, process.execPath, [READER, url, ...(caFile ? [caFile] : [])], timeoutMs);
  const runs = results.map((r) => {
    const c = reader === 'curl' ? parseCurl(r.stdout) : (JSON.parse(r.stdout.trim() || '{}') as ClientRun);
    if (r.code !== 0 || c.status !== 200 || c.bytes !== bytes) throw new Error(`read ${url}: exit ${r.code}, HTTP ${c.status}, ${c.bytes} of ${bytes} bytes\n${r.stderr}`);
    return c;
  });
  const wallS = (Math.max(...runs.map((c) => c.endMs)) - Math.min(...runs.map((c) => c.startMs))) / 1000;
  return {
    clients,
    reader,
    mibPerS: (clients * bytes) / 2 ** 20 / wallS,
    readerCpuPct: Math.max(...runs.map((c) => (100 * c.cpuS * 1000) / (c.endMs - c.startMs))),
  };
}

/** An https `url` is read over TLS trusting the PEM file `caFile`. */
export async function readThroughput(url: string, bytes: number, clients: number, repeats: number, reader: Reader, timeoutMs: number, caFile?: string): Promise<ReadResult> {
  let best: ReadResult | undefined;
  for (let i = 0; i < repeats; i++) {
    const r = await readOnce(url, bytes, clients, reader, timeoutMs, caFile);
    if (!best || r.mibPerS > best.mibPerS) best = r;
  }
  return best!;
}
