/**
 * @module test/unit/config/env
 * The environment table (src/config/env.ts) is both the documentation and the mechanism: every
 * variable it lists sets the key it names when the loader runs, a flag beats the variable, the
 * variable beats the file, and the lower-case proxy spellings beat the upper-case ones.
 */
import { describe, expect, it } from 'vitest';
import { ENV_VARIABLES, overrideName, type ConfigOverrides } from '../../../src/config/env.ts';
import { parseConfig } from '../../../src/config/load.ts';
import type { Config } from '../../../src/config/schema.ts';

const HUB = { name: 'dockerhub', url: 'https://registry-1.docker.io', registries: ['docker.io'] };
const GHCR = { name: 'ghcr', url: 'https://ghcr.io', registries: ['ghcr.io'] };
/** Holds every key a variable overrides, with values unlike the samples below. */
const FILE = { upstreams: [HUB, GHCR], defaultUpstream: 'dockerhub' };

/** Reads a resolved key such as 'upstreams[0].registries'. */
function at(config: Config, keyPath: string): unknown {
  const keys = keyPath.split(/\.|\[(\d+)\]\.?/).filter((k) => k !== undefined && k !== '');
  return keys.reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], config);
}

/** For each variable: an environment that sets it, and the value its key takes. */
const SAMPLES: Record<string, { env: Record<string, string>; value: unknown }> = {
  OCIMIRROR_LISTEN: { env: { OCIMIRROR_LISTEN: '127.0.0.1:6000' }, value: { host: '127.0.0.1', port: 6000 } },
  OCIMIRROR_DATA: { env: { OCIMIRROR_DATA: '/var/cache/ocimirror' }, value: '/var/cache/ocimirror' },
  OCIMIRROR_DEFAULT_UPSTREAM: { env: { OCIMIRROR_DEFAULT_UPSTREAM: 'ghcr' }, value: 'ghcr' },
  OCIMIRROR_UPSTREAM: {
    env: { OCIMIRROR_UPSTREAM: 'http://registry.local:5000' },
    value: [expect.objectContaining({ name: 'default', url: 'http://registry.local:5000', registries: ['registry.local:5000'] })],
  },
  OCIMIRROR_REGISTRY: { env: { OCIMIRROR_UPSTREAM: 'http://127.0.0.1:5001', OCIMIRROR_REGISTRY: 'quay.io' }, value: ['quay.io'] },
  OCIMIRROR_LOG_LEVEL: { env: { OCIMIRROR_LOG_LEVEL: 'debug' }, value: 'debug' },
  OCIMIRROR_HOT_CACHE_MAX_SIZE: { env: { OCIMIRROR_HOT_CACHE_MAX_SIZE: '1MiB' }, value: 2 ** 20 },
  OCIMIRROR_SHUTDOWN_GRACE: { env: { OCIMIRROR_SHUTDOWN_GRACE: '5s' }, value: 5000 },
  OCIMIRROR_MAX_SIZE: { env: { OCIMIRROR_MAX_SIZE: '2GiB' }, value: 2 * 2 ** 30 },
  OCIMIRROR_ADMIN_TOKEN: { env: { OCIMIRROR_ADMIN_TOKEN: 'a-token-of-sixteen-chars' }, value: 'a-token-of-sixteen-chars' },
  OCIMIRROR_SENDFILE: { env: { OCIMIRROR_SENDFILE: 'all' }, value: 'all' },
  OCIMIRROR_NATIVE_ADDON: { env: { OCIMIRROR_NATIVE_ADDON: '0' }, value: false },
  OCIMIRROR_IDLE_GC: { env: { OCIMIRROR_IDLE_GC: 'false' }, value: false },
  http_proxy: { env: { HTTP_PROXY: 'http://proxy.internal:3128' }, value: 'http://proxy.internal:3128' },
  https_proxy: { env: { https_proxy: 'http://proxy.internal:3129' }, value: 'http://proxy.internal:3129' },
  no_proxy: { env: { NO_PROXY: '.internal,localhost' }, value: '.internal,localhost' },
};

