/**
 * @module upstream/upstream-pool
 * Every configured upstream's client by name, created once at startup and closed together on
 * shutdown.
 */
import { isDeepStrictEqual } from 'node:util';
import type { UpstreamConfig } from '../config/schema.ts';
import { silentLogger, type Logger } from '../util/logger.ts';
import { DIRECT, type EgressConfig } from './transport/egress.ts';
import { UpstreamClient, type UpstreamCounters, type UpstreamStatus } from './upstream-client.ts';
import { SlabPool } from '../util/read-slabs.ts';

/** A Map of upstream name → client, plus the two things done to all of them at once. */
export class UpstreamPool extends Map<string, UpstreamClient> {
  /** A snapshot of every upstream's counters and status, by name, for a metrics collector to read at scrape time. */
  counters(): Record<string, UpstreamCounters & { status: UpstreamStatus }> {
    const out: Record<string, UpstreamCounters & { status: UpstreamStatus }> = {};
    for (const [name, client] of this) out[name] = { ...client.counters, status: client.status() };
    return out;
  }

  /** Closes every client (each waits up to `graceMs` for responses in flight, then destroys them). */
  async closeAll(graceMs?: number): Promise<void> {
    await Promise.all([...this.values()].map((client) => client.close(graceMs)));
  }
}

/**
 * One client per upstream; `egress` is the config's process-wide proxy settings (an upstream's own
 * `proxy` beats them); `slabs` the read slabs every client's blob bodies share. With `previous` (a
 * config reload), a client whose config and egress are unchanged is taken over as it is, keeping
 * its connections, failover and rate-limit state.
 */
export function createUpstreams(
  configs: readonly UpstreamConfig[],
  logger: Logger = silentLogger,
  { now = Date.now, egress = DIRECT, slabs = new SlabPool(), previous }: { now?: () => number; egress?: EgressConfig; slabs?: SlabPool; previous?: { pool: UpstreamPool; egress: EgressConfig } } = {},
): UpstreamPool {
  const pool = new UpstreamPool();
  for (const config of configs) {
    // Config parsing already rejects duplicate names; guard anyway so one client is never orphaned.
    if (pool.has(config.name)) throw new TypeError(`Expected upstream names to be unique, got '${config.name}' twice`);
    const old = previous?.pool.get(config.name);
    const same = old !== undefined && isDeepStrictEqual(old.config, config) && isDeepStrictEqual(previous?.egress, egress);
    pool.set(config.name, same ? old : new UpstreamClient(config, { logger, now, egress, slabs }));
  }
  return pool;
}
