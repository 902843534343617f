/**
 * @module cluster
 * The cluster of replicas configured under `cluster:`: the member list (static or DNS), the shared
 * secret, and the membership that health-checks the others. This slice knows who is there and
 * who answers; nothing is routed by it yet.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../util/logger.ts';
import { packageRoot } from '../util/package-root.ts';
import { createResolver, resolveMembers, type AddressResolver } from './dns-members.ts';
import { Membership, type PeerFetch } from './membership.ts';
import { PeerAuth } from './peer-auth.ts';

export { Membership, HEALTH_PATH, type MemberState, type MemberStateName, type HealthAnswer } from './membership.ts';
export { PeerAuth } from './peer-auth.ts';
export { owners, owner } from './rendezvous.ts';

export type ClusterConfig = NonNullable<Config['cluster']>;

export interface Cluster {
  readonly membership: Membership;
  readonly auth: PeerAuth;
  /** This replica's version, as the health endpoint reports it. */
  readonly version: string;
}

export interface ClusterOptions {
  now?: () => number;
  fetch?: PeerFetch;
  resolver?: AddressResolver;
}

export function createCluster(config: ClusterConfig, log: Logger, opts: ClusterOptions = {}): Cluster {
  const auth = new PeerAuth(config.secret);
  const clusterLog = log.child({ module: 'cluster' });
  let members: () => Promise<readonly string[]> | readonly string[];
  if (config.dns !== undefined) {
    const resolver = opts.resolver ?? createResolver(config.dnsServer, config.healthInterval);
    const name = config.dns;
    members = () => resolveMembers(resolver, name, config.self);
  } else {
    const peers = config.peers ?? [];
    members = () => peers;
  }
  const membership = new Membership({
    self: config.self,
    members,
    auth,
    intervalMs: config.healthInterval,
    failAfter: config.failAfter,
    log: clusterLog,
    ...(opts.now ? { now: opts.now } : {}),
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
  });
  return { membership, auth, version: packageVersion() };
}

let version: string | undefined;
/** package.json's version, read once; 'unknown' where the package root cannot be found. */
function packageVersion(): string {
  if (version === undefined) {
    const root = packageRoot();
    try {
      version = root ? String((JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version?: unknown }).version ?? 'unknown') : 'unknown';
    } catch {
      version = 'unknown';
    }
  }
  return version;
}
