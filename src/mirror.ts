/**
 * @module mirror
 * The composition root: config → storage → upstream clients → proxy policy → background jobs →
 * HTTP server, and the graceful stop that undoes it. Used by `ocimirror serve` and by the
 * integration tests, so tests run exactly what operators run.
 *
 * What depends on the live part of the config — upstream clients, router, client auth, the HTTP
 * app and its fast path, TLS files — is a generation: a reload builds the next one beside the
 * running one (unchanged upstream clients taken over with their connections and state), checks it
 * whole, then swaps it in with one assignment the server reads per request. Replaced upstream
 * clients are closed once server.shutdownGrace has let the requests that hold them finish.
 */
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import type { Config } from './config/schema.ts';
import { ConfigError } from './config/config-error.ts';
import { openStorage, type Storage } from './cache/storage.ts';
import { nativeAddon, nativeAddonError } from './util/native-addon.ts';
import { BlobWriter } from './http/body/blob-writer.ts';
import { SendfilePolicy } from './http/body/sendfile.ts';
import { UsageMeter } from './cache/metadata/usage.ts';
import { createUpstreams, type UpstreamClient, type UpstreamPool } from './upstream/index.ts';
import { buildRouter, createHosted, createProxies, hostedQuota, type MirrorCore } from './core.ts';
import { SlabPool } from './util/read-slabs.ts';
import { Router, type Route } from './proxy/router.ts';
import { Background, type BackgroundDeps } from './jobs/background.ts';
import { BucketEvictor } from './cache/bucket/bucket-eviction.ts';
import { jobOwner } from './cluster/job-owner.ts';
import { gatherAccess, localAccess, type AccessWalk } from './cluster/peer-access.ts';
import { createAdminService } from './admin/admin-service.ts';
import { Metrics } from './metrics/metrics.ts';
import { TimeSeries } from './metrics/time-series.ts';
import { createApp } from './http/app.ts';
import { createConsole, createConsoleState } from './console/console-app.tsx';
import { startServer, type RequestHandler, type RunningServer } from './http/server.ts';
import { checkTlsFiles, type TlsFiles } from './http/connection/tls-context.ts';
import { ConfigReloader, type ReloadOutcome } from './reload/config-reloader.ts';
import { createManifestFastPath } from './http/v2-routes.ts';
import type { Logger } from './util/logger.ts';
import { createClientAuth, type ClientAuthParts } from './auth/index.ts';
import { RobotTokens } from './auth/robot-tokens.ts';
import { createCluster, type Cluster } from './cluster/index.ts';
import { PeerFill } from './cluster/peer-fill.ts';
import { PeerRequest } from './cluster/peer-request.ts';
import { PeerTags } from './cluster/peer-tags.ts';

/** Multipart uploads in the bucket older than this are a crashed copy's leftovers (gc aborts them). */
const BUCKET_STALE_UPLOAD_MS = 86_400_000;

export interface Mirror {
  readonly url: string;
  readonly server: RunningServer;
  readonly storage: Storage;
  readonly upstreams: UpstreamPool;
  readonly background: Background;
  readonly metrics: Metrics | undefined;
  /** The traffic history behind the console's charts (recorded with or without Prometheus metrics). */
  readonly series: TimeSeries;
  /** With `cluster:` configured: the membership and the secret peers share. */
  readonly cluster: Cluster | undefined;
  /** Writes blob bodies to clients; owns the read-buffer pool the idle collector trims. */
  readonly blobWriter: BlobWriter;
  /** Drops the free buffers of the process's pools (blob writer's reads, bulk bodies' slabs); the idle collector calls it. */
  trimBuffers(): void;
  /** Whether the native addon is in use (sendfile, fills' hash-and-write): loaded, and server.nativeAddon on. */
  readonly nativeAddon: boolean;
  /** True once a stop began: /readyz answers 503. */
  readonly draining: boolean;
  /** The config in effect (the start-up one until a reload applies another). */
  readonly config: Config;
  /** Reloads the config from `loadConfig` and applies what can change live; reports every problem and changes nothing on failure. */
  reload(trigger: string): ReloadOutcome;
  /** Drains (readiness 503, optional delay, close listener, finish in-flight pulls) and closes storage. */
  stop(opts?: { graceMs?: number; drainDelayMs?: number }): Promise<void>;
}

