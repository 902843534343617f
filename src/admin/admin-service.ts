/**
 * @module admin/admin-service
 * What the admin API answers, composed from the cache (usage, inventory, pins), the job queue
 * and the upstream clients. Mutations that take time are queued as jobs.
 */
import { RegistryError } from '../registry/errors.ts';
import type { AdminService } from '../http/admin-routes.ts';
import type { Config } from '../config/schema.ts';
import { Inventory } from '../cache/metadata/inventory.ts';
import { UsageMeter } from '../cache/metadata/usage.ts';
import type { Storage } from '../cache/storage.ts';
import type { UpstreamPool } from '../upstream/index.ts';
import { JOB_STATES, JOB_TYPES, type Job, type JobState, type JobType } from '../jobs/index.ts';
import type { Background } from '../jobs/background.ts';
import type { ReloadOutcome } from '../reload/config-reloader.ts';
import type { MirrorCore } from '../core.ts';
import type { Logger } from '../util/logger.ts';
import type { Membership } from '../cluster/index.ts';
import { BundleError } from '../bundle/bundle-error.ts';
import { planExport, writeExportTar } from '../bundle/bundle-export.ts';
import { importBundle } from '../bundle/bundle-import.ts';
import { formatBytes } from '../config/units.ts';

/** Every timestamp the admin API returns is an ISO 8601 string (null when it never happened). */
const iso = (ms: number | null) => (ms ? new Date(ms).toISOString() : null);

function jobView(job: Job) {
  return {
    id: job.id,
    type: job.type,
    state: job.state,
    payload: job.payload,
    attempts: job.attempts,
    maxAttempts: job.maxAttempts,
    lastError: job.lastError,
    progress: job.progress,
    result: job.result,
    createdAt: iso(job.createdAt),
    startedAt: iso(job.startedAt),
    finishedAt: iso(job.finishedAt),
    runAfter: iso(job.runAfter),
  };
}

export interface AdminServiceDeps {
  config: Config;
  storage: Storage;
  upstreams: UpstreamPool;
  background: Background;
  /** Reloads the config (the mirror's reloader); absent without a config file to reload. */
  reload?: (() => ReloadOutcome) | undefined;
  /** The mirror's parts of the generation in effect, for bundle export and import; without it those endpoints are absent. */
  core?: (() => MirrorCore) | undefined;
  log?: Logger | undefined;
  /** The cluster membership; without it GET /cluster answers 404. */
  membership?: Membership | undefined;
}

/** A bundle's problem as the admin API's error: 400 naming what is wrong, with the code and digests as detail. */
function bundleFailure(err: unknown): unknown {
  if (!(err instanceof BundleError)) return err;
  return new RegistryError('BAD_REQUEST', { message: err.message, detail: { bundleError: err.code, digests: err.digests }, cause: err });
}

/** At most this many warnings travel in the export's summary header. */
const HEADER_WARNINGS = 5;

