/**
 * @module mirror
 * The composition root: config → storage → upstream clients → proxy policy → HTTP server, and
 * the graceful stop that undoes it. Used by `ocimirror serve` and by the integration tests, so
 * tests run exactly what operators run.
 */
import type { Config } from './config/schema.ts';
import { openStorage, type Storage } from './cache/storage.ts';
import { createUpstreams, type UpstreamPool } from './upstream/index.ts';
import { Router } from './proxy/router.ts';
import { ManifestProxy } from './proxy/manifest-proxy.ts';
import { BlobProxy } from './proxy/blob-proxy.ts';
import { ListProxy } from './proxy/list-proxy.ts';
import { createApp } from './http/app.ts';
import { startServer, type RunningServer } from './http/server.ts';
import type { Logger } from './util/logger.ts';

export interface Mirror {
  readonly url: string;
  readonly server: RunningServer;
  readonly storage: Storage;
  readonly upstreams: UpstreamPool;
  /** True once a stop began: /readyz answers 503. */
  readonly draining: boolean;
  /** Drains (readiness 503, optional delay, close listener, finish in-flight pulls) and closes storage. */
  stop(opts?: { graceMs?: number; drainDelayMs?: number }): Promise<void>;
}

export async function startMirror(config: Config, log: Logger): Promise<Mirror> {
  const storage = await openStorage({ path: config.storage.path, hotCacheBytes: config.hotCache.maxSize, log });
  const upstreams = createUpstreams(config.upstreams, log);
  let draining = false;
  const app = createApp({
    log,
    router: new Router([...upstreams.values()], config.defaultUpstream),
    manifests: new ManifestProxy({ metadata: storage.metadata, hot: storage.hot, log }),
    blobs: new BlobProxy({ blobs: storage.blobs, hot: storage.hot }),
    lists: new ListProxy({ metadata: storage.metadata }),
    readiness: { check: async () => (draining ? 'draining' : storage.check()) },
  });
  let server: RunningServer;
  try {
    server = await startServer(app, { host: config.listen.host, port: config.listen.port, log });
  } catch (err) {
    storage.close();
    await upstreams.closeAll();
    throw err;
  }
  log.info({ url: server.url, upstreams: config.upstreams.map((u) => ({ name: u.name, url: u.url, registries: u.registries })), defaultUpstream: config.defaultUpstream }, 'ocimirror listening');
  let stopping: Promise<void> | undefined;
  return {
    url: server.url,
    server,
    storage,
    upstreams,
    get draining() {
      return draining;
    },
    stop({ graceMs = config.server.shutdownGrace, drainDelayMs = config.server.drainDelay } = {}) {
      stopping ??= (async () => {
        draining = true;
        if (drainDelayMs > 0) await new Promise((r) => setTimeout(r, drainDelayMs));
        const deadline = Date.now() + graceMs;
        const { forced } = await server.close(graceMs);
        if (forced > 0) log.warn({ forced }, 'grace period over: cut connections still in flight');
        // A fill whose client already has its bytes may still be committing: let it land.
        const { aborted } = await storage.blobs.settle(Math.max(0, deadline - Date.now()));
        if (aborted > 0) log.warn({ aborted }, 'grace period over: aborted fills still running (nothing partial committed)');
        await upstreams.closeAll();
        storage.close();
        log.info('ocimirror stopped');
      })();
      return stopping;
    },
  };
}