export interface MirrorOptions {
  /** The clock for tag TTLs, stale backoff, listing freshness, token lifetimes and metadata timestamps (tests move it). */
  now?: () => number;
  /** Reads the config again as start-up did (same file, environment, flags), for reloads; without it a reload fails saying so. */
  loadConfig?: () => Config;
}

/** The parts built from the live config; a reload builds the next and swaps it in whole. */
interface Generation {
  readonly config: Config;
  readonly upstreams: UpstreamPool;
  readonly router: Router;
  readonly clientAuth: ClientAuthParts | undefined;
}

export async function startMirror(config: Config, log: Logger, { now = Date.now, loadConfig }: MirrorOptions = {}): Promise<Mirror> {
  // server.nativeAddon: false leaves the addon unloaded: buffered copies and Node's hashing (the pure-Node path).
  const addon = config.server.nativeAddon ? nativeAddon() : undefined;
  const storage = await openStorage({ path: config.storage.path, hotCacheBytes: config.hotCache.maxSize, log, now, nativeAddon: addon, bucket: config.storage.backend === 's3' ? config.storage.s3 : undefined });
  const blobWriter = new BlobWriter({ sendfile: new SendfilePolicy(config.server.sendfile, addon) });
  const slabs = new SlabPool();
  const upstreams = createUpstreams(config.upstreams, log, { now, egress: config.egress, slabs });
  const metrics = config.metrics.enabled ? new Metrics() : undefined;
  const router = buildRouter(config, upstreams);
  // Made now so the routes can answer peers; its checks start once the server listens (cluster is restart-only).
  const cluster = config.cluster ? createCluster(config.cluster, log, { now }) : undefined;
  const peerOpts = cluster ? { membership: cluster.membership, auth: cluster.auth } : undefined;
  const peers = peerOpts ? new PeerRequest(peerOpts) : undefined;
  // A blob or tag another replica owns is asked of that replica, so the cluster asks the upstream once.
  const peerFill = peerOpts && peers ? new PeerFill({ ...peerOpts, requests: peers, log: log.child({ module: 'peer-fill' }), onResult: (result) => metrics?.peerFills.inc({ result }) }) : undefined;
  const peerTags = peerOpts && peers ? new PeerTags({ ...peerOpts, requests: peers, log: log.child({ module: 'peer-tags' }), onResult: (result) => metrics?.peerTags.inc({ result }) }) : undefined;
  const { manifests, blobs, lists, prefetcher } = createProxies(storage, log, now, {
    peerTags: peerTags ? (route, tag) => peerTags.resolve(route, tag) : undefined,
    peerSource: peerFill ? (route, digest, signal) => peerFill.source(route, digest, signal) : undefined,
  });
  // Quotas are read from the generation in effect, so a reload changes them for the next push.
  const hosted = createHosted(storage, log, (registry) => hostedQuota(gen.config, registry), now);
  // Sync jobs run on the parts in effect when they start (the latest reload's upstreams and router).
  const core = (): MirrorCore => ({ config: gen.config, storage, upstreams: gen.upstreams, router: gen.router, manifests, blobs, lists, prefetcher, hosted, slabs, close: async () => {} });
  // Cluster-wide work (refresh, sync, the bucket's eviction and sweep) is queued by its owner only.
  const accessWalk: AccessWalk = (fn) => storage.metadata.eachBlobLastAccess(fn);
  const owns = cluster ? jobOwner(cluster.membership) : undefined;
  let bucketJobs: BackgroundDeps['bucket'];
  const tier = storage.bucket;
  if (tier) {
    tier.onCopy = (result) => metrics?.bucketCopies.inc({ result });
    // A new replica (or one whose database was lost) learns what the bucket holds; serving does not wait for it.
    void tier.rebuildIndex().then(
      (totals) => totals && log.child({ module: 'bucket' }).info(totals, 'bucket index rebuilt from a listing'),
      (err: unknown) => log.child({ module: 'bucket' }).warn({ err: (err as Error).message }, 'could not list the bucket to rebuild its index; it fills as blobs are read'),
    );
    const evictor = new BucketEvictor({
      bucket: tier.bucket,
      // With backend s3, storage.maxSize and lowWatermark are the bucket's quota.
      maxSize: config.storage.maxSize,
      lowWatermark: config.storage.lowWatermark,
      pinned: () => background.pinnedDigests(),
      // Least recently used by any replica: each one's reads are gathered before choosing.
      access: async () =>
        cluster && peers
          ? gatherAccess({ membership: cluster.membership, requests: peers, local: accessWalk, log: log.child({ module: 'peer-access' }) })
          : localAccess(accessWalk),
      now,
      log,
      onDeleted: (digest) => tier.forget(digest),
    });
    // Multipart uploads older than a day outlive any fill: what a replica killed mid-copy left behind.
    bucketJobs = { evictor, sweepStale: () => tier.bucket.abortStale(BUCKET_STALE_UPLOAD_MS) };
  }
  const background: Background = new Background({ config, storage, router, prefetcher, lists, metrics, log, core, owns, bucket: bucketJobs });
  // One row a minute into the metadata database, whether or not Prometheus metrics are enabled.
  const series = new TimeSeries({
    queries: storage.metadata.series,
    usage: () => storage.metadata.usage.current() ?? { bytes: 0, blobs: 0 },
    now,
    onError: (err) => log.warn({ err: (err as Error).message }, 'could not record the traffic history; its counts are kept for the next minute'),
  });
  storage.blobs.onFillDone = (fill) => {
    metrics?.fillDuration.observe({ upstream: fill.upstream, result: fill.result }, fill.seconds);
    // Bytes read from the blob's owner or the bucket did not cross the WAN: counted by source, not as upstream bytes.
    if (fill.origin === 'upstream') {
      metrics?.upstreamBytes.inc({ upstream: fill.upstream }, fill.bytes);
      series.upstream(fill.bytes);
    }
    metrics?.fillBytes.inc({ source: fill.origin }, fill.bytes);
    if (fill.result === 'committed') background.blobCommitted();
  };
  const usage = new UsageMeter(storage.metadata);
  metrics?.setSources({
    usage: () => usage.current(),
    jobs: () => ({ counts: background.store.counts(), depth: background.store.depth() }),
    upstreams: () => gen.upstreams.counters(),
    activeFills: () => storage.blobs.activeFills,
    hotCacheBytes: () => storage.hot.bytes,
    disk: () => storage.disk.status(),
    ...(cluster ? { clusterMembers: () => cluster.membership.members() } : {}),
    ...(tier ? { bucket: () => ({ ...tier.totals(), reachable: tier.unreachable() === undefined }) } : {}),
    staleTags: () => Object.fromEntries(gen.config.upstreams.filter((u) => u.offline).map((u) => [u.name, storage.metadata.tags.staleCount(u.name, now() - u.tagTTL)])),
  });
  // Jobs interrupted by a crash are requeued before anything new is queued.
  background.start();

  let draining = false;
  let clientAuth: ClientAuthParts | undefined;
  try {
    clientAuth = config.auth ? createClientAuth(config.auth, config.storage.path, storage.metadata.robotTokens, log, now) : undefined;
  } catch (err) {
    await background.stop(0);
    storage.close();
    await upstreams.closeAll();
    throw err;
  }
  let gen: Generation = { config, upstreams, router, clientAuth };
  const robotsWithoutAuth = new RobotTokens(storage.metadata.robotTokens, now);
  let reloader: ConfigReloader | undefined;
  const reload = (trigger: string): ReloadOutcome => {
    if (reloader) return reloader.reload(trigger);
    throw new Error('this mirror was started without a config source to reload');
  };
  // Console sessions outlive reloads (the console app itself is rebuilt with each generation).
  const consoleState = createConsoleState({ sessionTTL: () => gen.config.console.sessionTTL, now });
  const readiness = {
    check: async () => (draining ? 'draining' : storage.check()),
    degraded: () => storage.degraded(),
    detail: () => (reloader?.last ? { configReload: reloader.last } : undefined),
  };
  /** The HTTP side of a generation: the app with its routes, the manifest fast path, trusted proxies. */
  const handlerFor = (g: Generation): RequestHandler => {
    const c = g.config;
    const registries = [...c.upstreams.flatMap((u) => u.registries), ...c.hosted.map((h) => h.name)];
    const auth = g.clientAuth ? { authenticator: g.clientAuth.authenticator, router: g.router, registries } : undefined;
    const v2 = { router: g.router, manifests, blobs, lists, blobWriter, auth, hosted, hostedRegistries: c.hosted.map((h) => h.name), onManifestMiss: (route: Route, digest: string) => background.prefetchOnPull(route, digest) };
    const service = createAdminService({ config: c, storage, upstreams: g.upstreams, background, reload: loadConfig ? () => reload('admin') : undefined, core, log, membership: cluster?.membership });
    const robots = g.clientAuth?.robots ?? robotsWithoutAuth;
    const consoleApp = c.console.enabled
      ? createConsole(
          {
            storage,
            router: () => gen.router,
            upstreams: () => gen.upstreams,
            background,
            config: () => gen.config,
            metrics,
            series,
            admin: service,
            publicHost: (ctx) => ctx.req.header('host') ?? new URL(ctx.req.url).host,
          },
          { token: c.admin.token, authenticator: g.clientAuth?.authenticator, robots, state: consoleState, log: log.child({ module: 'console' }), draining: () => draining },
        )
      : undefined;
    const app = createApp({
      log,
      ...v2,
      readiness,
      console: consoleApp,
      admin: { service, token: c.admin.token, robots },
      ...(metrics ? { metrics } : {}),
      cluster,
      blobAccess: accessWalk,
    });
    return { app, fast: createManifestFastPath(v2), trustedProxies: c.server.trustedProxies };
  };
  const first = handlerFor(gen);
  let server: RunningServer;
  try {
    server = await startServer(first.app, {
      host: config.listen.host,
      port: config.listen.port,
      log,
      headersTimeoutMs: config.server.headersTimeout,
      fast: first.fast,
      tls: config.tls,
      // The other replicas connect directly, without the balancer's PROXY header.
      proxyProtocol: config.server.proxyProtocol && { ...config.server.proxyProtocol, direct: cluster ? (address) => cluster.membership.isMemberAddress(address) : undefined },
      trustedProxies: config.server.trustedProxies,
      ...(metrics ? { metrics } : {}),
      series,
    });
  } catch (err) {
    clientAuth?.close();
    await background.stop(0);
    storage.close();
    await upstreams.closeAll();
    throw err;
  }
  // listen: the address bound (0.0.0.0 = every interface); url: where a client on this host reaches it.
  const bound = server.address.family === 'IPv6' ? `[${server.address.address}]:${server.address.port}` : `${server.address.address}:${server.address.port}`;
  log.info({ listen: bound, url: server.url, upstreams: config.upstreams.map((u) => ({ name: u.name, url: u.url, registries: u.registries })), defaultUpstream: config.defaultUpstream }, 'ocimirror listening');
  cluster?.membership.start();
  // Started once serving: a start-up that fails leaves no timer behind.
  series.start();
  const noAddon = config.server.nativeAddon ? nativeAddonError() : 'switched off by server.nativeAddon: false';
  if (noAddon) log.warn({ reason: noAddon }, 'blob bodies are copied through buffers instead of sendfile, and fills hash on the event loop');
  else if (!blobWriter.sendfile.available) log.warn({ reason: 'switched off by server.sendfile: off' }, 'blob bodies are copied through buffers instead of sendfile');
  /** Replaced upstream clients still serving requests that began before a reload, with the timers that close them. */
  const retiring = new Map<UpstreamClient, NodeJS.Timeout>();
  const retire = (client: UpstreamClient, afterMs: number) => {
    const timer = setTimeout(() => {
      // Requests are done by now; a fill still copying (detached from clients) gets its own deadline.
      void client.close(client.config.fillTimeout).finally(() => retiring.delete(client));
    }, afterMs);
    timer.unref();
    retiring.set(client, timer);
  };
  const running = server;
  if (loadConfig) {
    reloader = new ConfigReloader({
      started: config,
      load: loadConfig,
      log,
      metrics,
      now,
      apply: (next) => {
        const built = buildGeneration(next, gen, running.tlsFiles);
        const handler = handlerFor(built.generation);
        // Everything is built and checked: from here on nothing throws, and new requests see the new generation.
        const previous = gen;
        background.reconfigure(next, built.generation.router);
        gen = built.generation;
        running.setHandler(handler);
        if (built.tls) running.setTls(built.tls.files, built.tls.context);
        const kept = new Set(gen.upstreams.values());
        for (const client of previous.upstreams.values()) if (!kept.has(client)) retire(client, next.server.shutdownGrace);
        if (previous.clientAuth && previous.clientAuth !== gen.clientAuth) previous.clientAuth.close();
      },
    });
  }

  /**
   * The next generation for `next`, taking over what did not change; throws a ConfigError naming
   * every problem (pins on unserved registries, an unreadable htpasswd or TLS file) having closed what it made.
   */
  const buildGeneration = (next: Config, prev: Generation, tlsNow: TlsFiles | undefined) => {
    const issues: string[] = [];
    const pool = createUpstreams(next.upstreams, log, { now, egress: next.egress, slabs, previous: { pool: prev.upstreams, egress: prev.config.egress } });
    const reused = new Set(prev.upstreams.values());
    const router = buildRouter(next, pool);
    issues.push(...background.pinIssues(next, router));
    let auth = prev.clientAuth;
    if (!isDeepStrictEqual(next.auth, prev.config.auth)) {
      auth = undefined;
      const htpasswd = next.auth?.htpasswd;
      try {
        if (htpasswd !== undefined) readFileSync(htpasswd);
      } catch (err) {
        issues.push(`auth.htpasswd: cannot read ${htpasswd}: ${(err as Error).message}`);
      }
      if (next.auth && issues.length === 0) {
        try {
          auth = createClientAuth(next.auth, next.storage.path, storage.metadata.robotTokens, log, now);
        } catch (err) {
          issues.push(`auth: ${(err as Error).message}`);
        }
      }
    }
    let tls: { files: TlsFiles; context: NonNullable<ReturnType<typeof checkTlsFiles>['context']> } | undefined;
    // Whether TLS is on, and whether it asks for client certificates, stay as started (config/config-diff's RESTART_ONLY).
    const sameFiles = (a: TlsFiles, b: TlsFiles) => a.cert === b.cert && a.key === b.key && a.clientCA === b.clientCA;
    if (tlsNow && next.tls && !sameFiles(tlsNow, next.tls)) {
      const files: TlsFiles = { cert: next.tls.cert, key: next.tls.key, ...(next.tls.clientCA ? { clientCA: next.tls.clientCA } : {}) };
      const checked = checkTlsFiles(files);
      issues.push(...checked.issues);
      if (checked.context) tls = { files, context: checked.context };
    }
    if (issues.length > 0) {
      for (const client of pool.values()) if (!reused.has(client)) void client.close(0);
      if (auth && auth !== prev.clientAuth) auth.close();
      throw new ConfigError(issues);
    }
    return { generation: { config: next, upstreams: pool, router, clientAuth: auth } satisfies Generation, tls };
  };

  let stopping: Promise<void> | undefined;
  return {
    url: server.url,
    server,
    storage,
    get upstreams() {
      return gen.upstreams;
    },
    background,
    metrics,
    series,
    cluster,
    blobWriter,
    trimBuffers: () => {
      blobWriter.trim();
      slabs.trim();
    },
    nativeAddon: addon !== undefined,
    get draining() {
      return draining;
    },
    get config() {
      return gen.config;
    },
    reload,
    stop({ graceMs = gen.config.server.shutdownGrace, drainDelayMs = gen.config.server.drainDelay } = {}) {
      stopping ??= (async () => {
        draining = true;
        await cluster?.membership.stop();
        if (drainDelayMs > 0) await new Promise((r) => setTimeout(r, drainDelayMs));
        const deadline = Date.now() + graceMs;
        // Jobs and client pulls drain side by side; interrupted jobs are requeued for the next start.
        const [{ forced }] = await Promise.all([server.close(graceMs), background.stop(graceMs)]);
        if (forced > 0) log.warn({ forced }, 'grace period over: cut connections still in flight');
        // A fill whose client already has its bytes may still be committing: let it land.
        const { aborted } = await storage.blobs.settle(Math.max(0, deadline - Date.now()));
        if (aborted > 0) log.warn({ aborted }, 'grace period over: aborted fills still running (nothing partial committed)');
        // Copies into the bucket finish within the grace too; one cut is an aborted multipart upload gc sweeps.
        await storage.bucket?.settle(Math.max(0, deadline - Date.now()));
        for (const timer of retiring.values()) clearTimeout(timer);
        // A retired client may be closing already with a fill's deadline: wait no longer than the grace left.
        const left = Math.max(0, deadline - Date.now());
        await Promise.race([
          Promise.all([...retiring.keys()].map((client) => client.close(left))),
          new Promise((r) => setTimeout(r, left).unref()),
        ]);
        await gen.upstreams.closeAll();
        await peers?.close();
        gen.clientAuth?.close();
        series.stop();
        storage.close();
        log.info('ocimirror stopped');
      })();
      return stopping;
    },
  };
}

