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
import { repositoryFilter, sources } from './data/sources.ts';
import type { PageContext } from './page-context.ts';

/**
 * Whether `ctx` may see what a job is about. The sources and their filters are worked out once,
 * here, and reused for every row of a list.
 */
export function jobVisibility(ctx: { identity: { admin: boolean }; canPull: PageContext['canPull'] }, config: Config): (job: Job) => boolean {
  if (ctx.identity.admin) return () => true;
  const filters = new Map(sources(config).map((source) => [source.name, repositoryFilter(ctx, source)]));
  return (job) => {
    const p = job.payload as Record<string, unknown> | null;
    if (job.type === 'sync') return false;
    if (p === null || typeof p !== 'object') return true;
    if (typeof p.upstream === 'string' && typeof p.repo === 'string') {
      // A source no longer configured hides its jobs; for a viewer a filter is always there.
      return filters.get(p.upstream)?.(p.repo) ?? false;
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
  };
}
