/**
 * @module test/unit/config/config-diff
 * diffConfig names every changed key path as the loader names problems (`upstreams[1].tagTTL`),
 * and separates the keys only a restart applies; withRestartOnlyKept undoes exactly those.
 */
import { describe, expect, it } from 'vitest';
import { RESTART_ONLY, diffConfig, withRestartOnlyKept } from '../../../src/config/config-diff.ts';
import { parseConfig } from '../../../src/config/load.ts';

const HUB = { name: 'hub', url: 'https://registry-1.docker.io', registries: ['docker.io'] };
const GHCR = { name: 'ghcr', url: 'https://ghcr.io', registries: ['ghcr.io'] };
const base = { listen: '127.0.0.1:5000', storage: { path: '/tmp/ocimirror-diff' }, upstreams: [HUB], defaultUpstream: 'hub' };
const parse = (extra: Record<string, unknown> = {}) => parseConfig({ ...base, ...extra });

describe('diffConfig', () => {
  it('finds nothing between two loads of the same config', () => {
    expect(diffConfig(parse(), parse())).toEqual({ changed: [], restartOnly: [] });
  });

  it('names an added upstream by its index and a changed field by its full path', () => {
    const before = parse();
    const after = parse({ upstreams: [{ ...HUB, tagTTL: '10m' }, GHCR] });
    expect(diffConfig(before, after).changed).toEqual(['upstreams[0].tagTTL', 'upstreams[1]']);
    expect(diffConfig(before, after).restartOnly).toEqual([]);
  });

  it('reports a list of plain values as one key', () => {
    const diff = diffConfig(parse(), parse({ upstreams: [{ ...HUB, registries: ['docker.io', 'index.docker.io'] }] }));
    expect(diff.changed).toEqual(['upstreams[0].registries']);
  });

  it('names auth rules and quotas as live changes', () => {
    const rules = (roles: string[]) => ({ auth: { rules: [{ accounts: ['node'], repositories: ['**'], roles }] } });
    const diff = diffConfig(parse(rules(['pull'])), parse({ ...rules(['push']), storage: { path: '/tmp/ocimirror-diff', maxSize: '1GiB' } }));
    expect(diff.changed).toEqual(['storage.maxSize', 'auth.rules[0].roles']);
    expect(diff.restartOnly).toEqual([]);
  });

  it('separates listen, storage.path and jobs as restart-only while reporting them as changed', () => {
    const diff = diffConfig(parse(), parse({ listen: '127.0.0.1:6000', storage: { path: '/tmp/elsewhere' }, jobs: { concurrency: 4 } }));
    expect(diff.changed).toEqual(['listen.port', 'storage.path', 'jobs.concurrency']);
    expect(diff.restartOnly).toEqual(['listen', 'storage.path', 'jobs']);
  });

  it('lets TLS file paths change live but not turning TLS or client certificates on or off', () => {
    const tls = (t: Record<string, string>) => ({ tls: t });
    const one = parse(tls({ cert: '/a.crt', key: '/a.key' }));
    expect(diffConfig(one, parse(tls({ cert: '/b.crt', key: '/b.key' })))).toEqual({ changed: ['tls.cert', 'tls.key'], restartOnly: [] });
    expect(diffConfig(parse(), one).restartOnly).toEqual(['tls']);
    expect(diffConfig(one, parse(tls({ cert: '/a.crt', key: '/a.key', clientCA: '/ca.crt' }))).restartOnly).toEqual(['tls.clientCA']);
    const mtls = parse(tls({ cert: '/a.crt', key: '/a.key', clientCA: '/ca.crt' }));
    expect(diffConfig(mtls, parse(tls({ cert: '/a.crt', key: '/a.key', clientCA: '/other-ca.crt' })))).toEqual({ changed: ['tls.clientCA'], restartOnly: [] });
  });

  it('lists every restart-only key once', () => {
    const paths = RESTART_ONLY.map((k) => k.path);
    expect(new Set(paths).size).toBe(paths.length);
  });
});

describe('withRestartOnlyKept', () => {
  it('keeps the running values of restart-only keys and takes every other change', () => {
    const running = parse();
    const next = parse({ listen: '127.0.0.1:6000', upstreams: [HUB, GHCR], log: { level: 'debug' } });
    const kept = withRestartOnlyKept(running, next);
    expect(kept.listen).toEqual(running.listen);
    expect(kept.log.level).toBe('info');
    expect(kept.upstreams.map((u) => u.name)).toEqual(['hub', 'ghcr']);
    expect(diffConfig(running, kept)).toEqual({ changed: ['upstreams[1]'], restartOnly: [] });
    expect(Object.isFrozen(kept.upstreams[1])).toBe(true);
  });

  it('keeps TLS off when a reload turns it on, and the client CA when a reload drops it', () => {
    expect(withRestartOnlyKept(parse(), parse({ tls: { cert: '/a.crt', key: '/a.key' } })).tls).toBeUndefined();
    const mtls = parse({ tls: { cert: '/a.crt', key: '/a.key', clientCA: '/ca.crt' } });
    expect(withRestartOnlyKept(mtls, parse({ tls: { cert: '/b.crt', key: '/b.key' } })).tls).toEqual({ cert: '/b.crt', key: '/b.key', clientCA: '/ca.crt' });
  });
});
