/**
 * @module test/unit/proxy/router
 * Picking the upstream for a request: `?ns=<registry>` (containerd hosts.toml mirrors), a path
 * prefix `/v2/<registry>/<repo>/…` (CRI-O / podman `location = "mirror/docker.io"`), the Host
 * header, then `defaultUpstream` (Docker's registry-mirrors). A first component is a registry
 * host when it contains '.' or ':' or is 'localhost' (distribution/reference's rule). Names
 * are checked against the distribution-spec v1.1 grammar after the prefix is stripped; Docker
 * Hub's implicit `library/` is added to one-component names only when the request named Docker
 * Hub (or named no registry and the default upstream serves Docker Hub), whatever else the
 * upstream serves. An
 * unconfigured registry is NAME_UNKNOWN and never falls through to the default: the mirror is
 * not an open proxy.
 */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.ts';
import type { UpstreamConfig } from '../../../src/config/schema.ts';
import { Router } from '../../../src/proxy/router.ts';
import type { Upstream } from '../../../src/proxy/upstream.ts';
import { thrown } from '../../helpers/thrown.ts';

function stub(config: UpstreamConfig): Upstream {
  return {
    name: config.name,
    config,
    request: async () => {
      throw new Error('routing must not make requests');
    },
  };
}

function upstream(name: string, registries: string[]): Upstream {
  return stub({ name, url: `https://${name}.example`, urls: [`https://${name}.example`], failover: { backoff: 30_000 }, rateLimitFloor: 0, registries, tagTTL: 300_000, timeout: 30_000, bodyTimeout: 30_000, fillTimeout: 3_600_000, auth: undefined, realmHosts: [], proxy: undefined, offline: false });
}

const hub = upstream('dockerhub', ['docker.io']);
const ghcr = upstream('ghcr', ['ghcr.io']);
const local = upstream('local', ['registry.local:5000', 'localhost']);
const ALL = [hub, ghcr, local];

describe('Router: ?ns=', () => {
  const router = new Router(ALL, 'ghcr');

  it('routes to the upstream serving the named registry', () => {
    const route = router.resolve('library/alpine', { ns: 'docker.io' });
    expect(route).toEqual({ upstream: hub, repo: 'library/alpine', prefix: undefined, via: 'ns' });
  });

  it('matches the registry case-insensitively, with a port when the registry has one', () => {
    expect(router.resolve('owner/app', { ns: 'GHCR.io' }).upstream).toBe(ghcr);
    expect(router.resolve('team/app', { ns: 'registry.local:5000' }).upstream).toBe(local);
  });

  it('wins over a Host header that names another registry', () => {
    expect(router.resolve('owner/app', { ns: 'ghcr.io', host: 'docker.io' })).toMatchObject({ upstream: ghcr, via: 'ns' });
  });

  it('does not strip a host-like first component: with ns the whole name is the repository', () => {
    expect(router.resolve('ghcr.io/owner/app', { ns: 'docker.io' })).toMatchObject({ upstream: hub, repo: 'ghcr.io/owner/app', prefix: undefined });
  });

  it('is ignored when empty', () => {
    expect(router.resolve('owner/app', { ns: '' })).toMatchObject({ upstream: ghcr, via: 'default' });
  });

  it('refuses an unconfigured registry with NAME_UNKNOWN instead of using the default', () => {
    const err = thrown(() => router.resolve('library/alpine', { ns: 'quay.io' }));
    expect(err.code).toBe('NAME_UNKNOWN');
    expect(err.status).toBe(404);
    expect(err.message).toBe("registry 'quay.io' is not configured on this mirror");
    expect(err.detail).toEqual({ registry: 'quay.io' });
  });

  it('does not treat a registry with a different port as the same registry', () => {
    expect(thrown(() => router.resolve('team/app', { ns: 'registry.local:6000' })).code).toBe('NAME_UNKNOWN');
    expect(thrown(() => router.resolve('team/app', { ns: 'registry.local' })).code).toBe('NAME_UNKNOWN');
  });
});

