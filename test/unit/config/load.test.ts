/**
 * @module test/unit/config/load
 * parseConfig / loadConfig: defaults < YAML file < OCIMIRROR_* environment < command-line flags,
 * parsed from `unknown` into a deeply frozen Config. Every problem names its key path
 * (`upstreams[0].url is required`), as distribution's configuration parser and verdaccio's
 * config do, and all problems are reported together rather than one per start attempt.
 * Registry names follow distribution/reference's host rule ('docker.io', 'myreg.local:5000').
 */
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/config/config-error.ts';
import { DEFAULT_CONFIG_FILE, loadConfig, parseConfig, parseListen, type ParseOptions } from '../../../src/config/load.ts';
import type { Config } from '../../../src/config/schema.ts';
import { configIssues } from '../../helpers/thrown.ts';

const HUB = { name: 'dockerhub', url: 'https://registry-1.docker.io', registries: ['docker.io'] };
const GHCR = { name: 'ghcr', url: 'https://ghcr.io', registries: ['ghcr.io'] };

const issuesOf = configIssues;

const parse = (raw: unknown, opts: ParseOptions = {}): Config => parseConfig(raw, { env: {}, ...opts });

describe('parseConfig: defaults', () => {
  it('fills every option of an empty config with its documented default', () => {
    const config = parse({});
    expect(config).toEqual({
      listen: { host: '0.0.0.0', port: 5000 },
      storage: { path: path.resolve('./data'), maxSize: 0, lowWatermark: 0.9, maxAge: 0, backend: 'filesystem', localCache: { maxSize: 0 } },
      prefetch: { onPull: true, platforms: [], images: [] },
      pin: [],
      jobs: { concurrency: 2, maxAttempts: 5, retryBackoff: 5000 },
      gc: { interval: 3_600_000, grace: 3_600_000, uploadMaxAge: 86_400_000 },
      sync: [],
      admin: { token: undefined },
      cluster: undefined,
      console: { enabled: true, sessionTTL: 12 * 3_600_000 },
      metrics: { enabled: true },
      hotCache: { maxSize: 64 * 2 ** 20 },
      upstreams: [],
      hosted: [],
      defaultUpstream: undefined,
      egress: { httpProxy: undefined, httpsProxy: undefined, noProxy: '' },
      server: { shutdownGrace: 30_000, drainDelay: 0, headersTimeout: 30_000, sendfile: 'fills', nativeAddon: true, idleGc: true, trustedProxies: [] },
      log: { level: 'info' },
    });
  });

  it('fills an upstream\'s optional fields and normalises its url and names', () => {
    const config = parse({
      upstreams: [{ name: 'hub', url: 'https://registry-1.docker.io///', registries: ['Docker.IO', 'registry.local:5000'], realmHosts: ['Auth.Docker.IO'] }],
    });
    expect(config.upstreams).toEqual([
      {
        name: 'hub',
        url: 'https://registry-1.docker.io',
        urls: ['https://registry-1.docker.io'],
        failover: { backoff: 30_000 },
        rateLimitFloor: 0,
        registries: ['docker.io', 'registry.local:5000'],
        tagTTL: 300_000,
        timeout: 30_000,
        bodyTimeout: 30_000,
        fillTimeout: 3_600_000,
        auth: undefined,
        realmHosts: ['auth.docker.io'],
        offline: false,
      },
    ]);
  });

  it('converts durations and sizes written as strings or numbers', () => {
    const config = parse({
      hotCache: { maxSize: '1GiB' },
      server: { shutdownGrace: '1m', drainDelay: 2500 },
      upstreams: [{ name: 'a', url: 'http://127.0.0.1:5000', tagTTL: '0', timeout: '1.5s', bodyTimeout: '10s', fillTimeout: '2h' }],
    });
    expect(config.hotCache.maxSize).toBe(2 ** 30);
    expect(config.server).toMatchObject({ shutdownGrace: 60_000, drainDelay: 2500 });
    expect(config.upstreams[0]).toMatchObject({ tagTTL: 0, timeout: 1500, bodyTimeout: 10_000, fillTimeout: 7_200_000 });
  });

  it('resolves a relative storage path against the working directory', () => {
    expect(parse({ storage: { path: 'cache/dir' } }).storage.path).toBe(path.resolve(process.cwd(), 'cache/dir'));
    expect(parse({ storage: { path: '/srv/ocimirror' } }).storage.path).toBe('/srv/ocimirror');
  });

  it('reads IPv4, IPv6 and port-only listen addresses', () => {
    expect(parse({ listen: '127.0.0.1:8080' }).listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(parse({ listen: '[::]:5000' }).listen).toEqual({ host: '::', port: 5000 });
    expect(parse({ listen: ':0' }).listen).toEqual({ host: '0.0.0.0', port: 0 });
  });
});

describe('parseConfig: the result', () => {
  it('is deeply frozen', () => {
    const config = parse({ upstreams: [{ ...HUB, auth: { username: 'u', password: 'p' } }], defaultUpstream: 'dockerhub' });
    const objects: unknown[] = [config, config.listen, config.storage, config.hotCache, config.upstreams, config.upstreams[0], config.upstreams[0]?.registries, config.upstreams[0]?.auth, config.upstreams[0]?.realmHosts, config.server, config.log];
    for (const o of objects) expect(Object.isFrozen(o)).toBe(true);
    expect(() => {
      (config.listen as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => {
      (config.upstreams[0]?.registries as string[]).push('evil.io');
    }).toThrow(TypeError);
  });

  it('does not change or hold on to the object it was given', () => {
    const raw = { upstreams: [{ ...HUB }], defaultUpstream: 'dockerhub' };
    const snapshot = structuredClone(raw);
    const config = parse(raw, { env: { OCIMIRROR_LISTEN: '127.0.0.1:1' }, overrides: { upstream: 'https://x.io' } });
    expect(raw).toEqual(snapshot);
    expect(Object.isFrozen(raw.upstreams[0])).toBe(false);
    raw.upstreams[0]!.name = 'changed';
    expect(config.upstreams[0]?.name).toBe('default');
  });
});

describe('parseConfig: environment overrides', () => {
  it('lets each variable override its key in the file', () => {
    const config = parse(
      { listen: '0.0.0.0:5000', storage: { path: './data' }, log: { level: 'info' }, hotCache: { maxSize: '64MiB' }, server: { shutdownGrace: '30s' }, upstreams: [HUB, GHCR], defaultUpstream: 'dockerhub' },
      {
        env: {
          OCIMIRROR_LISTEN: '127.0.0.1:6000',
          OCIMIRROR_DATA: '/var/cache/ocimirror',
          OCIMIRROR_LOG_LEVEL: 'debug',
          OCIMIRROR_HOT_CACHE_MAX_SIZE: '1MiB',
          OCIMIRROR_SHUTDOWN_GRACE: '5s',
          OCIMIRROR_DEFAULT_UPSTREAM: 'ghcr',
        },
      },
    );
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 6000 });
    expect(config.storage.path).toBe('/var/cache/ocimirror');
    expect(config.log.level).toBe('debug');
    expect(config.hotCache.maxSize).toBe(2 ** 20);
    expect(config.server.shutdownGrace).toBe(5000);
    expect(config.defaultUpstream).toBe('ghcr');
    expect(config.upstreams.map((u) => u.name)).toEqual(['dockerhub', 'ghcr']);
  });

  it('keeps the other keys of a section an override touches', () => {
    const config = parse({ server: { shutdownGrace: '10s', drainDelay: '3s' } }, { env: { OCIMIRROR_SHUTDOWN_GRACE: '1s' } });
    expect(config.server).toMatchObject({ shutdownGrace: 1000, drainDelay: 3000 });
  });

  it('ignores variables that are set but empty', () => {
    const config = parse({ listen: '127.0.0.1:7000', upstreams: [HUB], defaultUpstream: 'dockerhub' }, {
      env: { OCIMIRROR_LISTEN: '', OCIMIRROR_UPSTREAM: '', OCIMIRROR_DEFAULT_UPSTREAM: '', OCIMIRROR_HOT_CACHE_MAX_SIZE: '' },
    });
    expect(config.listen.port).toBe(7000);
    expect(config.upstreams.map((u) => u.name)).toEqual(['dockerhub']);
    expect(config.defaultUpstream).toBe('dockerhub');
  });

  it('ignores variables it does not know, including the rest of process.env', () => {
    const config = parse({}, { env: { OCIMIRROR_NOPE: 'x', PATH: '/usr/bin', HOME: '/root' } });
    expect(config).toEqual(parse({}));
  });

  it('reports a bad value from the environment under the key it overrides', () => {
    expect(issuesOf(() => parse({}, { env: { OCIMIRROR_HOT_CACHE_MAX_SIZE: 'big' } }))).toEqual([
      "hotCache.maxSize: expected a size such as '512MiB' or '50GiB', got 'big'",
    ]);
    expect(issuesOf(() => parse({}, { env: { OCIMIRROR_SHUTDOWN_GRACE: 'later' } }))[0]).toMatch(/^server\.shutdownGrace: /);
    expect(issuesOf(() => parse({}, { env: { OCIMIRROR_LOG_LEVEL: 'loud' } }))[0]).toMatch(/^log\.level: /);
  });
});

describe('parseConfig: flag overrides', () => {
  it('beat both the file and the environment', () => {
    const config = parse(
      { listen: '0.0.0.0:5000', storage: { path: '/file' }, log: { level: 'warn' } },
      {
        env: { OCIMIRROR_LISTEN: '127.0.0.1:6000', OCIMIRROR_DATA: '/env', OCIMIRROR_LOG_LEVEL: 'debug', OCIMIRROR_UPSTREAM: 'https://env.example' },
        overrides: { listen: '127.0.0.1:7000', data: '/flag', logLevel: 'error', upstream: 'https://flag.example' },
      },
    );
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 7000 });
    expect(config.storage.path).toBe('/flag');
    expect(config.log.level).toBe('error');
    expect(config.upstreams.map((u) => u.url)).toEqual(['https://flag.example']);
  });

  it('leave the environment in charge of keys they do not set', () => {
    const config = parse({}, { env: { OCIMIRROR_LISTEN: '127.0.0.1:6000' }, overrides: { listen: undefined, data: '/flag' } });
    expect(config.listen.port).toBe(6000);
    expect(config.storage.path).toBe('/flag');
  });
});

