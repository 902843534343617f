/**
 * @module console/job-visibility
 * Which jobs a console viewer may look into: a job names an image (prefetch, refresh, delete) or a
 * list of them (sync), and a viewer sees the details of one only when it may pull that image's
 * repository, as the browse pages decide (console/pull-access). Jobs naming no repository (gc,
 * eviction) are everyone's; a sync names many, so only admins see its details. Admins see all.
 */
import type { Config } from '../config/schema.ts';
import type { Job } from '../jobs/index.ts';
import { parseImageRef } from '../registry/image-ref.ts';
import { findSource, repositoryFilter } from './data/sources.ts';
import type { PageContext } from './page-context.ts';

/** Whether `ctx` may see what `job` is about. */
export function jobVisible(job: Job, ctx: Pick<PageContext, 'identity' | 'canPull'>, config: Config): boolean {
  if (ctx.identity.admin) return true;
  const p = job.payload as Record<string, unknown> | null;
  if (job.type === 'sync') return false;
  if (p === null || typeof p !== 'object') return true;
  if (typeof p.upstream === 'string' && typeof p.repo === 'string') {
    const source = findSource(config, p.upstream);
    return source !== undefined && (repositoryFilter(ctx, source)?.(p.repo) ?? true);
  }
  if (typeof p.image === 'string') {
    try {
      const ref = parseImageRef(p.image);
      return ctx.canPull(ref.registry, ref.repo);
    } catch {
      return false;
    }
  }
  // No repository named (gc, eviction and their scopes).
  return !('image' in p || 'repo' in p || 'images' in p);
}
