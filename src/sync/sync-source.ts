/**
 * @module sync/sync-source
 * Where a sync fetches a registry's images from. A registry a configured upstream serves is
 * fetched through that upstream (its URLs, credentials, failover and rate-limit budget), so
 * what lands in the cache is exactly what a pull would have stored. A registry no upstream serves
 * can be copied only into a hosted registry: a client for it is built from the sync file's entry
 * (https://<registry>, http when `tls-verify: false`, the entry's credentials) and closed when
 * the sync ends. Into the cache such a registry is refused: nothing could ever pull it back out.
 */
import { createConfigSchema, type UpstreamConfig } from '../config/schema.ts';
import type { MirrorCore } from '../core.ts';
import type { Route } from '../proxy/router.ts';
import { RegistryError } from '../registry/errors.ts';
import { assertName } from '../registry/reference.ts';
import { createUpstreams, type UpstreamPool } from '../upstream/index.ts';
import type { Logger } from '../util/logger.ts';
import type { SyncDest } from './sync-dest.ts';
import type { SyncSource } from './sync-file.ts';

/** A registry the sync cannot fetch from, with what to change. */
export class SyncSourceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SyncSourceError';
  }
}

const DOCKER_HUB = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** The upstream config for a registry no upstream serves, through the config schema so every default applies. */
export function temporaryUpstreamConfig(source: SyncSource): UpstreamConfig {
  const host = DOCKER_HUB.has(source.registry) ? 'registry-1.docker.io' : source.registry;
  const raw = {
    upstreams: [
      {
        name: `sync-${source.registry.replace(/[^a-z0-9]+/g, '-')}`,
        url: `${source.tlsVerify ? 'https' : 'http'}://${host}`,
        registries: [source.registry],
        ...(source.credentials ? { auth: { username: source.credentials.username, password: source.credentials.password } } : {}),
      },
    ],
  };
  const parsed = createConfigSchema({}).safeParse(raw);
  if (!parsed.success) throw new SyncSourceError(`registry ${source.registry}: cannot build an upstream for it: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  return parsed.data.upstreams[0] as UpstreamConfig;
}

export class SyncSources {
  readonly #core: Pick<MirrorCore, 'router' | 'config' | 'slabs'>;
  readonly #dest: SyncDest;
  readonly #log: Logger;
  readonly #temporary = new Map<string, UpstreamPool>();

  constructor(core: Pick<MirrorCore, 'router' | 'config' | 'slabs'>, dest: SyncDest, log: Logger) {
    this.#core = core;
    this.#dest = dest;
    this.#log = log;
  }

  /** The route for `repo` (as the file writes it) of the source's registry; SyncSourceError when there is none. */
  route(source: SyncSource, repo: string): Route {
    const temporary = this.#temporary.get(source.registry);
    if (temporary) return this.#temporaryRoute(temporary, source, repo);
    let located;
    try {
      located = this.#core.router.locate(`${source.registry}/${repo}`);
    } catch (err) {
      if (!(err instanceof RegistryError) || err.code !== 'NAME_UNKNOWN') throw err;
      return this.#unserved(source, repo);
    }
    if (located.kind === 'hosted') {
      throw new SyncSourceError(`registry ${source.registry} is a hosted registry of this mirror: it has no upstream to copy from`);
    }
    return located.route;
  }

  /** What the file's entry asks that a configured upstream does not take from it. */
  notes(source: SyncSource): string[] {
    const notes: string[] = [];
    const configured = !this.#temporary.has(source.registry);
    if (configured && source.credentials) notes.push(`${source.registry}.credentials: not used; the configured upstream's auth applies`);
    if (configured && !source.tlsVerify) notes.push(`${source.registry}.tls-verify: not used; the configured upstream's url applies`);
    if (source.certDir !== undefined) notes.push(`${source.registry}.cert-dir: not used; TLS is verified with the system CAs (NODE_EXTRA_CA_CERTS adds more)`);
    return notes;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#temporary.values()].map((pool) => pool.closeAll(1_000)));
    this.#temporary.clear();
  }

  #unserved(source: SyncSource, repo: string): Route {
    if (this.#dest.kind === 'cache') {
      throw new SyncSourceError(
        `registry ${source.registry} is not served by any configured upstream, so the cache cannot hold it: ` +
          `add '${source.registry}' to an upstream's registries (upstreams[].registries) in the mirror config, or sync it into a hosted registry with --dest`,
      );
    }
    const config = temporaryUpstreamConfig(source);
    const pool = createUpstreams([config], this.#log, { egress: this.#core.config.egress, slabs: this.#core.slabs });
    this.#temporary.set(source.registry, pool);
    return this.#temporaryRoute(pool, source, repo);
  }

  #temporaryRoute(pool: UpstreamPool, source: SyncSource, repo: string): Route {
    const upstream = [...pool.values()][0];
    if (!upstream) throw new SyncSourceError(`registry ${source.registry}: no upstream client`);
    const name = DOCKER_HUB.has(source.registry) && !repo.includes('/') ? `library/${repo}` : repo;
    return { upstream, repo: assertName(name), prefix: undefined, via: 'default' };
  }
}