describe('parseConfig: a single --upstream', () => {
  it('replaces the file\'s upstreams with one default upstream serving its own host', () => {
    const config = parse({ upstreams: [HUB, GHCR], defaultUpstream: 'ghcr' }, { overrides: { upstream: 'http://registry.local:5000/' } });
    expect(config.upstreams).toHaveLength(1);
    expect(config.upstreams[0]).toMatchObject({ name: 'default', url: 'http://registry.local:5000', registries: ['registry.local:5000'] });
    expect(config.defaultUpstream).toBe('default');
  });

  it('comes from OCIMIRROR_UPSTREAM too', () => {
    const config = parse({ upstreams: [HUB], defaultUpstream: 'dockerhub' }, { env: { OCIMIRROR_UPSTREAM: 'https://ghcr.io' } });
    expect(config.upstreams.map((u) => [u.name, u.url, u.registries])).toEqual([['default', 'https://ghcr.io', ['ghcr.io']]]);
    expect(config.defaultUpstream).toBe('default');
  });

  it('serves Docker Hub under the name clients use for it, docker.io', () => {
    for (const url of ['https://registry-1.docker.io', 'https://index.docker.io', 'https://docker.io']) {
      const registries = parse({}, { overrides: { upstream: url } }).upstreams[0]?.registries;
      expect(registries, url).toContain('docker.io');
      expect(registries, url).toContain(new URL(url).host);
      expect(new Set(registries).size, url).toBe(registries?.length);
    }
  });

  it('stays the default when OCIMIRROR_DEFAULT_UPSTREAM names an upstream of the file (a flag beats the environment)', () => {
    const config = parse({ upstreams: [HUB, GHCR], defaultUpstream: 'dockerhub' }, {
      env: { OCIMIRROR_DEFAULT_UPSTREAM: 'ghcr' },
      overrides: { upstream: 'https://mirror.example' },
    });
    expect(config.defaultUpstream).toBe('default');
  });

  it('serves the registry names given by --registry or OCIMIRROR_REGISTRY instead of the URL\'s host', () => {
    const flag = parse({}, { overrides: { upstream: 'http://127.0.0.1:5001', registry: 'docker.io' } });
    expect(flag.upstreams.map((u) => [u.name, u.url, u.registries])).toEqual([['default', 'http://127.0.0.1:5001', ['docker.io']]]);
    const env = parse({}, { env: { OCIMIRROR_UPSTREAM: 'http://127.0.0.1:5001', OCIMIRROR_REGISTRY: 'docker.io, Quay.io' } });
    expect(env.upstreams[0]?.registries).toEqual(['docker.io', 'quay.io']);
  });

  it('refuses --registry without --upstream rather than ignoring it', () => {
    expect(issuesOf(() => parse({ upstreams: [HUB] }, { overrides: { registry: 'docker.io' } }))).toEqual([
      '--registry / OCIMIRROR_REGISTRY: only applies together with --upstream / OCIMIRROR_UPSTREAM',
    ]);
    expect(issuesOf(() => parse({ upstreams: [HUB] }, { env: { OCIMIRROR_REGISTRY: 'docker.io' } }))).toHaveLength(1);
  });

  it('reports a bad --registry under the key it sets', () => {
    expect(issuesOf(() => parse({}, { overrides: { upstream: 'http://127.0.0.1:5001', registry: 'http://docker.io' } }))).toEqual([
      'upstreams[0].registries[0]: expected a registry host such as docker.io or myreg.local:5000',
    ]);
  });

  it('reports an invalid URL under upstreams[0].url', () => {
    expect(issuesOf(() => parse({}, { overrides: { upstream: 'not a url' } }))).toEqual(['upstreams[0].url: expected an http(s) URL such as https://registry-1.docker.io']);
    expect(issuesOf(() => parse({}, { overrides: { upstream: 'ftp://example.com' } }))[0]).toMatch(/^upstreams\[0\]\.url: /);
  });
});