describe('Router: path prefix', () => {
  const router = new Router(ALL, 'dockerhub');

  it('strips a registry prefix and routes to its upstream', () => {
    expect(router.resolve('ghcr.io/owner/app')).toEqual({ upstream: ghcr, repo: 'owner/app', prefix: 'ghcr.io', via: 'prefix' });
  });

  it('treats a component with a port, or localhost, as a registry', () => {
    expect(router.resolve('registry.local:5000/team/app')).toMatchObject({ upstream: local, repo: 'team/app', prefix: 'registry.local:5000' });
    expect(router.resolve('localhost/team/app')).toMatchObject({ upstream: local, repo: 'team/app', prefix: 'localhost' });
  });

  it('matches the prefix case-insensitively and reports it as the client wrote it', () => {
    expect(router.resolve('GHCR.IO/owner/app')).toMatchObject({ upstream: ghcr, repo: 'owner/app', prefix: 'GHCR.IO' });
  });

  it('wins over the Host header', () => {
    expect(router.resolve('ghcr.io/owner/app', { host: 'docker.io' })).toMatchObject({ upstream: ghcr, via: 'prefix' });
  });

  it('does not read a plain first component as a registry', () => {
    expect(router.resolve('library/alpine')).toMatchObject({ upstream: hub, repo: 'library/alpine', prefix: undefined, via: 'default' });
    expect(router.resolve('local/app')).toMatchObject({ upstream: hub, via: 'default' });
  });

  it('refuses an unconfigured registry prefix with NAME_UNKNOWN instead of using the default', () => {
    for (const name of ['quay.io/prometheus/node-exporter', 'evil.example.com/x', 'registry.local:6000/team/app', '127.0.0.1:5000/x']) {
      const err = thrown(() => router.resolve(name));
      expect(err.code, name).toBe('NAME_UNKNOWN');
    }
  });
});

describe('Router: Host header', () => {
  const router = new Router(ALL, 'dockerhub');

  it('routes by a Host naming a configured registry', () => {
    expect(router.resolve('owner/app', { host: 'ghcr.io' })).toEqual({ upstream: ghcr, repo: 'owner/app', prefix: undefined, via: 'host' });
  });

  it('ignores the port of the Host header when the registry has none', () => {
    expect(router.resolve('owner/app', { host: 'ghcr.io:5000' })).toMatchObject({ upstream: ghcr, via: 'host' });
  });

  it('matches a Host with its port when the registry is configured with one', () => {
    expect(router.resolve('team/app', { host: 'registry.local:5000' })).toMatchObject({ upstream: local, via: 'host' });
    expect(router.resolve('team/app', { host: 'localhost:5000' })).toMatchObject({ upstream: local, via: 'host' });
  });

  it('matches case-insensitively', () => {
    expect(router.resolve('owner/app', { host: 'GHCR.IO' }).upstream).toBe(ghcr);
  });

  it('falls through to the default for a Host it does not serve (the mirror\'s own name)', () => {
    for (const host of ['mirror.internal:5000', '10.0.0.7:5000', '[::1]:5000', 'registry.local:6000']) {
      expect(router.resolve('library/alpine', { host }), host).toMatchObject({ upstream: hub, via: 'default' });
    }
  });
});

describe('Router: default upstream', () => {
  it('serves names that name no registry', () => {
    const router = new Router(ALL, 'ghcr');
    expect(router.resolve('owner/app')).toEqual({ upstream: ghcr, repo: 'owner/app', prefix: undefined, via: 'default' });
  });

  it('refuses with NAME_UNKNOWN, explaining how to name a registry, when there is no default', () => {
    const router = new Router(ALL);
    const err = thrown(() => router.resolve('library/alpine'));
    expect(err.code).toBe('NAME_UNKNOWN');
    expect(err.message).toMatch(/no defaultUpstream.*\?ns=/);
    expect(err.detail).toEqual({ name: 'library/alpine' });
    expect(router.resolve('owner/app', { ns: 'ghcr.io' }).upstream).toBe(ghcr);
  });

  it('has no default when defaultUpstream names no upstream', () => {
    expect(thrown(() => new Router(ALL, 'missing').resolve('alpine')).code).toBe('NAME_UNKNOWN');
  });

  it('has no default and no registries with no upstreams at all', () => {
    const router = new Router([]);
    expect(thrown(() => router.resolve('alpine')).code).toBe('NAME_UNKNOWN');
    expect(thrown(() => router.resolve('alpine', { ns: 'docker.io' })).code).toBe('NAME_UNKNOWN');
  });
});

