/**
 * @module test/unit/cluster/cluster-config
 * The `cluster:` section: a member list (peers or dns, not both), a secret of at least 32
 * characters from the file or the environment, member URLs reduced to their origin, and every
 * problem reported under its key path.
 */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.ts';
import { diffConfig } from '../../../src/config/config-diff.ts';
import { configIssues } from '../../helpers/thrown.ts';

const SECRET = 'cluster-secret-0123456789abcdef-0123';
const SELF = 'http://10.0.0.11:5000';
const PEERS = [SELF, 'http://10.0.0.12:5000'];
const parse = (cluster: unknown, env: Record<string, string> = {}) => parseConfig({ cluster }, { env });

describe('config: cluster', () => {
  it('is absent unless configured: a single node', () => {
    expect(parseConfig({}, { env: {} }).cluster).toBeUndefined();
  });

  it('fills defaults and normalises member URLs to their origin', () => {
    expect(parse({ self: 'http://10.0.0.11:5000/', peers: ['HTTP://10.0.0.11:5000', 'http://10.0.0.12:5000/', 'http://10.0.0.12:5000'], secret: SECRET }).cluster).toEqual({
      self: SELF,
      peers: PEERS,
      dns: undefined,
      dnsServer: undefined,
      secret: SECRET,
      healthInterval: 2000,
      failAfter: 3,
    });
  });

  it('reads the secret and self from the environment variables named', () => {
    const c = parse({ selfEnv: 'SELF', dns: 'Ocimirror-Headless.ns.svc.cluster.local.', dnsServer: '127.0.0.1:5353', secretEnv: 'S', healthInterval: '200ms', failAfter: 2 }, { S: SECRET, SELF: 'http://10.0.0.12:5000' }).cluster!;
    expect(c).toMatchObject({ self: 'http://10.0.0.12:5000', dns: 'ocimirror-headless.ns.svc.cluster.local', dnsServer: '127.0.0.1:5353', secret: SECRET, healthInterval: 200, failAfter: 2 });
  });

  it('reports every problem under its key path', () => {
    expect(configIssues(() => parse({}))).toEqual(['cluster.self is required (or selfEnv)', 'cluster.peers is required (or dns)', 'cluster.secretEnv is required (or secret)']);
    expect(configIssues(() => parse({ self: SELF, peers: PEERS, dns: 'x.test', secret: SECRET }))).toEqual(['cluster.peers: expected peers or dns, not both']);
    expect(configIssues(() => parse({ self: SELF, peers: ['http://10.0.0.12:5000'], secret: SECRET }))).toEqual([
      'cluster.peers: expected to list self (http://10.0.0.11:5000): every replica must see the same members',
    ]);
    expect(configIssues(() => parse({ self: SELF, peers: PEERS, secret: 'short' }))).toEqual(['cluster.secret: expected at least 32 characters']);
    expect(configIssues(() => parse({ self: SELF, peers: PEERS, secretEnv: 'S' }, { S: 'short' }))).toEqual(['cluster.secretEnv: S holds fewer than 32 characters']);
    expect(configIssues(() => parse({ self: SELF, peers: PEERS, secretEnv: 'S' }))).toEqual(['cluster.secretEnv: environment variable S is not set']);
    expect(configIssues(() => parse({ self: 'http://10.0.0.11:5000/mirror', peers: ['ftp://x'], secret: SECRET, failAfter: 0, healthInterval: 'soon' }))).toEqual([
      'cluster.self: expected a scheme, host and port such as http://10.0.0.11:5000 (no path)',
      'cluster.peers[0]: expected a scheme, host and port such as http://10.0.0.11:5000 (no path)',
      "cluster.healthInterval: expected a duration such as '30s', '5m' or '7d', got 'soon'",
      'cluster.failAfter: Too small: expected number to be >=1',
    ]);
    expect(configIssues(() => parse({ self: SELF, dns: 'x.test', dnsServer: 'dns.example', secret: SECRET }))).toEqual([
      'cluster.dnsServer: expected a DNS server address such as 10.96.0.10, 127.0.0.1:5353 or [::1]:53',
    ]);
    expect(configIssues(() => parse({ self: SELF, peers: PEERS, dnsServer: '10.96.0.10', secret: SECRET }))).toEqual(['cluster.dnsServer: applies only with dns']);
  });

  it('never repeats the secret in a problem', () => {
    const text = configIssues(() => parse({ self: SELF, peers: ['http://10.0.0.12:5000'], secret: 'short-secret', bogus: 1 })).join('\n');
    expect(text).not.toContain('short-secret');
  });

  it('needs a restart to change', () => {
    const a = parse({ self: SELF, peers: PEERS, secret: SECRET });
    const b = parse({ self: SELF, peers: [...PEERS, 'http://10.0.0.13:5000'], secret: SECRET });
    expect(diffConfig(a, b).restartOnly).toEqual(['cluster']);
  });
});