describe('parseConfig: errors name the key path', () => {
  it('refuses a config that is not a mapping', () => {
    for (const raw of [null, undefined, 'listen: 1', 42, [], [{ listen: ':1' }]]) {
      expect(issuesOf(() => parse(raw)), JSON.stringify(raw)).toEqual(['the config must be a mapping of keys to values']);
    }
  });

  it('says which required upstream key is missing', () => {
    expect(issuesOf(() => parse({ upstreams: [{ name: 'a' }] }))).toEqual(['upstreams[0].url is required']);
    expect(issuesOf(() => parse({ upstreams: [HUB, { url: 'https://x.io' }] }))).toEqual(['upstreams[1].name is required']);
  });

  it('does not call a value of the wrong type missing', () => {
    const [issue] = issuesOf(() => parse({ upstreams: [{ name: 'a', url: 5 }] }));
    expect(issue).toMatch(/^upstreams\[0\]\.url: /);
    expect(issue).not.toMatch(/required/);
  });

  it('names unknown keys at every level', () => {
    expect(issuesOf(() => parse({ lisen: ':5000' }))).toEqual(["config: unknown key(s) 'lisen'"]);
    expect(issuesOf(() => parse({ storage: { path: 'x', size: '1GiB' } }))).toEqual(["storage: unknown key(s) 'size'"]);
    expect(issuesOf(() => parse({ upstreams: [{ ...HUB, tagTtl: '5m' }] }))).toEqual(["upstreams[0]: unknown key(s) 'tagTtl'"]);
    expect(issuesOf(() => parse({ upstreams: [{ ...HUB, auth: { user: 'x', password: 'y' } }] }))).toEqual([
      "upstreams[0].auth: unknown key(s) 'user'",
      'upstreams[0].auth.username is required',
    ]);
  });

  it('quotes the bad duration and where it was', () => {
    expect(issuesOf(() => parse({ upstreams: [{ ...HUB, tagTTL: 'soon' }] }))).toEqual([
      "upstreams[0].tagTTL: expected a duration such as '30s', '5m' or '7d', got 'soon'",
    ]);
    expect(issuesOf(() => parse({ server: { drainDelay: -5 } }))[0]).toMatch(/^server\.drainDelay: expected a duration/);
  });

  it('quotes the bad size and where it was', () => {
    expect(issuesOf(() => parse({ hotCache: { maxSize: '10 parsecs' } }))).toEqual(["hotCache.maxSize: expected a size such as '512MiB' or '50GiB', got '10 parsecs'"]);
  });

  it('refuses a url that is not plain http(s)', () => {
    for (const url of ['ftp://x.io', 'https://x.io/?q=1', 'https://x.io/#frag', 'registry-1.docker.io', '']) {
      expect(issuesOf(() => parse({ upstreams: [{ name: 'a', url }] })), url).toEqual(['upstreams[0].url: expected an http(s) URL such as https://registry-1.docker.io']);
    }
  });

  it('refuses registry names that are not hosts', () => {
    for (const reg of ['https://docker.io', 'docker.io/library', '-bad.io', 'bad.io-', 'a b', 'docker.io:', '']) {
      expect(issuesOf(() => parse({ upstreams: [{ ...HUB, registries: [reg] }] })), reg).toEqual([
        'upstreams[0].registries[0]: expected a registry host such as docker.io or myreg.local:5000',
      ]);
    }
  });

  it('refuses an upstream name with characters other than letters, digits, - and _', () => {
    expect(issuesOf(() => parse({ upstreams: [{ ...HUB, name: 'docker hub' }] }))).toEqual(['upstreams[0].name: expected letters, digits, - or _']);
  });

  it('refuses an unknown log level', () => {
    expect(issuesOf(() => parse({ log: { level: 'loud' } }))[0]).toMatch(/^log\.level: /);
  });

  it('refuses a listen address without a usable port', () => {
    for (const listen of ['5000', 'localhost', 'localhost:65536', '::1:5000', 'host:port']) {
      expect(issuesOf(() => parse({ listen })), listen).toEqual([`listen: expected host:port such as 0.0.0.0:5000, got '${listen}'`]);
    }
  });

  it('refuses two upstreams with the same name', () => {
    expect(issuesOf(() => parse({ upstreams: [HUB, { ...GHCR, name: 'dockerhub' }] }))).toEqual(["upstreams[1].name: 'dockerhub' is used by another upstream"]);
  });

  it('refuses a registry served by two upstreams, whatever its case', () => {
    expect(issuesOf(() => parse({ upstreams: [HUB, { ...GHCR, registries: ['ghcr.io', 'Docker.IO'] }] }))).toEqual([
      "upstreams[1].registries: 'docker.io' is already served by upstream 'dockerhub'",
    ]);
  });

  it('names the first upstream that claimed a registry when several more claim it', () => {
    const third = { name: 'q', url: 'https://quay.io', registries: ['docker.io'] };
    expect(issuesOf(() => parse({ upstreams: [HUB, { ...GHCR, registries: ['docker.io'] }, third] }))).toEqual([
      "upstreams[1].registries: 'docker.io' is already served by upstream 'dockerhub'",
      "upstreams[2].registries: 'docker.io' is already served by upstream 'dockerhub'",
    ]);
  });

  it('lets one upstream repeat a registry without blaming itself', () => {
    expect(parse({ upstreams: [{ ...HUB, registries: ['docker.io', 'DOCKER.IO'] }] }).upstreams[0]?.name).toBe('dockerhub');
  });

  it('refuses a defaultUpstream that is not a configured upstream', () => {
    expect(issuesOf(() => parse({ upstreams: [HUB], defaultUpstream: 'dockerhb' }))).toEqual(["defaultUpstream: 'dockerhb' is not the name of a configured upstream or hosted registry"]);
    expect(issuesOf(() => parse({ defaultUpstream: 'anything' }))).toEqual(["defaultUpstream: 'anything' is not the name of a configured upstream or hosted registry"]);
    expect(issuesOf(() => parse({ upstreams: [HUB] }, { env: { OCIMIRROR_DEFAULT_UPSTREAM: 'nope' } }))).toEqual([
      "defaultUpstream: 'nope' is not the name of a configured upstream or hosted registry",
    ]);
  });

  it('reports every problem at once', () => {
    const issues = issuesOf(() =>
      parse({ listen: 'nope', upstreams: [HUB, { ...GHCR, name: 'dockerhub', registries: ['docker.io'] }], defaultUpstream: 'missing' }),
    );
    expect(issues).toEqual([
      "listen: expected host:port such as 0.0.0.0:5000, got 'nope'",
      "upstreams[1].name: 'dockerhub' is used by another upstream",
      "upstreams[1].registries: 'docker.io' is already served by upstream 'dockerhub'",
      "defaultUpstream: 'missing' is not the name of a configured upstream or hosted registry",
    ]);
  });

  it('reports several schema problems at once', () => {
    const issues = issuesOf(() => parse({ hotCache: { maxSize: 'x' }, upstreams: [{ name: 'a' }, { url: 'https://b.io' }] }));
    expect(issues).toEqual(expect.arrayContaining(["hotCache.maxSize: expected a size such as '512MiB' or '50GiB', got 'x'", 'upstreams[0].url is required', 'upstreams[1].name is required']));
  });

  it('reports schema problems and the rules across keys in the same pass', () => {
    const issues = issuesOf(() =>
      parse({
        hotCache: { maxSize: 'x' },
        admin: { token: 'short' },
        upstreams: [HUB, { name: 'dockerhub', registries: ['docker.io'], tagTTL: 'soon' }],
        defaultUpstream: 'missing',
      }),
    );
    expect(issues).toEqual([
      'admin.token: expected at least 16 characters',
      "hotCache.maxSize: expected a size such as '512MiB' or '50GiB', got 'x'",
      "upstreams[1].tagTTL: expected a duration such as '30s', '5m' or '7d', got 'soon'",
      'upstreams[1].url is required',
      "upstreams[1].name: 'dockerhub' is used by another upstream",
      "upstreams[1].registries: 'docker.io' is already served by upstream 'dockerhub'",
      "defaultUpstream: 'missing' is not the name of a configured upstream or hosted registry",
    ]);
  });

  it('reports each broken rule once', () => {
    expect(issuesOf(() => parse({ admin: { token: 'short' } }))).toEqual(['admin.token: expected at least 16 characters']);
    expect(issuesOf(() => parse({ admin: { tokenEnv: 'T' } }, { env: { T: 'short' } }))).toEqual(['admin.tokenEnv: T holds fewer than 16 characters']);
    expect(issuesOf(() => parse({ upstreams: [HUB, { ...GHCR, name: 'dockerhub' }] }))).toEqual(["upstreams[1].name: 'dockerhub' is used by another upstream"]);
  });

  it('lists the issues in the error message, one a line', () => {
    try {
      parse({ lisen: 1 });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).toBe("invalid configuration:\n  - config: unknown key(s) 'lisen'");
      expect((err as Error).name).toBe('ConfigError');
    }
  });
});

