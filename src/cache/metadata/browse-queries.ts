/**
 * @module cache/metadata/browse-queries
 * Paged reads of the cache's repositories and tags for the console (cached ones by upstream from
 * `links` and `tags`, hosted ones by registry from `hosted_links` and `hosted_tags`). Every read
 * is bounded: repository names are enumerated by skipping through a primary-key index one
 * distinct name per seek (a "skip scan" as a recursive query), never by grouping every row, and
 * tags are read a page at a time after a key. Statements are prepared once.
 */
import type { Database, Statement } from 'better-sqlite3';

/** Which side of the cache a repository belongs to: an upstream (pull-through) or a hosted registry. */
export type BrowseSource = 'upstream' | 'hosted';

export interface RepositoryStats {
  tags: number;
  /** Blobs linked to the repository that are committed, and their bytes. */
  blobs: number;
  bytes: number;
}

export interface BrowseTagRow {
  tag: string;
  digest: string;
  mediaType: string;
  /** When the upstream last confirmed the tag (cached) or it was pushed (hosted), epoch ms. */
  at: number;
  /** Size of the manifest's bytes; null when the manifest is not cached. */
  manifestSize: number | null;
  /** When the manifest was last served, epoch ms; null when it is not cached. */
  lastAccess: number | null;
}

type Names = { key: string; after: string };

interface Statements {
  names: Statement<[Names & { limit: number }], string>;
  search: Statement<[Names & { q: string }], string>;
  count: Statement<[Names], number>;
  stats: Statement<[{ key: string; repos: string }], RepositoryStats & { repo: string }>;
  tags: Statement<[string, string, string, number], BrowseTagRow>;
}

/**
 * Distinct repository names of one upstream (registry) after @after, from both its links and tags
 * tables: each step of the recursion is one index seek, so a page costs `limit` seeks per table.
 */
function namesAfter(links: string, tags: string, key: string, limit: string): string {
  const next = (table: string, from: string) => `(SELECT repo FROM ${table} WHERE ${key} = @key AND repo > ${from} ORDER BY repo LIMIT 1)`;
  return `WITH RECURSIVE
    a(repo) AS (SELECT ${next(links, '@after')} UNION ALL SELECT ${next(links, 'a.repo')} FROM a WHERE a.repo IS NOT NULL ${limit}),
    b(repo) AS (SELECT ${next(tags, '@after')} UNION ALL SELECT ${next(tags, 'b.repo')} FROM b WHERE b.repo IS NOT NULL ${limit}),
    names(repo) AS (SELECT repo FROM a WHERE repo IS NOT NULL UNION SELECT repo FROM b WHERE repo IS NOT NULL)`;
}

function prepare(db: Database, source: BrowseSource): Statements {
  const [links, tags, key, at] = source === 'upstream' ? ['links', 'tags', 'upstream', 'fetched_at'] : ['hosted_links', 'hosted_tags', 'registry', 'pushed_at'];
  return {
    names: db.prepare<[Names & { limit: number }], string>(`${namesAfter(links, tags, key, 'LIMIT @limit')} SELECT repo FROM names ORDER BY repo LIMIT @limit`).pluck(),
    search: db.prepare<[Names & { q: string }], string>(`${namesAfter(links, tags, key, '')} SELECT repo FROM names WHERE instr(lower(repo), lower(@q)) > 0 ORDER BY repo`).pluck(),
    count: db.prepare<[Names], number>(`${namesAfter(links, tags, key, '')} SELECT COUNT(*) FROM names`).pluck(),
    // A page's repositories in one statement (a JSON array of names), each an index seek per table.
    stats: db.prepare(`SELECT r.value AS repo, (SELECT COUNT(*) FROM ${tags} t WHERE t.${key} = @key AND t.repo = r.value) AS tags,
        COUNT(b.digest) AS blobs, COALESCE(SUM(b.size), 0) AS bytes
      FROM json_each(@repos) r LEFT JOIN ${links} l ON l.${key} = @key AND l.repo = r.value LEFT JOIN blobs b ON b.digest = l.digest
      GROUP BY r.value`),
    tags: db.prepare(`SELECT t.tag, t.digest, t.media_type AS mediaType, t.${at} AS at, m.size AS manifestSize, m.last_access AS lastAccess
      FROM ${tags} t LEFT JOIN manifests m ON m.digest = t.digest
      WHERE t.${key} = ? AND t.repo = ? AND t.tag > ? ORDER BY t.tag LIMIT ?`),
  };
}

export class BrowseQueries {
  readonly #by: Record<BrowseSource, Statements>;

  constructor(db: Database) {
    this.#by = { upstream: prepare(db, 'upstream'), hosted: prepare(db, 'hosted') };
  }

  /** Up to `limit` repository names of `name` after `after`, in order. */
  repositories(source: BrowseSource, name: string, after: string, limit: number): string[] {
    return this.#by[source].names.all({ key: name, after, limit });
  }

  /**
   * Repository names of `name` after `after` containing `q` (case-insensitive), up to `limit`:
   * every distinct name is visited once (one seek each), the rows behind them never.
   */
  search(source: BrowseSource, name: string, q: string, after: string, limit: number): string[] {
    const found: string[] = [];
    for (const repo of this.#by[source].search.iterate({ key: name, after, q })) {
      found.push(repo);
      if (found.length >= limit) break;
    }
    return found;
  }

  /** How many repositories `name` has (one seek per distinct name). */
  repositoryCount(source: BrowseSource, name: string): number {
    return this.#by[source].count.get({ key: name, after: '' }) ?? 0;
  }

  stats(source: BrowseSource, name: string, repo: string): RepositoryStats {
    return this.statsOf(source, name, [repo]).get(repo) ?? { tags: 0, blobs: 0, bytes: 0 };
  }

  /** Each repository's tag count and the committed blobs linked to it, for a whole page at once. */
  statsOf(source: BrowseSource, name: string, repos: readonly string[]): Map<string, RepositoryStats> {
    if (repos.length === 0) return new Map();
    const rows = this.#by[source].stats.all({ key: name, repos: JSON.stringify(repos) });
    return new Map(rows.map(({ repo, tags, blobs, bytes }) => [repo, { tags, blobs, bytes }]));
  }

  /** Up to `limit` tags of a repository after `after`, in order, with their manifest's size and last access. */
  tags(source: BrowseSource, name: string, repo: string, after: string, limit: number): BrowseTagRow[] {
    return this.#by[source].tags.all(name, repo, after, limit);
  }
}
