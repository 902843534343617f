/**
 * @module cluster/dns-members
 * The member list of a headless Service (or any name with one A/AAAA record per replica): each
 * address becomes a member URL with self's scheme and port, since address records carry no port.
 * Scaling the StatefulSet or Deployment changes the records, and the next resolution sees it.
 */
import { Resolver } from 'node:dns/promises';

/** The two lookups used, injectable so tests need no DNS server. */
export interface AddressResolver {
  resolve4(name: string): Promise<string[]>;
  resolve6(name: string): Promise<string[]>;
}

/** Answers meaning "this name has no such records": an empty list, not a failure. */
const NO_RECORDS = new Set(['ENODATA', 'ENOTFOUND', 'ENONAME']);

/** A resolver asking `server` ('10.96.0.10', '127.0.0.1:5353', '[::1]:53'), else the system's servers. */
export function createResolver(server: string | undefined, timeoutMs: number): AddressResolver {
  // One try per lookup: the next round asks again, and a slow server must not stall the round.
  const resolver = new Resolver({ timeout: Math.max(1, timeoutMs), tries: 1 });
  if (server !== undefined) resolver.setServers([server]);
  return resolver;
}

/** The member URLs `name` resolves to (sorted); throws when neither lookup got an answer. */
export async function resolveMembers(resolver: AddressResolver, name: string, self: string): Promise<string[]> {
  const base = new URL(self);
  const port = base.port === '' ? '' : `:${base.port}`;
  const [v4, v6] = await Promise.allSettled([resolver.resolve4(name), resolver.resolve6(name)]);
  const answered = [v4, v6].filter((r) => r.status === 'fulfilled' || NO_RECORDS.has((r.reason as NodeJS.ErrnoException | undefined)?.code ?? ''));
  if (answered.length === 0) throw (v4 as PromiseRejectedResult).reason;
  const urls = [
    ...(v4.status === 'fulfilled' ? v4.value : []).map((ip) => `${base.protocol}//${ip}${port}`),
    ...(v6.status === 'fulfilled' ? v6.value : []).map((ip) => `${base.protocol}//[${ip}]${port}`),
  ];
  return [...new Set(urls)].sort();
}