describe('parseConfig: upstream failover and rate limits', () => {
  it('takes several URLs for one upstream, the first one standing for url', () => {
    const [u] = parse({ upstreams: [{ name: 'hub', urls: ['https://mirror.internal:5000/', 'https://registry-1.docker.io'], registries: ['docker.io'] }] }).upstreams;
    expect(u).toMatchObject({ url: 'https://mirror.internal:5000', urls: ['https://mirror.internal:5000', 'https://registry-1.docker.io'] });
  });

  it('gives a single url a one-entry list, a 30s back-off and no rate-limit floor by default', () => {
    const [u] = parse({ upstreams: [HUB] }).upstreams;
    expect(u).toMatchObject({ url: HUB.url, urls: [HUB.url], failover: { backoff: 30_000 }, rateLimitFloor: 0 });
    expect(u).not.toHaveProperty('urls.1');
  });

  it('reads the back-off as a duration and the floor as a count', () => {
    const [u] = parse({ upstreams: [{ ...HUB, failover: { backoff: '2m' }, rateLimitFloor: 10 }] }).upstreams;
    expect(u).toMatchObject({ failover: { backoff: 120_000 }, rateLimitFloor: 10 });
  });

  it('refuses url and urls together, an empty or repeated list, and a negative floor', () => {
    expect(issuesOf(() => parse({ upstreams: [{ ...HUB, urls: ['https://a.io'] }] }))).toEqual(['upstreams[0].url: expected url or urls, not both']);
    expect(issuesOf(() => parse({ upstreams: [{ name: 'a', urls: [] }] }))).toEqual(['upstreams[0].urls: expected at least one URL']);
    expect(issuesOf(() => parse({ upstreams: [{ name: 'a', urls: ['https://a.io', 'https://a.io/'] }] }))).toEqual(["upstreams[0].urls[1]: 'https://a.io' is listed twice"]);
    expect(issuesOf(() => parse({ upstreams: [{ name: 'a', urls: ['ftp://a.io'] }] }))[0]).toMatch(/^upstreams\[0\]\.urls\[0\]: expected an http\(s\) URL/);
    expect(issuesOf(() => parse({ upstreams: [{ ...HUB, rateLimitFloor: -1 }] }))[0]).toMatch(/^upstreams\[0\]\.rateLimitFloor: /);
    expect(issuesOf(() => parse({ upstreams: [{ ...HUB, failover: { backof: '1s' } }] }))).toEqual(["upstreams[0].failover: unknown key(s) 'backof'"]);
  });
});