describe('Router: Docker Hub library/ expansion', () => {
  it('adds library/ to a one-component name on a Docker Hub upstream, however it was chosen', () => {
    const router = new Router(ALL, 'dockerhub');
    expect(router.resolve('alpine').repo).toBe('library/alpine');
    expect(router.resolve('alpine', { ns: 'docker.io' }).repo).toBe('library/alpine');
    expect(router.resolve('docker.io/alpine').repo).toBe('library/alpine');
    expect(router.resolve('alpine', { host: 'docker.io' }).repo).toBe('library/alpine');
  });

  it('leaves names with a namespace alone', () => {
    const router = new Router(ALL, 'dockerhub');
    expect(router.resolve('library/alpine').repo).toBe('library/alpine');
    expect(router.resolve('bitnami/redis').repo).toBe('bitnami/redis');
    expect(router.resolve('docker.io/library/alpine').repo).toBe('library/alpine');
  });

  it('never adds library/ on other upstreams', () => {
    const router = new Router(ALL, 'ghcr');
    expect(router.resolve('alpine').repo).toBe('alpine');
    expect(router.resolve('alpine', { ns: 'ghcr.io' }).repo).toBe('alpine');
    expect(router.resolve('registry.local:5000/alpine').repo).toBe('alpine');
    expect(router.resolve('alpine', { host: 'localhost' }).repo).toBe('alpine');
  });

  describe('on an upstream that serves Docker Hub under other names too', () => {
    const shared = upstream('shared', ['docker.io', 'registry.example', 'mirror.example:5000']);
    const router = new Router([shared, ghcr], 'shared');

    it('adds library/ when the request names Docker Hub', () => {
      expect(router.resolve('multi', { ns: 'docker.io' })).toMatchObject({ upstream: shared, repo: 'library/multi', via: 'ns' });
      expect(router.resolve('docker.io/multi')).toMatchObject({ upstream: shared, repo: 'library/multi', via: 'prefix' });
      expect(router.resolve('multi', { host: 'docker.io' })).toMatchObject({ upstream: shared, repo: 'library/multi', via: 'host' });
      expect(router.resolve('multi', { host: 'DOCKER.IO:443' })).toMatchObject({ repo: 'library/multi', via: 'host' });
    });

    it('leaves the name alone when the request names another of its registries', () => {
      expect(router.resolve('multi', { ns: 'registry.example' })).toMatchObject({ upstream: shared, repo: 'multi', via: 'ns' });
      expect(router.resolve('registry.example/multi')).toMatchObject({ upstream: shared, repo: 'multi', via: 'prefix' });
      expect(router.resolve('mirror.example:5000/multi')).toMatchObject({ upstream: shared, repo: 'multi', via: 'prefix' });
      expect(router.resolve('multi', { host: 'registry.example' })).toMatchObject({ upstream: shared, repo: 'multi', via: 'host' });
      expect(router.resolve('multi', { host: 'mirror.example:5000' })).toMatchObject({ upstream: shared, repo: 'multi', via: 'host' });
    });

    it('adds library/ to a request naming no registry, since the default upstream serves Docker Hub', () => {
      expect(router.resolve('multi')).toMatchObject({ upstream: shared, repo: 'library/multi', via: 'default' });
      expect(router.resolve('multi', { host: 'mirror.internal' })).toMatchObject({ repo: 'library/multi', via: 'default' });
    });

    it('does not add library/ to a request naming no registry when the default upstream does not serve Docker Hub', () => {
      const other = new Router([shared, ghcr], 'ghcr');
      expect(other.resolve('app')).toMatchObject({ upstream: ghcr, repo: 'app', via: 'default' });
      expect(other.resolve('multi', { ns: 'registry.example' }).repo).toBe('multi');
      expect(other.resolve('multi', { ns: 'docker.io' }).repo).toBe('library/multi');
    });
  });

  it('recognises Docker Hub by any of its names', () => {
    for (const reg of ['index.docker.io', 'registry-1.docker.io']) {
      const router = new Router([upstream('hub', [reg])], 'hub');
      expect(router.resolve('alpine').repo, reg).toBe('library/alpine');
    }
  });
});

