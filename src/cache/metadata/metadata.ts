/**
 * @module cache/metadata/metadata
 * The cache's SQLite (WAL) metadata database (tables: metadata/schema): the one connection,
 * composed of one typed query module per table (`blobs`, `manifests`, `tags`, `links`, `refs`,
 * `lists`, `pins`, `usage`, `robotTokens`, `series`; `hosted` for hosted_tags and hosted_links;
 * `browse` for the console's paged reads), plus what
 * the request path calls directly: reads, the writes that span tables (a blob with its link; a
 * manifest with its refs, link and tag, cached or pushed, atomically), and
 * batched hits. Access-time bumps are counted in memory and flushed in one transaction, so a
 * cache hit costs one indexed read and no write. Work that must be atomic across modules runs
 * in {@link Metadata.transaction}. The connection itself stays private; the job store, which
 * keeps its `jobs` table in the same file, gets it through {@link Metadata.connectionForJobs}.
 */
import Database from 'better-sqlite3';
import type { Database as DB, Transaction } from 'better-sqlite3';
import { BlobQueries, type BlobRow } from './blob-queries.ts';
import { BrowseQueries } from './browse-queries.ts';
import { BucketQueries } from './bucket-queries.ts';
import { HostedQueries } from './hosted-queries.ts';
import { LinkQueries } from './link-queries.ts';
import { ListQueries, type ListRow } from './list-queries.ts';
import { manifestReferences } from './manifest-references.ts';
import { ManifestQueries, type ManifestRow } from './manifest-queries.ts';
import { PinQueries } from './pin-queries.ts';
import { RefGraph } from './references.ts';
import { RobotTokenQueries } from './robot-token-queries.ts';
import { SeriesQueries } from './series-queries.ts';
import { isDiskFullError } from './disk-full-error.ts';
import { openSchema } from './schema.ts';
import { TagQueries, type TagRow } from './tag-queries.ts';
import { UsageQueries } from './usage-queries.ts';

export type { BlobRow } from './blob-queries.ts';
export type { ManifestRow } from './manifest-queries.ts';
export type { TagRow } from './tag-queries.ts';
export type { ListRow } from './list-queries.ts';

/** What the job store may do with the shared connection: create its own table and prepare its statements. */
export type JobsConnection = Pick<DB, 'exec' | 'prepare' | 'transaction'>;

export interface MetadataOptions {
  /**
   * Flush interval for batched access-time and hit bumps (eviction, gc, the inventory and close
   * flush first, so nothing that reads them sees stale values). 30 s, not 1 s: the hot blobs of a
   * large cache sit on scattered pages, and with 100,000 blobs a flush every second rewrote ~200
   * pages each time and checkpointed the WAL every ~5 s; the cache-hit p99 of that mirror rose from
   * ~2 to 12–13 ms within half a minute of load (bench phase 7).
   */
  flushIntervalMs?: number;
  now?: () => number;
}

type Link = { upstream: string; repo: string };
/** Where a pushed manifest goes: a hosted registry's repository, and the tag it was pushed by. */
type HostedTarget = { registry: string; repo: string; tag: string | undefined };

export class Metadata {
  readonly blobs: BlobQueries;
  readonly manifests: ManifestQueries;
  readonly tags: TagQueries;
  readonly links: LinkQueries;
  readonly refs: RefGraph;
  readonly lists: ListQueries;
  readonly pins: PinQueries;
  readonly usage: UsageQueries;
  readonly robotTokens: RobotTokenQueries;
  readonly hosted: HostedQueries;
  /** Blobs known committed in the shared bucket (storage.backend s3). */
  readonly bucket: BucketQueries;
  /** Per-minute traffic and usage for the console's charts (metrics/time-series). */
  readonly series: SeriesQueries;
  /** Paged reads of repositories and tags for the console. */
  readonly browse: BrowseQueries;
  readonly #db: DB;
  readonly #now: () => number;
  readonly #ping;
  readonly #putBlob: Transaction<(row: BlobRow, link: Link | undefined) => void>;
  readonly #putManifest: Transaction<(row: ManifestRow, link: Link, tag: string | undefined) => void>;
  readonly #putHostedManifest: Transaction<(row: ManifestRow, hosted: HostedTarget) => void>;
  /** digest → pending hit count, flushed in one transaction. */
  readonly #blobHits = new Map<string, number>();
  readonly #manifestHits = new Map<string, number>();
  readonly #timer: NodeJS.Timeout;
  /** Told when a write failed because the disk is full (the owner logs it and makes room). */
  onDiskFull: ((info: { what: string; error: Error }) => void) | undefined;