describe('parseConfig: upstream credentials', () => {
  it('takes a username and password written in the file', () => {
    expect(parse({ upstreams: [{ ...HUB, auth: { username: 'me', password: 'pw' } }] }).upstreams[0]?.auth).toEqual({ username: 'me', password: 'pw' });
  });

  it('reads usernameEnv and passwordEnv from the environment', () => {
    const config = parse({ upstreams: [{ ...HUB, auth: { usernameEnv: 'HUB_USER', passwordEnv: 'HUB_TOKEN' } }] }, { env: { HUB_USER: 'me', HUB_TOKEN: 'dckr_pat_x' } });
    expect(config.upstreams[0]?.auth).toEqual({ username: 'me', password: 'dckr_pat_x' });
  });

  it('prefers a value written in the file over its *Env variable', () => {
    const config = parse({ upstreams: [{ ...HUB, auth: { username: 'file', usernameEnv: 'U', password: 'file-pw', passwordEnv: 'P' } }] }, { env: { U: 'env', P: 'env-pw' } });
    expect(config.upstreams[0]?.auth).toEqual({ username: 'file', password: 'file-pw' });
  });

  it('names the unset variable when passwordEnv or usernameEnv is not set', () => {
    expect(issuesOf(() => parse({ upstreams: [{ ...HUB, auth: { username: 'me', passwordEnv: 'HUB_TOKEN' } }] }))).toEqual([
      'upstreams[0].auth.passwordEnv: environment variable HUB_TOKEN is not set',
    ]);
    expect(issuesOf(() => parse({ upstreams: [HUB, { ...GHCR, auth: { usernameEnv: 'GH_USER', password: 'x' } }] }))).toEqual([
      'upstreams[1].auth.usernameEnv: environment variable GH_USER is not set',
    ]);
  });

  it('requires both halves of the credentials', () => {
    expect(issuesOf(() => parse({ upstreams: [{ ...HUB, auth: { password: 'pw' } }] }))).toEqual(['upstreams[0].auth.username is required']);
    expect(issuesOf(() => parse({ upstreams: [{ ...HUB, auth: { username: 'me' } }] }))).toEqual(['upstreams[0].auth.password is required (or passwordEnv)']);
  });

  it('never puts a password into an error message', () => {
    let message = '';
    try {
      parse({ listen: 'bad', upstreams: [{ ...HUB, auth: { username: 'me', password: 's3cr3t-token' } }] });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/listen/);
    expect(message).not.toContain('s3cr3t-token');
  });
});

