/**
 * @module mirror
 * The composition root: config → storage → upstream clients → proxy policy → background jobs →
 * HTTP server, and the graceful stop that undoes it. Used by `ocimirror serve` and by the
 * integration tests, so tests run exactly what operators run.
 */
import type { Config } from './config/schema.ts';
import { openStorage, type Storage } from './cache/storage.ts';
import { nativeAddon, nativeAddonError } from './util/native-addon.ts';
import { BlobWriter } from './http/body/blob-writer.ts';
import { SendfilePolicy } from './http/body/sendfile.ts';
import { UsageMeter } from './cache/metadata/usage.ts';
import { createUpstreams, type UpstreamPool } from './upstream/index.ts';
import { SlabPool } from './util/read-slabs.ts';
import { Router, type Route } from './proxy/router.ts';
import { ManifestProxy } from './proxy/manifest-proxy.ts';
import { BlobProxy } from './proxy/blob-proxy.ts';
import { ListProxy } from './proxy/list-proxy.ts';
import { Prefetcher } from './proxy/prefetch.ts';
import { Background } from './jobs/background.ts';
import { createAdminService } from './admin/admin-service.ts';
import { Metrics } from './metrics/metrics.ts';
import { createApp } from './http/app.ts';
import { startServer, type RunningServer } from './http/server.ts';
import { createManifestFastPath } from './http/v2-routes.ts';
import type { Logger } from './util/logger.ts';
import { createClientAuth } from './auth/index.ts';
import { RobotTokens } from './auth/robot-tokens.ts';

export interface Mirror {
  readonly url: string;
  readonly server: RunningServer;
  readonly storage: Storage;
  readonly upstreams: UpstreamPool;
  readonly background: Background;
  readonly metrics: Metrics | undefined;
  /** Writes blob bodies to clients; owns the read-buffer pool the idle collector trims. */
  readonly blobWriter: BlobWriter;
  /** Drops the free buffers of the process's pools (blob writer's reads, bulk bodies' slabs); the idle collector calls it. */
  trimBuffers(): void;
  /** Whether the native addon is in use (sendfile, fills' hash-and-write): loaded, and server.nativeAddon on. */
  readonly nativeAddon: boolean;
  /** True once a stop began: /readyz answers 503. */
  readonly draining: boolean;
  /** Drains (readiness 503, optional delay, close listener, finish in-flight pulls) and closes storage. */
  stop(opts?: { graceMs?: number; drainDelayMs?: number }): Promise<void>;
}

export interface MirrorOptions {
  /** The clock for tag TTLs, stale backoff, listing freshness, token lifetimes and metadata timestamps (tests move it). */
  now?: () => number;
}