describe('Router: invalid names', () => {
  const router = new Router(ALL, 'dockerhub');

  it('refuses names outside the grammar with NAME_INVALID, on every route', () => {
    const cases: Array<[string, { ns?: string; host?: string }]> = [
      ['Alpine', {}],
      ['library/Alpine', { ns: 'docker.io' }],
      ['a//b', { host: 'ghcr.io' }],
      ['%2e%2e/etc', {}],
      ['library/../../etc', {}],
      ['', {}],
      ['/alpine', {}],
      ['alpine/', {}],
      ['ghcr.io/Owner/App', {}],
      ['ghcr.io/../x', {}],
      ['ghcr.io/', {}],
      ['docker.io//alpine', {}],
      ['x'.repeat(256), {}],
    ];
    for (const [name, hints] of cases) {
      const err = thrown(() => router.resolve(name, hints));
      expect(err.code, JSON.stringify([name, hints])).toBe('NAME_INVALID');
      expect(err.status).toBe(400);
    }
  });

  it('validates the name after the prefix is stripped, so the prefix itself may contain a port', () => {
    expect(router.resolve('registry.local:5000/team/app').repo).toBe('team/app');
    expect(thrown(() => router.resolve('registry.local:5000/team:app')).code).toBe('NAME_INVALID');
  });

  it('refuses a traversal whose first component looks like a host before it reaches any upstream', () => {
    for (const name of ['../etc/passwd', './x', '.../x']) {
      const err = thrown(() => router.resolve(name));
      expect(['NAME_INVALID', 'NAME_UNKNOWN'], name).toContain(err.code);
    }
  });
});

describe('Router with a config from parseConfig', () => {
  it('routes containerd\'s ?ns=docker.io to a single --upstream pointing at Docker Hub\'s API host', () => {
    const config = parseConfig({}, { env: {}, overrides: { upstream: 'https://registry-1.docker.io' } });
    const router = new Router(config.upstreams.map(stub), config.defaultUpstream);
    expect(router.resolve('alpine', { ns: 'docker.io' })).toMatchObject({ repo: 'library/alpine', via: 'ns' });
    expect(router.resolve('docker.io/library/alpine')).toMatchObject({ repo: 'library/alpine', via: 'prefix' });
    expect(router.resolve('alpine')).toMatchObject({ repo: 'library/alpine', via: 'default' });
    expect(thrown(() => router.resolve('alpine', { ns: 'ghcr.io' })).code).toBe('NAME_UNKNOWN');
  });

  it('routes the bundled upstreams by the registries they list', () => {
    const config = parseConfig(
      {
        upstreams: [
          { name: 'dockerhub', url: 'https://registry-1.docker.io', registries: ['docker.io'] },
          { name: 'k8s', url: 'https://registry.k8s.io', registries: ['registry.k8s.io'] },
        ],
        defaultUpstream: 'dockerhub',
      },
      { env: {} },
    );
    const router = new Router(config.upstreams.map(stub), config.defaultUpstream);
    expect(router.resolve('registry.k8s.io/pause')).toMatchObject({ repo: 'pause', via: 'prefix' });
    expect(router.resolve('pause', { ns: 'registry.k8s.io' }).upstream.name).toBe('k8s');
    expect(router.resolve('pause').upstream.name).toBe('dockerhub');
  });
});

describe('Router: hosted registries', () => {
  const router = new Router(ALL, 'dockerhub', ['registry.internal', 'push.local:5000']);

  it('routes a hosted registry by path prefix, ns and Host, never adding library/', () => {
    expect(router.locate('registry.internal/team/app')).toEqual({ kind: 'hosted', route: { registry: 'registry.internal', repo: 'team/app', prefix: 'registry.internal', via: 'prefix' } });
    expect(router.locate('app', { ns: 'registry.internal' })).toEqual({ kind: 'hosted', route: { registry: 'registry.internal', repo: 'app', prefix: undefined, via: 'ns' } });
    expect(router.locate('team/app', { host: 'push.local:5000' })).toMatchObject({ kind: 'hosted', route: { registry: 'push.local:5000', repo: 'team/app', via: 'host' } });
  });

  it('still routes upstream names to their upstream', () => {
    expect(router.locate('docker.io/alpine')).toMatchObject({ kind: 'upstream', route: { upstream: hub, repo: 'library/alpine' } });
  });

  it('refuses to resolve a hosted registry as an upstream (nothing to fetch from)', () => {
    expect(thrown(() => router.resolve('registry.internal/team/app')).code).toBe('NAME_UNKNOWN');
  });

  it('sends names without a registry to a hosted default', () => {
    const airGapped = new Router([], 'registry.internal', ['registry.internal']);
    expect(airGapped.locate('team/app')).toMatchObject({ kind: 'hosted', route: { registry: 'registry.internal', repo: 'team/app', via: 'default' } });
    expect(thrown(() => airGapped.locate('../x')).code).toBe('NAME_INVALID');
  });
});