describe('parseConfig: secrets from the environment', () => {
  it('reads the admin token from admin.tokenEnv, and prefers admin.token written in the file', () => {
    const token = 'a-token-of-sixteen-chars';
    expect(parse({ admin: { tokenEnv: 'T' } }, { env: { T: token } }).admin.token).toBe(token);
    expect(parse({ admin: { token, tokenEnv: 'T' } }, { env: { T: 'other-token-0123456789' } }).admin.token).toBe(token);
  });

  it('names every unset variable a secret comes from, in one pass', () => {
    const issues = issuesOf(() =>
      parse({
        admin: { tokenEnv: 'ADMIN' },
        upstreams: [{ ...HUB, auth: { username: 'me', passwordEnv: 'HUB' }, proxy: { url: 'http://proxy.internal:3128', usernameEnv: 'PU', passwordEnv: 'PP' } }],
      }),
    );
    expect(issues).toEqual([
      'admin.tokenEnv: environment variable ADMIN is not set',
      'upstreams[0].auth.passwordEnv: environment variable HUB is not set',
      'upstreams[0].proxy.usernameEnv: environment variable PU is not set',
      'upstreams[0].proxy.passwordEnv: environment variable PP is not set',
    ]);
  });

  it('refuses an egress proxy password without a username, which Basic could not send', () => {
    const issues = issuesOf(() => parse({ upstreams: [{ ...HUB, proxy: { url: 'http://proxy.internal:3128', passwordEnv: 'PP' } }] }, { env: { PP: 'pw' } }));
    expect(issues).toEqual(['upstreams[0].proxy.username is required with a password (or usernameEnv)']);
  });

  it('resolves an upstream\'s egress proxy with its credentials', () => {
    const config = parse({ upstreams: [{ ...HUB, proxy: { url: 'http://proxy.internal:3128/', username: 'u', passwordEnv: 'PP' } }] }, { env: { PP: 'pw' } });
    expect(config.upstreams[0]?.proxy).toEqual({ url: 'http://proxy.internal:3128', username: 'u', password: 'pw' });
    expect(parse({ upstreams: [HUB] }).upstreams[0]?.proxy).toBeUndefined();
  });

  it('takes HTTPS_PROXY as a URL or host:port, and names a bad one without repeating its credentials', () => {
    expect(parse({}, { env: { HTTPS_PROXY: 'proxy.internal:3128' } }).egress.httpsProxy).toBe('proxy.internal:3128');
    expect(parse({}, { env: { https_proxy: 'http://u:p@proxy.internal:3128' } }).egress.httpsProxy).toBe('http://u:p@proxy.internal:3128');
    const issues = issuesOf(() => parse({}, { env: { HTTP_PROXY: 'ftp://user:s3cret@proxy' } }));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatch(/^egress\.httpProxy: expected a proxy URL/);
    expect(issues[0]).not.toContain('s3cret');
  });
});

