/**
 * @module bench/pull
 * Phases 1 and 2: `skopeo copy --all docker://HOST/REF dir:TMP` of every image of the set, one after another.
 * Wall is the sum of the copies (the temp dirs are removed between them, outside the clock); upstream requests
 * and bytes are what the upstream logged during the phase; `mirrorCpuS` is the CPU the mirror process spent on
 * it (user + system, /proc/<pid>/stat), the figure that decides whether a hand-written fill path pays.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { UpstreamLog } from './access-log.ts';
import { mustRun } from './proc.ts';
import { settled } from './upstream.ts';

export interface PullResult {
  wallS: number;
  upstreamRequests: number;
  upstreamBlobGets: number;
  upstreamBytes: number;
  /** CPU-seconds of the mirror process (when its pid was given) from the first copy to the upstream settling. */
  mirrorCpuS?: number;
}

/** utime + stime of a process in seconds (fields 14 and 15 of /proc/<pid>/stat, in clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export async function pullSet(host: string, refs: string[], upstream: UpstreamLog, tmp: string, timeoutMs: number, mirrorPid?: number): Promise<PullResult> {
  upstream.reset();
  const cpuBefore = mirrorPid === undefined ? 0 : cpuSeconds(mirrorPid);
  let ms = 0;
  for (const ref of refs) {
    const dir = await mkdtemp(join(tmp, 'pull-'));
    try {
      const r = await mustRun('skopeo', [
        '--insecure-policy', 'copy', '--all', '--src-tls-verify=false', '--retry-times', '0', `docker://${host}/${ref}`, `dir:${dir}`,
      ], { timeoutMs });
      ms += r.ms;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  await settled(upstream);
  return {
    wallS: ms / 1000,
    upstreamRequests: upstream.count(),
    upstreamBlobGets: upstream.count({ method: 'GET', pathIncludes: '/blobs/' }),
    upstreamBytes: upstream.bytes(),
    ...(mirrorPid === undefined ? {} : { mirrorCpuS: cpuSeconds(mirrorPid) - cpuBefore }),
  };
}
