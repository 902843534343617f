/**
 * @module metrics/metrics
 * Prometheus series (prom-client), one registry per mirror. Hot-path counters are bumped where
 * the event happens; everything that already lives somewhere (cache usage in SQLite, job
 * counts, upstream client counters) is read at scrape time through `sources`, so there is one
 * source of truth and nothing to keep in sync.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface MetricsSources {
  usage?: () => { bytes: number; blobs: number; manifests: number };
  jobs?: () => { counts: Record<string, Record<string, number>>; depth: number };
  upstreams?: () => Record<string, { requests: number; errors: number; status?: UpstreamStatusSource }>;
  activeFills?: () => number;
  hotCacheBytes?: () => number;
  disk?: () => { full: boolean; free: number };
  /** Per offline upstream: tags past their TTL, served as they are. */
  staleTags?: () => Record<string, number>;
  /** With `cluster:`: every member's URL and state (self included). */
  clusterMembers?: () => ReadonlyArray<{ url: string; state: 'up' | 'down' | 'unknown' }>;
  /** With storage.backend s3: what this replica's index says the bucket holds, and whether it answers. */
  bucket?: () => { objects: number; bytes: number; reachable: boolean };
}

/** What the metrics read of an upstream's URLs and rate-limit budget. */
export interface UpstreamStatusSource {
  activeUrl: string;
  urls: ReadonlyArray<{ url: string }>;
  rateLimit: { limit: number | null; remaining: number | null };
  offline: boolean;
}

export type CacheLabel = 'HIT' | 'MISS' | 'STALE' | 'NONE';