describe('parseConfig: the watch list', () => {
  it('gives each image its own refresh or prefetch.refresh', () => {
    const config = parse({ prefetch: { refresh: '10m', images: ['docker.io/library/alpine:3.19', { image: 'ghcr.io/org/app:*', refresh: '15m' }, { image: 'quay.io/a/b:1' }] } });
    expect(config.prefetch.images).toEqual([
      { image: 'docker.io/library/alpine:3.19', refresh: 600_000 },
      { image: 'ghcr.io/org/app:*', refresh: 900_000 },
      { image: 'quay.io/a/b:1', refresh: 600_000 },
    ]);
  });

  it('names the entry whose refresh is not a duration', () => {
    expect(issuesOf(() => parse({ prefetch: { images: ['a', { image: 'b', refresh: 'soon' }] } }))).toEqual([
      "prefetch.images[1].refresh: expected a duration such as '30s', '5m' or '7d', got 'soon'",
    ]);
  });
});

describe('parseListen', () => {
  it('splits host and port, defaulting the host to all interfaces', () => {
    expect(parseListen('0.0.0.0:5000')).toEqual({ host: '0.0.0.0', port: 5000 });
    expect(parseListen('localhost:65535')).toEqual({ host: 'localhost', port: 65535 });
    expect(parseListen(':80')).toEqual({ host: '0.0.0.0', port: 80 });
    expect(parseListen(' 127.0.0.1:1 ')).toEqual({ host: '127.0.0.1', port: 1 });
  });

  it('takes IPv6 hosts in brackets', () => {
    expect(parseListen('[::1]:5000')).toEqual({ host: '::1', port: 5000 });
    expect(parseListen('[::ffff:127.0.0.1]:5000')).toEqual({ host: '::ffff:127.0.0.1', port: 5000 });
  });

  it('gives undefined for anything else', () => {
    for (const text of ['', '5000', 'host', 'host:', 'host:65536', 'host:123456', '::1:5000', '[::1]', '[::1]5000', 'a:b:1', 'host:-1']) {
      expect(parseListen(text), text).toBeUndefined();
    }
  });
});