export function createAdminService({ config, storage, upstreams, background, reload, core, log, membership }: AdminServiceDeps): AdminService {
  const bucketScope = () => {
    if (!storage.bucket) throw new RegistryError('BAD_REQUEST', { message: 'scope=bucket needs storage.backend s3' });
    return { scope: 'bucket' as const };
  };
  const usage = new UsageMeter(storage.metadata);
  const inventory = new Inventory(storage.metadata);
  return {
    usage: () => ({ ...usage.current(), maxSize: config.storage.maxSize, lowWatermark: config.storage.lowWatermark, maxAge: config.storage.maxAge, fillsInFlight: storage.blobs.activeFills }),
    repositories: () => ({ repositories: inventory.repositories() }),
    upstreams: () => ({
      upstreams: [...upstreams.values()].map((u) => {
        const status = u.status();
        return {
          name: u.name,
          url: u.config.url,
          activeUrl: status.activeUrl,
          urls: status.urls.map((s) => ({ ...s, retryAt: iso(s.retryAt) })),
          rateLimit: { ...status.rateLimit, observedAt: iso(status.rateLimit.observedAt), floor: u.config.rateLimitFloor, backgroundPausedUntil: iso(status.backgroundPausedUntil) },
          registries: u.config.registries,
          offline: status.offline,
          // Tags past their TTL: served as they are while offline, revalidated on the next pull otherwise.
          staleTags: storage.metadata.tags.staleCount(u.name, storage.metadata.now() - u.config.tagTTL),
          requests: u.counters.requests,
          errors: u.counters.errors,
          tokenFetches: u.counters.tokenFetches,
          lastAnswerAt: iso(u.counters.lastAnswerAt),
          lastErrorAt: iso(u.counters.lastErrorAt),
          lastError: u.counters.lastError,
          // Healthy when the last thing that happened was an answer.
          healthy: u.counters.lastErrorAt <= u.counters.lastAnswerAt,
        };
      }),
    }),
    pins: () => ({ pins: background.pins.list().map((pin) => ({ ...pin, createdAt: iso(pin.createdAt ?? null) })) }),
    addPin: (image) => ({ pinned: background.pin(image) }),
    removePin: (image) => {
      if (!background.pins.remove(image)) throw new RegistryError('NOT_FOUND', { message: `'${image}' is not pinned through the admin API (config pins are changed in the config)` });
      return { unpinned: image };
    },
    jobs: ({ state, type, limit }) => {
      if (state !== undefined && !(JOB_STATES as readonly string[]).includes(state)) throw new RegistryError('BAD_REQUEST', { message: `state must be one of ${JOB_STATES.join(', ')}` });
      if (type !== undefined && !(JOB_TYPES as readonly string[]).includes(type)) throw new RegistryError('BAD_REQUEST', { message: `type must be one of ${JOB_TYPES.join(', ')}` });
      const jobs = background.store.list({ state: state as JobState | undefined, type: type as JobType | undefined, limit: Number.isSafeInteger(limit) ? limit : 100 });
      return { jobs: jobs.map(jobView), depth: background.store.depth() };
    },
    job: (id) => {
      const job = background.store.get(id);
      return job ? jobView(job) : undefined;
    },
    prefetch: (images, platforms) => ({ jobs: background.prefetchImages(images, platforms).map(({ image, job }) => ({ image, ...jobView(job) })) }),
    deleteImage: (image) => jobView(background.deleteImage(image)),
    sync: (request) => jobView(background.syncImages(request)),
    gc: (scope) => jobView(scope ? background.enqueue('gc', bucketScope(), 'bucket-gc') : background.enqueue('gc', null, 'gc')),
    evict: (scope) => jobView(scope ? background.enqueue('evict', bucketScope(), 'bucket-evict') : background.enqueue('evict', null, 'evict')),
    ...(core
      ? {
          exportBundle: async ({ images, platforms, since }, signal) => {
            const parts = core();
            const warnings: string[] = [];
            const plan = await planExport(parts, images, { platforms, sinceIndex: since, signal, onWarning: (m) => warnings.push(m) }).catch((err: unknown) => {
              throw bundleFailure(err);
            });
            const summary = { images: plan.images.length, manifests: plan.manifests.length, blobs: plan.blobs.length, skippedBlobs: plan.skippedBlobs, bytes: plan.bytes, warnings: warnings.slice(0, HEADER_WARNINGS) };
            return {
              summary,
              write: async (out) => {
                try {
                  await writeExportTar(parts, plan, out, { signal });
                } catch (err) {
                  log?.warn({ err: (err as Error).message, images }, 'bundle export stopped before the end; the connection was cut');
                  throw err;
                }
              },
            };
          },
          importBundle: async (body, { dest, baseName, contentLength }, signal) => {
            const parts = core();
            // The disk is the natural bound of a body that may be gigabytes; past it the upload store's disk-full handling applies.
            const { free } = storage.disk.status();
            if (contentLength !== undefined && contentLength > free) {
              throw new RegistryError('UNAVAILABLE', { message: `the bundle is ${formatBytes(contentLength)}, the mirror's disk has ${formatBytes(free)} free; nothing was imported` });
            }
            try {
              const summary = await importBundle(parts, body, { dest, baseName, signal, onWarning: (m) => log?.warn({ warning: m }, 'bundle import') });
              log?.info({ images: summary.images, blobs: summary.blobs, bytes: summary.bytes }, 'bundle imported');
              return summary;
            } catch (err) {
              throw bundleFailure(err);
            }
          },
        }
      : {}),
    ...(membership
      ? {
          cluster: () => ({
            self: membership.self,
            resolveError: membership.resolveError,
            counts: membership.counts(),
            members: membership.members().map((m) => ({ ...m, lastOk: iso(m.lastOk), lastErrorAt: iso(m.lastErrorAt) })),
          }),
        }
      : {}),
    ...(reload
      ? {
          reload: () => {
            const outcome = reload();
            if (outcome.result === 'failed') throw new RegistryError('BAD_REQUEST', { message: 'the new config was refused; the running config is unchanged', detail: outcome });
            return outcome;
          },
        }
      : {}),
  };
}
