/**
 * @module test/unit/cluster/dns-members
 * DNS mode: a headless Service's A/AAAA records become member URLs on self's scheme and port,
 * and the membership re-resolves every round, so replicas added or removed are picked up.
 */
import { describe, expect, it } from 'vitest';
import { resolveMembers, type AddressResolver } from '../../../src/cluster/dns-members.ts';
import { createCluster } from '../../../src/cluster/index.ts';
import type { PeerFetch } from '../../../src/cluster/membership.ts';
import { parseConfig } from '../../../src/config/load.ts';
import { captureLog } from '../../helpers/log-capture.ts';

const NAME = 'ocimirror-headless.ns.svc.cluster.local';
const dnsError = (code: string) => Object.assign(new Error(`query ${code} ${NAME}`), { code });

/** A resolver answering from two editable record sets; an Error in a set is thrown. */
function fakeResolver(v4: string[] | Error, v6: string[] | Error = dnsError('ENODATA')) {
  const records = { v4, v6 };
  const answer = async (r: string[] | Error) => {
    if (r instanceof Error) throw r;
    return [...r];
  };
  const resolver: AddressResolver = { resolve4: async () => answer(records.v4), resolve6: async () => answer(records.v6) };
  return { resolver, records };
}

describe('resolveMembers', () => {
  it('makes one member per address, on self\'s scheme and port, IPv6 in brackets', async () => {
    const { resolver } = fakeResolver(['10.0.0.12', '10.0.0.11'], ['fd00::1']);
    expect(await resolveMembers(resolver, NAME, 'https://10.0.0.11:5443')).toEqual(['https://10.0.0.11:5443', 'https://10.0.0.12:5443', 'https://[fd00::1]:5443']);
  });

  it('reads a name without records of one family, or of any, as that many members', async () => {
    expect(await resolveMembers(fakeResolver(['10.0.0.11']).resolver, NAME, 'http://10.0.0.11:5000')).toEqual(['http://10.0.0.11:5000']);
    expect(await resolveMembers(fakeResolver(dnsError('ENOTFOUND'), dnsError('ENOTFOUND')).resolver, NAME, 'http://10.0.0.11:5000')).toEqual([]);
  });

  it('fails when no lookup got an answer, so the previous list is kept', async () => {
    await expect(resolveMembers(fakeResolver(dnsError('ETIMEOUT'), dnsError('ETIMEOUT')).resolver, NAME, 'http://10.0.0.11:5000')).rejects.toThrow('ETIMEOUT');
  });
});

describe('a cluster in DNS mode', () => {
  it('picks up replicas added and removed as the records change, round by round', async () => {
    const config = parseConfig({ cluster: { self: 'http://10.0.0.11:5000', dns: NAME, secret: 's'.repeat(32), healthInterval: '1s' } }, { env: {} });
    const { resolver, records } = fakeResolver(['10.0.0.11', '10.0.0.12']);
    const asked: string[] = [];
    const fetch: PeerFetch = async (url) => {
      asked.push(url);
      return { status: 200, json: async () => ({ self: url.replace('/cluster/v1/health', ''), version: '1', members: [] }) };
    };
    const { membership } = createCluster(config.cluster!, captureLog().logger, { resolver, fetch });
    await membership.round();
    expect(membership.members().map((m) => [m.url, m.state])).toEqual([['http://10.0.0.11:5000', 'up'], ['http://10.0.0.12:5000', 'up']]);
    records.v4 = ['10.0.0.11', '10.0.0.12', '10.0.0.13'];
    await membership.round();
    expect(membership.up()).toEqual(['http://10.0.0.11:5000', 'http://10.0.0.12:5000', 'http://10.0.0.13:5000']);
    records.v4 = ['10.0.0.11', '10.0.0.13'];
    await membership.round();
    expect(membership.members().map((m) => m.url)).toEqual(['http://10.0.0.11:5000', 'http://10.0.0.13:5000']);
    expect(asked).toContain('http://10.0.0.13:5000/cluster/v1/health');
    expect(asked).not.toContain('http://10.0.0.11:5000/cluster/v1/health');
  });
});
