/**
 * @module console/data/overview
 * What the overview page shows, each part one cheap read: the usage row against the quota, hosted
 * registries' totals, fills and jobs in flight, every upstream's health as its client last saw it,
 * and the recorded traffic history.
 */
import type { ConsoleDeps } from '../page-context.ts';
import type { HostedRegistryStats } from '../../cache/metadata/hosted-queries.ts';
import type { SeriesWindow } from '../../metrics/time-series.ts';
import type { CacheUsage } from '../../cache/metadata/usage-queries.ts';

export interface UpstreamHealth {
  name: string;
  registries: readonly string[];
  offline: boolean;
  /** Whether the last thing that happened was an answer (not an error). */
  healthy: boolean;
  lastAnswerAt: number | null;
  lastErrorAt: number | null;
  lastError: string | null;
  activeUrl: string;
  urls: ReadonlyArray<{ url: string; state: 'up' | 'down'; retryAt: number }>;
  rateLimit: { limit: number | null; remaining: number | null; windowSeconds: number | null; observedAt: number | null };
  backgroundPausedUntil: number | null;
}

export interface Overview {
  usage: CacheUsage;
  /** 0 = unlimited. */
  maxSize: number;
  /** Bytes eviction brings usage down to (0 when there is no quota). */
  lowWatermarkBytes: number;
  hosted: HostedRegistryStats[];
  fillsInFlight: number;
  jobDepth: number;
  upstreams: UpstreamHealth[];
  history: { hour: SeriesWindow; day: SeriesWindow; week: SeriesWindow } | undefined;
}

const NO_USAGE: CacheUsage = { bytes: 0, blobs: 0, manifestBytes: 0, manifests: 0 };
const orNull = (ms: number) => (ms > 0 ? ms : null);

export function overview(deps: ConsoleDeps): Overview {
  const { storage, background } = deps;
  const config = deps.config();
  const maxSize = config.storage.maxSize;
  const series = deps.series;
  return {
    usage: storage.metadata.usage.current() ?? NO_USAGE,
    maxSize,
    lowWatermarkBytes: Math.floor(maxSize * config.storage.lowWatermark),
    hosted: config.hosted.length > 0 ? storage.metadata.hosted.stats() : [],
    fillsInFlight: storage.blobs.activeFills,
    jobDepth: background.store.depth(),
    upstreams: [...deps.upstreams().values()].map((u): UpstreamHealth => {
      const status = u.status();
      const c = u.counters;
      return {
        name: u.name,
        registries: u.config.registries,
        offline: status.offline,
        healthy: c.lastErrorAt <= c.lastAnswerAt,
        lastAnswerAt: orNull(c.lastAnswerAt),
        lastErrorAt: orNull(c.lastErrorAt),
        lastError: c.lastError,
        activeUrl: status.activeUrl,
        urls: status.urls.map((s) => ({ url: s.url, state: s.state, retryAt: s.retryAt })),
        rateLimit: { limit: status.rateLimit.limit, remaining: status.rateLimit.remaining, windowSeconds: status.rateLimit.windowSeconds, observedAt: orNull(status.rateLimit.observedAt) },
        backgroundPausedUntil: status.backgroundPausedUntil,
      };
    }),
    history: series && { hour: series.lastHour(), day: series.lastDay(), week: series.lastWeek() },
  };
}
