/**
 * @module bench/empty-cache
 * Empties a running ocimirror's cache through its own admin API, so a cold pull can be measured on a
 * process that has served before (JIT-compiled, connections and pools warm), as a long-running mirror
 * meets a new image: each image of the set is deleted by a job on the mirror's queue
 * (`DELETE /admin/v1/images`), and the run stops unless usage then shows no blob and no manifest.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { BENCH_ADMIN_TOKEN, BENCH_REGISTRY, type OcimirrorProc } from './ocimirror.ts';

async function admin(om: OcimirrorProc, method: 'GET' | 'DELETE', path: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${om.url}/admin/v1${path}`, { method, headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}` } });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

export async function emptyCache(om: OcimirrorProc, refs: readonly string[], timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  const jobs: number[] = [];
  for (const ref of refs) {
    const del = await admin(om, 'DELETE', `/images?image=${encodeURIComponent(`${BENCH_REGISTRY}/${ref}`)}`);
    if (del.status !== 202) throw new Error(`deleting ${ref}: ${del.status} ${JSON.stringify(del.json)}`);
    jobs.push(del.json.id as number);
  }
  for (const id of jobs) {
    for (;;) {
      const job = (await admin(om, 'GET', `/jobs/${id}`)).json;
      if (job.state === 'done') break;
      if (job.state === 'failed' || performance.now() > deadline) throw new Error(`deletion job ${id}: ${JSON.stringify(job)}`);
      await sleep(20);
    }
  }
  const usage = (await admin(om, 'GET', '/usage')).json;
  if (usage.blobs !== 0 || usage.manifests !== 0) throw new Error(`the cache is not empty after deleting the set: ${JSON.stringify(usage)}`);
}
