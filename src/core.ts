/**
 * @module core
 * The mirror without its HTTP server: storage, upstream clients, the router (upstreams and hosted
 * registries) and the proxy policy over them. `ocimirror serve` (mirror.ts) serves it; `sync`,
 * `export` and `import` run on it in-process, on a data directory no mirror is using, so a
 * command-line copy takes exactly the path a pull through the mirror takes.
 */
import type { Config } from './config/schema.ts';
import { openStorage, type Storage } from './cache/storage.ts';
import { nativeAddon } from './util/native-addon.ts';
import { createUpstreams, type UpstreamPool } from './upstream/index.ts';
import { SlabPool } from './util/read-slabs.ts';
import { Router } from './proxy/router.ts';
import { ManifestProxy, type PeerTagSource } from './proxy/manifest-proxy.ts';
import { BlobProxy, type PeerSource } from './proxy/blob-proxy.ts';
import { ListProxy } from './proxy/list-proxy.ts';
import { Prefetcher } from './proxy/prefetch.ts';
import { HostedContent } from './proxy/hosted/hosted-repository.ts';
import { HostedBlobs } from './proxy/hosted/hosted-blobs.ts';
import type { Logger } from './util/logger.ts';

export interface Hosted {
  readonly content: HostedContent;
  readonly blobs: HostedBlobs;
}

export interface MirrorCore {
  readonly config: Config;
  readonly storage: Storage;
  readonly upstreams: UpstreamPool;
  readonly router: Router;
  readonly manifests: ManifestProxy;
  readonly blobs: BlobProxy;
  readonly lists: ListProxy;
  readonly prefetcher: Prefetcher;
  readonly hosted: Hosted;
  /** Read buffers of upstream bodies, trimmed by the idle collector. */
  readonly slabs: SlabPool;
  /** Closes upstream connections and the database. */
  close(): Promise<void>;
}

export interface CoreOptions {
  /** The clock for TTLs and metadata timestamps (tests move it). */
  now?: () => number;
}

/** The router for a config: its upstreams' registries and its hosted registries. */
export function buildRouter(config: Config, upstreams: UpstreamPool): Router {
  return new Router([...upstreams.values()], config.defaultUpstream, config.hosted.map((h) => h.name));
}

/** The hosted side over a storage: `config` is read per call, so a reload's quotas apply at once. */
export function createHosted(storage: Storage, log: Logger, quota: (registry: string) => number, now: () => number): Hosted {
  const content = new HostedContent({ metadata: storage.metadata, blobs: storage.blobs, log, now, maxSize: quota });
  return { content, blobs: new HostedBlobs({ uploads: storage.uploads, content, blobs: storage.blobs, maxSize: quota }) };
}

export interface Proxies {
  readonly manifests: ManifestProxy;
  readonly blobs: BlobProxy;
  readonly lists: ListProxy;
  readonly prefetcher: Prefetcher;
}

/** Where a cluster replica asks a tag's or a blob's owner before the upstream (absent: the upstream only). */
export interface PeerSources {
  peerTags?: PeerTagSource | undefined;
  peerSource?: PeerSource | undefined;
}

/** The proxy policy over a storage, the same for a served mirror and an in-process command. */
export function createProxies(storage: Storage, log: Logger, now: () => number, peers: PeerSources = {}): Proxies {
  const manifests = new ManifestProxy({ metadata: storage.metadata, hot: storage.hot, log, now, peerTags: peers.peerTags, bucket: storage.bucket });
  const blobs = new BlobProxy({ blobs: storage.blobs, hot: storage.hot, peerSource: peers.peerSource, bucket: storage.bucket });
  return { manifests, blobs, lists: new ListProxy({ metadata: storage.metadata, now }), prefetcher: new Prefetcher({ manifests, blobs }) };
}

/** A hosted registry's quota in bytes under `config` (0 = none). */
export function hostedQuota(config: Config, registry: string): number {
  return config.hosted.find((h) => h.name === registry)?.maxSize ?? 0;
}

export async function openCore(config: Config, log: Logger, { now = Date.now }: CoreOptions = {}): Promise<MirrorCore> {
  const addon = config.server.nativeAddon ? nativeAddon() : undefined;
  const storage = await openStorage({ path: config.storage.path, hotCacheBytes: config.hotCache.maxSize, log, now, nativeAddon: addon, bucket: config.storage.backend === 's3' ? config.storage.s3 : undefined });
  const slabs = new SlabPool();
  const upstreams = createUpstreams(config.upstreams, log, { now, egress: config.egress, slabs });
  return {
    config,
    storage,
    upstreams,
    router: buildRouter(config, upstreams),
    ...createProxies(storage, log, now),
    hosted: createHosted(storage, log, (registry) => hostedQuota(config, registry), now),
    slabs,
    async close() {
      await storage.blobs.settle(5_000);
      await upstreams.closeAll();
      storage.close();
    },
  };
}