  constructor(file: string, { flushIntervalMs = 30_000, now = Date.now }: MetadataOptions = {}) {
    this.#now = now;
    const db = new Database(file);
    try {
      openSchema(db);
    } catch (err) {
      db.close();
      throw err;
    }
    this.#db = db;
    this.blobs = new BlobQueries(db);
    this.manifests = new ManifestQueries(db);
    this.tags = new TagQueries(db);
    this.links = new LinkQueries(db);
    this.refs = new RefGraph(db);
    this.lists = new ListQueries(db);
    this.pins = new PinQueries(db);
    this.usage = new UsageQueries(db);
    this.robotTokens = new RobotTokenQueries(db);
    this.hosted = new HostedQueries(db);
    this.bucket = new BucketQueries(db);
    this.series = new SeriesQueries(db);
    this.browse = new BrowseQueries(db);
    this.#ping = db.prepare('SELECT 1');
    this.#putBlob = db.transaction((row: BlobRow, link: Link | undefined) => {
      this.blobs.put(row, this.#now());
      if (link) this.links.put(link.upstream, link.repo, row.digest);
    });
    this.#putManifest = db.transaction((row: ManifestRow, link: Link, tag: string | undefined) => {
      const now = this.#now();
      // The first bytes stored for a digest are kept, so their refs are already recorded.
      if (this.manifests.insert(row, now)) this.refs.add(row.digest, manifestReferences(row.bytes));
      this.links.put(link.upstream, link.repo, row.digest);
      if (tag !== undefined) this.tags.put({ upstream: link.upstream, repo: link.repo, tag }, { digest: row.digest, mediaType: row.mediaType, fetchedAt: now });
    });
    this.#putHostedManifest = db.transaction((row: ManifestRow, { registry, repo, tag }: HostedTarget) => {
      const now = this.#now();
      if (this.manifests.insert(row, now)) this.refs.add(row.digest, manifestReferences(row.bytes));
      this.hosted.putLink(registry, repo, row.digest, 'manifest', now);
      if (tag !== undefined) this.hosted.putTag(registry, repo, tag, { digest: row.digest, mediaType: row.mediaType, pushedAt: now });
    });
    // A full disk must not crash the process from a timer: the hits stay pending until there is room.
    this.#timer = setInterval(() => this.tryWrite('access times', () => this.flush()), flushIntervalMs);
    this.#timer.unref();
  }

  now(): number {
    return this.#now();
  }

  /**
   * Runs `fn` in one transaction (a savepoint when already inside one): everything it writes
   * through any query module commits together or not at all. `fn` must be synchronous.
   */
  transaction<T>(fn: () => T): T {
    return this.#db.transaction(fn)();
  }

  /**
   * The connection, for jobs/job-store only: its `jobs` table lives in this file so a job and the
   * cache never disagree about what was committed, and one connection means one writer.
   */
  connectionForJobs(): JobsConnection {
    return this.#db;
  }

  /** Throws when the database cannot answer (for the readiness check). */
  ping(): void {
    this.#ping.get();
  }

  get open(): boolean {
    return this.#db.open;
  }

  getBlob(digest: string): BlobRow | undefined {
    return this.blobs.get(digest);
  }

  /** Records a committed blob and, in the same transaction, the repository it was fetched for. */
  putBlob(row: BlobRow, link?: Link): void {
    this.#putBlob(row, link);
  }

  deleteBlob(digest: string): void {
    this.blobs.delete(digest);
  }

  allBlobDigests(): string[] {
    return this.blobs.allDigests();
  }

  /** Digests of blobs whose hex starts with `hexPrefix` (a primary-key range scan). */
  blobDigestsWithPrefix(hexPrefix: string): string[] {
    return this.blobs.digestsWithPrefix(hexPrefix);
  }

  /**
   * Every blob's digest and last access (epoch ms), pending hits flushed first so they count.
   * `fn` runs synchronously for each row and must not touch the database.
   */
  eachBlobLastAccess(fn: (digest: string, lastAccess: number) => void): void {
    this.tryWrite('access times', () => this.flush());
    this.blobs.eachLastAccess(fn);
  }

  recordBlobHit(digest: string): void {
    this.#blobHits.set(digest, (this.#blobHits.get(digest) ?? 0) + 1);
  }

  getManifest(digest: string): ManifestRow | undefined {
    return this.manifests.get(digest);
  }

  recordManifestHit(digest: string): void {
    this.#manifestHits.set(digest, (this.#manifestHits.get(digest) ?? 0) + 1);
  }

  /**
   * Stores a verified manifest, what it references (metadata/references), its repository link
   * and (for a tag fetch) the tag, atomically.
   */
  putManifest(row: ManifestRow, link: Link, tag?: string): void {
    this.#putManifest(row, link, tag);
  }

  /**
   * Stores a pushed manifest (its refs with it, as for a cached one), links it into the hosted
   * repository and points `tag` at it, atomically. The caller validated it (proxy/hosted).
   */
  putHostedManifest(row: ManifestRow, target: HostedTarget): void {
    this.#putHostedManifest(row, target);
  }

  getTag(upstream: string, repo: string, tag: string): TagRow | undefined {
    return this.tags.get(upstream, repo, tag);
  }

  touchTag(upstream: string, repo: string, tag: string, at = this.#now()): void {
    this.tags.touch(upstream, repo, tag, at);
  }

  deleteTag(upstream: string, repo: string, tag: string): void {
    this.tags.delete(upstream, repo, tag);
  }

  /** Tags cached for a repository: the tags/list answer when the upstream is unreachable. */
  cachedTags(upstream: string, repo: string): string[] {
    return this.tags.namesIn(upstream, repo);
  }

  hasLink(upstream: string, repo: string, digest: string): boolean {
    return this.links.has(upstream, repo, digest);
  }

  putLink(upstream: string, repo: string, digest: string): void {
    this.links.put(upstream, repo, digest);
  }

  getList(upstream: string, key: string): ListRow | undefined {
    return this.lists.get(upstream, key);
  }

  putList(upstream: string, key: string, row: Omit<ListRow, 'fetchedAt'>): void {
    this.lists.put(upstream, key, { ...row, fetchedAt: this.#now() });
  }

  /**
   * Runs a write the caller can do without (recording what the upstream answered, an access
   * time): on a full disk it is skipped, reported to {@link onDiskFull} and false is returned,
   * so the client still gets its answer. Any other error is thrown.
   */
  tryWrite(what: string, write: () => void): boolean {
    try {
      write();
      return true;
    } catch (err) {
      if (!isDiskFullError(err)) throw err;
      try {
        this.onDiskFull?.({ what, error: err });
      } catch {
        /* the owner's bookkeeping must not fail the caller */
      }
      return false;
    }
  }

  /** Writes batched access-time bumps in one transaction. */
  flush(): void {
    if (this.#blobHits.size === 0 && this.#manifestHits.size === 0) return;
    const now = this.#now();
    this.transaction(() => {
      for (const [digest, n] of this.#blobHits) this.blobs.recordHits(digest, n, now);
      for (const [digest, n] of this.#manifestHits) this.manifests.recordHits(digest, n, now);
    });
    this.#blobHits.clear();
    this.#manifestHits.clear();
  }

  close(): void {
    clearInterval(this.#timer);
    if (!this.#db.open) return;
    // On a full disk the database still closes; the WAL is checkpointed at the next open.
    this.tryWrite('access times', () => this.flush());
    this.tryWrite('checkpoint', () => this.#db.pragma('wal_checkpoint(TRUNCATE)'));
    this.#db.close();
  }
}
