/**
 * @module bench/empty-cache
 * Empties a running ocimirror's cache through its own admin API, so a cold pull can be measured on a
 * process that has served before (JIT-compiled, connections and pools warm), as a long-running mirror
 * meets a new image: each image of the set is deleted by a job on the mirror's queue
 * (`DELETE /admin/v1/images`, through the CLI's admin client), and the run stops unless usage then
 * shows no blob and no manifest.
 */
import { AdminClient, type JobView } from '../src/cli/admin-client.ts';
import { BENCH_ADMIN_TOKEN, BENCH_REGISTRY, type OcimirrorProc } from './ocimirror.ts';

export async function emptyCache(om: OcimirrorProc, refs: readonly string[], timeoutMs: number): Promise<void> {
  const admin = new AdminClient({ url: om.url, token: BENCH_ADMIN_TOKEN });
  const jobs: JobView[] = [];
  for (const ref of refs) jobs.push(await admin.call<JobView>('DELETE', `/images?image=${encodeURIComponent(`${BENCH_REGISTRY}/${ref}`)}`));
  for (const { id } of jobs) {
    const job = await admin.waitForJob(id, { intervalMs: 20, timeoutMs });
    if (job.state !== 'done') throw new Error(`deletion job ${id}: ${JSON.stringify(job)}`);
  }
  const usage = await admin.call<{ blobs: number; manifests: number }>('GET', '/usage');
  if (usage.blobs !== 0 || usage.manifests !== 0) throw new Error(`the cache is not empty after deleting the set: ${JSON.stringify(usage)}`);
}