export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'method' | 'status' | 'cache'>;
  readonly requestDuration: Histogram<'route'>;
  readonly bytesServed: Counter<'cache'>;
  readonly upstreamBytes: Counter<'upstream'>;
  readonly fillDuration: Histogram<'upstream' | 'result'>;
  readonly evictions: Counter<'reason'>;
  readonly evictedBytes: Counter<'reason'>;
  readonly configReloads: Counter<'result'>;
  readonly peerFills: Counter<'result'>;
  readonly peerTags: Counter<'result'>;
  readonly fillBytes: Counter<'source'>;
  readonly bucketCopies: Counter<'result'>;
  readonly configLastReloadSuccess: Gauge;
  readonly configRestartPending: Gauge;
  #sources: MetricsSources = {};

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'ocimirror_process_' });
    this.requests = new Counter({
      name: 'ocimirror_http_requests_total',
      help: 'HTTP requests answered, by route (manifest, blob, tags, referrers, base, health, admin, metrics, other), method, status and cache result',
      labelNames: ['route', 'method', 'status', 'cache'],
      registers,
    });
    this.requestDuration = new Histogram({
      name: 'ocimirror_http_request_duration_seconds',
      help: 'Time from request to the end of the response, by route',
      labelNames: ['route'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
      registers,
    });
    this.bytesServed = new Counter({ name: 'ocimirror_served_bytes_total', help: 'Bytes written to clients, by cache result', labelNames: ['cache'], registers });
    this.upstreamBytes = new Counter({ name: 'ocimirror_upstream_bytes_total', help: 'Blob bytes received from each upstream itself (not from a peer replica or the bucket)', labelNames: ['upstream'], registers });
    this.fillDuration = new Histogram({
      name: 'ocimirror_fill_duration_seconds',
      help: 'Duration of blob fills from upstream, by result (committed, uncached, failed)',
      labelNames: ['upstream', 'result'],
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800],
      registers,
    });
    this.evictions = new Counter({ name: 'ocimirror_evictions_total', help: 'Blobs evicted, by reason (quota, age, disk_full; bucket_quota: deleted from the shared bucket)', labelNames: ['reason'], registers });
    this.evictedBytes = new Counter({ name: 'ocimirror_evicted_bytes_total', help: 'Bytes evicted, by reason', labelNames: ['reason'], registers });

    this.peerFills = new Counter({ name: 'ocimirror_peer_fills_total', help: 'Blob fills whose owner is another replica, by result (peer: read from the owner, fallback: the owner failed, read from the upstream)', labelNames: ['result'], registers });
    this.peerTags = new Counter({ name: 'ocimirror_peer_tags_total', help: 'Tag resolutions whose owner is another replica, by result (peer: answered by the owner, fallback: the owner failed, asked the upstream)', labelNames: ['result'], registers });
    this.fillBytes = new Counter({ name: 'ocimirror_fill_bytes_total', help: 'Bytes of blob fills, by where they came from (upstream, peer: the owner replica, bucket: the shared bucket)', labelNames: ['source'], registers });
    this.bucketCopies = new Counter({ name: 'ocimirror_bucket_copies_total', help: 'Fills from the upstream copied into the shared bucket, by result (stored, present: another replica stored it first, failed)', labelNames: ['result'], registers });
    this.configReloads = new Counter({ name: 'ocimirror_config_reload_total', help: 'Config reloads (SIGHUP, a change of the config file, POST /admin/v1/reload), by result (ok, failed)', labelNames: ['result'], registers });
    this.configLastReloadSuccess = new Gauge({ name: 'ocimirror_config_last_reload_success', help: '1 when the last config reload applied (or none was tried), 0 when it failed and the previous config still runs', registers });
    this.configLastReloadSuccess.set(1);
    this.configRestartPending = new Gauge({ name: 'ocimirror_config_restart_pending', help: '1 while the loaded config changes keys that apply only at a restart (listen, storage.path, ...), else 0', registers });
    this.configRestartPending.set(0);

    const sources = () => this.#sources;
    /** A gauge read at scrape time; left unset while its source is not connected. */
    const gauge = (name: string, help: string, read: () => number | undefined) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const v = read();
          if (v !== undefined) this.set(v);
        },
      });
    gauge('ocimirror_cache_bytes', 'Bytes of committed blobs in the cache (exact, from SQLite)', () => sources().usage?.().bytes);
    gauge('ocimirror_cache_blobs', 'Committed blobs in the cache', () => sources().usage?.().blobs);
    gauge('ocimirror_cache_manifests', 'Manifests in the cache', () => sources().usage?.().manifests);
    gauge('ocimirror_hot_cache_bytes', 'Bytes held by the in-memory LRU of manifests, tags and links', () => sources().hotCacheBytes?.());
    gauge('ocimirror_fills_in_flight', 'Blob fills copying from an upstream right now', () => sources().activeFills?.());
    gauge('ocimirror_disk_full', '1 while the data directory has less free space than its reserve (nothing new is cached), else 0', () => {
      const d = sources().disk?.();
      return d === undefined ? undefined : Number(d.full);
    });
    gauge('ocimirror_disk_free_bytes', 'Free bytes on the data directory\'s filesystem (statfs)', () => sources().disk?.().free);
    gauge('ocimirror_job_queue_depth', 'Jobs queued or running', () => sources().jobs?.().depth);
    new Gauge({
      name: 'ocimirror_jobs',
      help: 'Background jobs by type and state',
      labelNames: ['type', 'state'],
      registers,
      collect() {
        const j = sources().jobs?.();
        if (!j) return;
        this.reset();
        for (const [type, states] of Object.entries(j.counts)) for (const [state, n] of Object.entries(states)) this.set({ type, state }, n);
      },
    });
    // Upstream clients count for themselves; these copy the increase since the last scrape.
    const seen = new Map<string, { requests: number; errors: number }>();
    let upstreamErrors: Counter<'upstream'> | undefined;
    new Counter({
      name: 'ocimirror_upstream_requests_total',
      help: 'Requests sent to each upstream, token requests included',
      labelNames: ['upstream'],
      registers,
      collect() {
        for (const [upstream, now] of Object.entries(sources().upstreams?.() ?? {})) {
          // Counts that went down belong to a new client (a config reload replaced it): all of them are new.
          const before = seen.get(upstream) ?? { requests: 0, errors: 0 };
          this.inc({ upstream }, now.requests >= before.requests ? now.requests - before.requests : now.requests);
          upstreamErrors?.inc({ upstream }, now.errors >= before.errors ? now.errors - before.errors : now.errors);
          seen.set(upstream, { requests: now.requests, errors: now.errors });
        }
      },
    });
    upstreamErrors = new Counter({
      name: 'ocimirror_upstream_errors_total',
      help: 'Upstream requests that got no answer (unreachable, timed out)',
      labelNames: ['upstream'],
      registers,
    });
    /** A gauge per upstream read from its status at scrape time; reset so removed labels disappear. */
    const upstreamGauge = <L extends string>(name: string, help: string, labelNames: L[], fill: (g: Gauge<L>, upstream: string, s: UpstreamStatusSource) => void) =>
      new Gauge<L>({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          for (const [upstream, u] of Object.entries(sources().upstreams?.() ?? {})) if (u.status) fill(this, upstream, u.status);
        },
      });
    upstreamGauge('ocimirror_upstream_active_url', 'Which of an upstream\'s URLs serves its requests: 1 for that one, 0 for the others', ['upstream', 'url'], (g, upstream, s) => {
      for (const { url } of s.urls) g.set({ upstream, url }, Number(url === s.activeUrl));
    });
    upstreamGauge('ocimirror_upstream_ratelimit_remaining', 'Pulls left in the upstream\'s rate-limit window (RateLimit-Remaining), when it reports one', ['upstream'], (g, upstream, s) => {
      if (s.rateLimit.remaining !== null) g.set({ upstream }, s.rateLimit.remaining);
    });
    upstreamGauge('ocimirror_upstream_offline', '1 for an upstream marked offline (never contacted; cached and imported content only), else 0', ['upstream'], (g, upstream, s) => {
      g.set({ upstream }, Number(s.offline));
    });
    new Gauge({
      name: 'ocimirror_upstream_stale_tags',
      help: 'Tags of an offline upstream past their tagTTL: served as they are, since nothing can revalidate them',
      labelNames: ['upstream'],
      registers,
      collect() {
        this.reset();
        for (const [upstream, n] of Object.entries(sources().staleTags?.() ?? {})) this.set({ upstream }, n);
      },
    });
    new Gauge({
      name: 'ocimirror_cluster_members',
      help: 'Cluster members this replica sees (itself included), by state (up, down, unknown)',
      labelNames: ['state'],
      registers,
      collect() {
        const members = sources().clusterMembers?.();
        if (!members) return;
        for (const state of ['up', 'down', 'unknown']) this.set({ state }, members.filter((m) => m.state === state).length);
      },
    });
    new Gauge({
      name: 'ocimirror_cluster_member_up',
      help: '1 for a cluster member whose health checks answer (itself included), 0 for one down or not yet checked',
      labelNames: ['member'],
      registers,
      collect() {
        this.reset();
        for (const m of sources().clusterMembers?.() ?? []) this.set({ member: m.url }, Number(m.state === 'up'));
      },
    });
    const bucketGauge = (name: string, help: string, value: (b: NonNullable<ReturnType<NonNullable<MetricsSources['bucket']>>>) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const b = sources().bucket?.();
          if (b) this.set(value(b));
        },
      });
    bucketGauge('ocimirror_bucket_objects', 'Blobs this replica knows committed in the shared bucket (its index, rebuilt from a listing when lost)', (b) => b.objects);
    bucketGauge('ocimirror_bucket_bytes', 'Bytes of the blobs this replica knows committed in the shared bucket', (b) => b.bytes);
    bucketGauge('ocimirror_bucket_reachable', '1 while the shared bucket answers, 0 since it last failed to (fills fail with 503; the disk tier still serves)', (b) => Number(b.reachable));
    upstreamGauge('ocimirror_upstream_ratelimit_limit', 'Pulls allowed per rate-limit window (RateLimit-Limit), when the upstream reports it', ['upstream'], (g, upstream, s) => {
      if (s.rateLimit.limit !== null) g.set({ upstream }, s.rateLimit.limit);
    });
  }

  /** Connects the scrape-time sources once the parts they read exist. */
  setSources(sources: MetricsSources): void {
    this.#sources = sources;
  }

  /** One config reload's outcome; `restartPending`: keys that need a restart differ from the running ones. */
  observeReload(result: 'ok' | 'failed', restartPending: boolean): void {
    this.configReloads.inc({ result });
    this.configLastReloadSuccess.set(result === 'ok' ? 1 : 0);
    this.configRestartPending.set(Number(restartPending));
  }

  observeRequest(r: { route: string; method: string; status: number; cache: CacheLabel; bytes: number; seconds: number }): void {
    this.requests.inc({ route: r.route, method: r.method, status: String(r.status), cache: r.cache });
    this.requestDuration.observe({ route: r.route }, r.seconds);
    if (r.bytes > 0) this.bytesServed.inc({ cache: r.cache }, r.bytes);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
