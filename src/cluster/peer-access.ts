/**
 * @module cluster/peer-access
 * When each blob was last read anywhere in the cluster. Every replica records its own hits (the
 * `blobs.last_access` column); eviction from the shared bucket must order blobs by the latest hit
 * on any replica, so the owner of the eviction asks every other member up for its view
 * (GET /cluster/v1/access) and keeps the latest time per digest.
 *
 * A member that does not answer in time, or answers something unreadable, is skipped and logged:
 * its recent hits are then unknown, so a blob only it reads lately may be evicted. That costs the
 * next read a refetch from the upstream, never an error.
 */
import type { Logger } from '../util/logger.ts';
import { readBody } from '../util/read-body.ts';
import type { MembershipView } from './job-owner.ts';
import { discardPeerBody, type PeerRequest, type PeerResponse } from './peer-request.ts';

/** Where a replica serves its view: `{ "blobs": [[digest, lastAccessMs], ...] }`. */
export const PEER_ACCESS_PATH = '/cluster/v1/access';

/** Walks this replica's blobs (Metadata.eachBlobLastAccess): synchronous, one call per blob. */
export type AccessWalk = (fn: (digest: string, lastAccess: number) => void) => void;

/** Deadline of one member's answer: 100,000 blobs are ~9 MB of JSON, well under a second on loopback. */
export const ACCESS_WAIT_MS = 30_000;

/** The largest answer read from a member: ~90 bytes a blob, so room for about 700,000 blobs. */
export const ACCESS_MAX_BYTES = 64 * 1024 * 1024;

/**
 * The endpoint's body, built in one synchronous pass: the walk holds the database connection, so
 * it must not span event-loop turns where a request would find the connection busy. 100,000 blobs
 * make 9 MB of JSON in ~0.1–0.2 s, once per eviction run and peer.
 */
export function accessBody(walk: AccessWalk): string {
  const blobs: Array<[string, number]> = [];
  walk((digest, lastAccess) => blobs.push([digest, lastAccess]));
  return JSON.stringify({ blobs });
}

/** This replica's view as a map. */
export function localAccess(walk: AccessWalk): Map<string, number> {
  const map = new Map<string, number>();
  walk((digest, lastAccess) => map.set(digest, lastAccess));
  return map;
}

export interface GatherAccessOptions {
  membership: MembershipView;
  requests: Pick<PeerRequest, 'get'>;
  local: AccessWalk;
  log: Logger;
  waitMs?: number;
  maxBytes?: number;
  signal?: AbortSignal;
}

/** The cluster's view: per digest, the latest access this replica or any member up that answered knows of. */
export async function gatherAccess(opts: GatherAccessOptions): Promise<Map<string, number>> {
  const merged = localAccess(opts.local);
  const self = opts.membership.self;
  const others = opts.membership.up().filter((url) => url !== self);
  const maxBytes = opts.maxBytes ?? ACCESS_MAX_BYTES;
  const answers = await Promise.all(
    others.map(async (member) => ({ member, outcome: await opts.requests.get(`${member}${PEER_ACCESS_PATH}`, opts.waitMs ?? ACCESS_WAIT_MS, (res) => readAccess(res, maxBytes), opts.signal) })),
  );
  let asked = 0;
  for (const { member, outcome } of answers) {
    if (!outcome.ok) {
      opts.log.warn({ member, err: outcome.reason }, 'cluster member did not tell its blob access times; eviction orders without its recent hits');
      continue;
    }
    asked++;
    for (const [digest, at] of outcome.value) {
      const known = merged.get(digest);
      if (known === undefined || at > known) merged.set(digest, at);
    }
  }
  opts.log.debug({ members: others.length + 1, answered: asked + 1, blobs: merged.size }, 'blob access times gathered');
  return merged;
}

/** A member's answer as [digest, lastAccess] pairs; entries of the wrong shape are dropped, a wrong body throws. */
async function readAccess(res: PeerResponse, maxBytes: number): Promise<Array<[string, number]>> {
  if (res.status !== 200) {
    discardPeerBody(res);
    throw new Error(`answered ${res.status}`);
  }
  const body = JSON.parse((await readBody(res.body, maxBytes)).toString('utf8')) as { blobs?: unknown } | null;
  if (!Array.isArray(body?.blobs)) throw new Error('answered without a blobs list');
  const pairs: Array<[string, number]> = [];
  for (const entry of body.blobs as unknown[]) {
    if (Array.isArray(entry) && typeof entry[0] === 'string' && typeof entry[1] === 'number' && Number.isFinite(entry[1])) pairs.push([entry[0], entry[1]]);
  }
  return pairs;
}