describe('loadConfig', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-config-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('parses the bundled config/ocimirror.yaml into the documented upstreams', () => {
    const config = loadConfig({ env: {} });
    expect(DEFAULT_CONFIG_FILE).toMatch(/config[/\\]ocimirror\.yaml$/);
    expect(config.upstreams.map((u) => [u.name, u.registries])).toEqual([
      ['dockerhub', ['docker.io']],
      ['ghcr', ['ghcr.io']],
      ['quay', ['quay.io']],
      ['k8s', ['registry.k8s.io']],
    ]);
    expect(config.defaultUpstream).toBe('dockerhub');
    expect(config.listen).toEqual({ host: '0.0.0.0', port: 5000 });
    expect(config.upstreams[0]).toMatchObject({ url: 'https://registry-1.docker.io', tagTTL: 300_000, timeout: 30_000, bodyTimeout: 30_000, fillTimeout: 3_600_000, auth: undefined });
    expect(Object.isFrozen(config.upstreams)).toBe(true);
  });

  it('gives the bundled defaults the same values as parseConfig({})', () => {
    const bundled = loadConfig({ env: {} });
    const defaults = parse({});
    expect({ ...bundled, upstreams: [], defaultUpstream: undefined }).toEqual(defaults);
  });

  it('applies environment and flag overrides to a file', async () => {
    const file = path.join(dir, 'c.yaml');
    await writeFile(file, 'listen: 127.0.0.1:5001\nlog:\n  level: warn\n');
    const config = loadConfig({ file, env: { OCIMIRROR_LOG_LEVEL: 'debug' }, overrides: { listen: '127.0.0.1:5002' } });
    expect(config.listen.port).toBe(5002);
    expect(config.log.level).toBe('debug');
  });

  it('treats an empty file as all defaults', async () => {
    const file = path.join(dir, 'empty.yaml');
    await writeFile(file, '# nothing but a comment\n');
    expect(loadConfig({ file, env: {} })).toEqual(parse({}));
  });

  it('gives a ConfigError naming a file that cannot be read', () => {
    const file = path.join(dir, 'missing.yaml');
    const [issue] = issuesOf(() => loadConfig({ file, env: {} }));
    expect(issue).toContain(`cannot read config file ${file}`);
    expect(issue).toMatch(/ENOENT/);
    expect(issuesOf(() => loadConfig({ file: dir, env: {} }))[0]).toContain(`cannot read config file ${dir}`);
  });

  it.skipIf(process.getuid?.() === 0)('gives a ConfigError for a file without read permission', async () => {
    const file = path.join(dir, 'secret.yaml');
    await writeFile(file, 'listen: :1\n');
    await chmod(file, 0o000);
    expect(issuesOf(() => loadConfig({ file, env: {} }))[0]).toMatch(/cannot read config file .*EACCES/);
  });

  it('keeps the cause of an unreadable file', () => {
    try {
      loadConfig({ file: path.join(dir, 'missing.yaml'), env: {} });
      expect.unreachable();
    } catch (err) {
      expect((err as ConfigError).cause).toMatchObject({ code: 'ENOENT' });
    }
  });

  it('gives a ConfigError naming a file that is not valid YAML', async () => {
    const file = path.join(dir, 'bad.yaml');
    await writeFile(file, 'listen: [unclosed\nupstreams:\n  - name: a\n');
    const [issue] = issuesOf(() => loadConfig({ file, env: {} }));
    expect(issue).toContain(`${file} is not valid YAML`);
  });

  it('refuses YAML with a repeated key rather than letting the last one win silently', async () => {
    const file = path.join(dir, 'dup.yaml');
    await writeFile(file, 'listen: :1\nlisten: :2\n');
    expect(issuesOf(() => loadConfig({ file, env: {} }))[0]).toContain('is not valid YAML');
  });

  it('refuses a YAML document that is not a mapping', async () => {
    const file = path.join(dir, 'list.yaml');
    await writeFile(file, '- a\n- b\n');
    expect(issuesOf(() => loadConfig({ file, env: {} }))).toEqual(['the config must be a mapping of keys to values']);
  });

  it('reports schema problems in a file with their key paths', async () => {
    const file = path.join(dir, 'c.yaml');
    await writeFile(file, 'upstreams:\n  - name: hub\n    registries: [docker.io]\n');
    expect(issuesOf(() => loadConfig({ file, env: {} }))).toEqual(['upstreams[0].url is required']);
  });
});