describe('the environment table', () => {
  it('lists every variable ocimirror reads, the CLI-only ones included', () => {
    expect(ENV_VARIABLES.flatMap((v) => v.names).sort()).toEqual(
      [
        'OCIMIRROR_CONFIG', 'OCIMIRROR_URL', 'OCIMIRROR_LISTEN', 'OCIMIRROR_DATA', 'OCIMIRROR_UPSTREAM', 'OCIMIRROR_REGISTRY',
        'OCIMIRROR_DEFAULT_UPSTREAM', 'OCIMIRROR_LOG_LEVEL', 'OCIMIRROR_HOT_CACHE_MAX_SIZE', 'OCIMIRROR_SHUTDOWN_GRACE',
        'OCIMIRROR_MAX_SIZE', 'OCIMIRROR_ADMIN_TOKEN', 'OCIMIRROR_SENDFILE', 'OCIMIRROR_NATIVE_ADDON', 'OCIMIRROR_IDLE_GC',
        'http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'no_proxy', 'NO_PROXY',
      ].sort(),
    );
    expect(ENV_VARIABLES.filter((v) => v.key === undefined).map((v) => v.names[0])).toEqual(['OCIMIRROR_CONFIG', 'OCIMIRROR_URL']);
    for (const v of ENV_VARIABLES) expect(v.description, v.names[0]).not.toBe('');
  });

  it('has a sample here for each variable that sets a key, so none goes untested', () => {
    expect(Object.keys(SAMPLES).sort()).toEqual(ENV_VARIABLES.filter((v) => v.key !== undefined).map((v) => v.names[0]).sort());
  });

  for (const variable of ENV_VARIABLES.filter((v) => v.key !== undefined)) {
    it(`sets ${variable.key} from ${variable.names.join(' / ')}, over the file`, () => {
      const sample = SAMPLES[variable.names[0]]!;
      const before = at(parseConfig(FILE, { env: {} }), variable.key!);
      const after = at(parseConfig(FILE, { env: sample.env }), variable.key!);
      expect(after).toEqual(sample.value);
      expect(before).not.toEqual(after);
    });
  }

  it('lets each flag beat its variable', () => {
    const withFlags = ENV_VARIABLES.filter((v) => v.key !== undefined && v.flag !== undefined && v.flag !== '--token');
    expect(withFlags.map((v) => v.flag)).toEqual(['--listen', '--data', '--upstream', '--registry', '--log-level']);
    const config = parseConfig(FILE, {
      env: { OCIMIRROR_LISTEN: '127.0.0.1:6000', OCIMIRROR_DATA: '/env', OCIMIRROR_UPSTREAM: 'https://env.example', OCIMIRROR_REGISTRY: 'env.io', OCIMIRROR_LOG_LEVEL: 'debug' },
      overrides: { listen: '127.0.0.1:7000', data: '/flag', upstream: 'https://flag.example', registry: 'flag.io', logLevel: 'error' } satisfies Required<ConfigOverrides>,
    });
    expect(config.listen.port).toBe(7000);
    expect(config.storage.path).toBe('/flag');
    expect(config.upstreams.map((u) => [u.url, u.registries])).toEqual([['https://flag.example', ['flag.io']]]);
    expect(config.log.level).toBe('error');
  });

  it('names each flag after the override property the loader reads', () => {
    expect(overrideName('--log-level')).toBe('logLevel');
    expect(overrideName('--listen')).toBe('listen');
  });

  it('takes the lower-case proxy spellings over the upper-case ones, as curl does', () => {
    const config = parseConfig({}, { env: { HTTP_PROXY: 'http://upper:1', http_proxy: 'http://lower:1', HTTPS_PROXY: 'http://upper:2', https_proxy: 'http://lower:2', NO_PROXY: 'upper', no_proxy: 'lower' } });
    expect(config.egress).toEqual({ httpProxy: 'http://lower:1', httpsProxy: 'http://lower:2', noProxy: 'lower' });
  });

  it("turns OCIMIRROR_SENDFILE=0 into 'off' and refuses other values under server.sendfile", () => {
    expect(parseConfig({}, { env: { OCIMIRROR_SENDFILE: '0' } }).server.sendfile).toBe('off');
    expect(() => parseConfig({}, { env: { OCIMIRROR_SENDFILE: 'sometimes' } })).toThrow(/server\.sendfile: /);
  });

  it('reads 0/1 and false/true for the switches, and refuses anything else under its key', () => {
    expect(parseConfig({}, { env: { OCIMIRROR_NATIVE_ADDON: 'true', OCIMIRROR_IDLE_GC: '1' } }).server).toMatchObject({ nativeAddon: true, idleGc: true });
    expect(() => parseConfig({}, { env: { OCIMIRROR_IDLE_GC: 'yes' } })).toThrow(/server\.idleGc: /);
  });
});