export async function startMirror(config: Config, log: Logger, { now = Date.now }: MirrorOptions = {}): Promise<Mirror> {
  // server.nativeAddon: false leaves the addon unloaded: buffered copies and Node's hashing (the pure-Node path).
  const addon = config.server.nativeAddon ? nativeAddon() : undefined;
  const storage = await openStorage({ path: config.storage.path, hotCacheBytes: config.hotCache.maxSize, log, now, nativeAddon: addon });
  const blobWriter = new BlobWriter({ sendfile: new SendfilePolicy(config.server.sendfile, addon) });
  const slabs = new SlabPool();
  const upstreams = createUpstreams(config.upstreams, log, { now, egress: config.egress, slabs });
  const metrics = config.metrics.enabled ? new Metrics() : undefined;
  const router = new Router([...upstreams.values()], config.defaultUpstream);
  const manifests = new ManifestProxy({ metadata: storage.metadata, hot: storage.hot, log, now });
  const blobs = new BlobProxy({ blobs: storage.blobs, hot: storage.hot });
  const lists = new ListProxy({ metadata: storage.metadata, now });
  const background = new Background({ config, storage, router, prefetcher: new Prefetcher({ manifests, blobs }), lists, metrics, log });
  storage.blobs.onFillDone = (fill) => {
    metrics?.fillDuration.observe({ upstream: fill.upstream, result: fill.result }, fill.seconds);
    metrics?.upstreamBytes.inc({ upstream: fill.upstream }, fill.bytes);
    if (fill.result === 'committed') background.blobCommitted();
  };
  const usage = new UsageMeter(storage.metadata);
  metrics?.setSources({
    usage: () => usage.current(),
    jobs: () => ({ counts: background.store.counts(), depth: background.store.depth() }),
    upstreams: () => upstreams.counters(),
    activeFills: () => storage.blobs.activeFills,
    hotCacheBytes: () => storage.hot.bytes,
    disk: () => storage.disk.status(),
  });
  // Jobs interrupted by a crash are requeued before anything new is queued.
  background.start();

  let draining = false;
  let clientAuth: ReturnType<typeof createClientAuth> | undefined;
  try {
    clientAuth = config.auth ? createClientAuth(config.auth, config.storage.path, storage.metadata.robotTokens, log, now) : undefined;
  } catch (err) {
    await background.stop(0);
    storage.close();
    await upstreams.closeAll();
    throw err;
  }
  const auth = clientAuth ? { authenticator: clientAuth.authenticator, router, registries: config.upstreams.flatMap((u) => u.registries) } : undefined;
  const robots = clientAuth?.robots ?? new RobotTokens(storage.metadata.robotTokens, now);
  const v2 = { router, manifests, blobs, lists, blobWriter, auth, onManifestMiss: (route: Route, digest: string) => background.prefetchOnPull(route, digest) };
  const app = createApp({
    log,
    ...v2,
    readiness: { check: async () => (draining ? 'draining' : storage.check()), degraded: () => storage.degraded() },
    admin: { service: createAdminService({ config, storage, upstreams, background }), token: config.admin.token, robots },
    ...(metrics ? { metrics } : {}),
  });
  let server: RunningServer;
  try {
    server = await startServer(app, {
      host: config.listen.host,
      port: config.listen.port,
      log,
      headersTimeoutMs: config.server.headersTimeout,
      fast: createManifestFastPath(v2),
      tls: config.tls,
      proxyProtocol: config.server.proxyProtocol,
      trustedProxies: config.server.trustedProxies,
      ...(metrics ? { metrics } : {}),
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
  const noAddon = config.server.nativeAddon ? nativeAddonError() : 'switched off by server.nativeAddon: false';
  if (noAddon) log.warn({ reason: noAddon }, 'blob bodies are copied through buffers instead of sendfile, and fills hash on the event loop');
  else if (!blobWriter.sendfile.available) log.warn({ reason: 'switched off by server.sendfile: off' }, 'blob bodies are copied through buffers instead of sendfile');
  let stopping: Promise<void> | undefined;
  return {
    url: server.url,
    server,
    storage,
    upstreams,
    background,
    metrics,
    blobWriter,
    trimBuffers: () => {
      blobWriter.trim();
      slabs.trim();
    },
    nativeAddon: addon !== undefined,
    get draining() {
      return draining;
    },
    stop({ graceMs = config.server.shutdownGrace, drainDelayMs = config.server.drainDelay } = {}) {
      stopping ??= (async () => {
        draining = true;
        if (drainDelayMs > 0) await new Promise((r) => setTimeout(r, drainDelayMs));
        const deadline = Date.now() + graceMs;
        // Jobs and client pulls drain side by side; interrupted jobs are requeued for the next start.
        const [{ forced }] = await Promise.all([server.close(graceMs), background.stop(graceMs)]);
        if (forced > 0) log.warn({ forced }, 'grace period over: cut connections still in flight');
        // A fill whose client already has its bytes may still be committing: let it land.
        const { aborted } = await storage.blobs.settle(Math.max(0, deadline - Date.now()));
        if (aborted > 0) log.warn({ aborted }, 'grace period over: aborted fills still running (nothing partial committed)');
        await upstreams.closeAll();
        clientAuth?.close();
        storage.close();
        log.info('ocimirror stopped');
      })();
      return stopping;
    },
  };
}
