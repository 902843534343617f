/**
 * @module console/data/overview
 * What the overview page shows, each part one cheap read: the usage row against the quota, hosted
 * registries' totals (for admins), fills and jobs in flight, every upstream's health as its client
 * last saw it, and the one window of recorded traffic history the page draws.
 */
import type { ConsoleDeps } from '../page-context.ts';
import type { HostedRegistryStats } from '../../cache/metadata/hosted-queries.ts';
import type { SeriesWindow, TimeSeries } from '../../metrics/time-series.ts';
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
  /** The chosen window of traffic history; undefined where the mirror records none. */
  history: SeriesWindow | undefined;
}

export type HistoryWindow = 'hour' | 'day' | 'week';

/** Only the window shown is read: each read flushes the current minute and sums its rows. */
const READ_WINDOW: Record<HistoryWindow, (series: TimeSeries) => SeriesWindow> = {
  hour: (s) => s.lastHour(),
  day: (s) => s.lastDay(),
  week: (s) => s.lastWeek(),
};

const NO_USAGE: CacheUsage = { bytes: 0, blobs: 0, manifestBytes: 0, manifests: 0 };
const orNull = (ms: number) => (ms > 0 ? ms : null);

/**
 * `hosted`: whether to read hosted registries' totals, which count every repository (those a
 * viewer may not pull too), so only admins are shown them.
 */
export function overview(deps: ConsoleDeps, { window, hosted }: { window: HistoryWindow; hosted: boolean }): Overview {
  const { storage, background } = deps;
  const config = deps.config();
  const maxSize = config.storage.maxSize;
  const series = deps.series;
  return {
    usage: storage.metadata.usage.current() ?? NO_USAGE,
    maxSize,
    lowWatermarkBytes: Math.floor(maxSize * config.storage.lowWatermark),
    hosted: hosted && config.hosted.length > 0 ? storage.metadata.hosted.stats() : [],
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
    history: series && READ_WINDOW[window](series),
  };
}
