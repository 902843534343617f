/**
 * @module config/env
 * The one table of environment variables ocimirror reads: which config key each one sets, how its
 * text becomes the key's value, and the command-line flag that beats it. The loader applies it
 * (flags > environment > file > defaults) and the README's table is this table.
 */

/** Command-line flags that override config keys (commander's camelCase option names). */
export interface ConfigOverrides {
  listen?: string | undefined;
  data?: string | undefined;
  upstream?: string | undefined;
  registry?: string | undefined;
  logLevel?: string | undefined;
}

export interface EnvVariable {
  /** Spellings, checked in order; the first one set to a non-empty value counts. */
  readonly names: readonly [string, ...string[]];
  /** The config key it sets; undefined for a variable only the CLI reads. */
  readonly key: string | undefined;
  /** The flag that beats it, as typed ('--log-level'). */
  readonly flag?: string;
  /** Text → the key's value; the text itself when absent. */
  readonly parse?: (text: string) => unknown;
  /** Other keys set along with `key`. */
  readonly implies?: Readonly<Record<string, unknown>>;
  /** The primary name of a variable (or its flag) that must be given too. */
  readonly requires?: string;
  readonly description: string;
}

/** Docker Hub's API hosts; clients call the registry itself 'docker.io'. */
const DOCKER_HUB_HOSTS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/**
 * Like distribution's REGISTRY_PROXY_REMOTEURL: one upstream serves every request. It serves the
 * URL's host as a registry name (plus docker.io for Docker Hub's API hosts, the name containerd's
 * ?ns= and CRI-O's prefix use); OCIMIRROR_REGISTRY names other registries.
 */
function singleUpstream(url: string): unknown {
  let host = '';
  try {
    host = new URL(url).host;
  } catch {
    /* the schema reports the URL under upstreams[0].url */
  }
  const registries = !host ? [] : DOCKER_HUB_HOSTS.has(host) ? [...new Set(['docker.io', host])] : [host];
  return [{ name: 'default', url, registries }];
}

/** '0' / 'false' → false, '1' / 'true' → true; anything else is left for the schema to refuse. */
const bool = (text: string): unknown => (text === '0' || text === 'false' ? false : text === '1' || text === 'true' ? true : text);

const list = (text: string): string[] => text.split(',').map((s) => s.trim()).filter((s) => s !== '');

/**
 * In application order: OCIMIRROR_UPSTREAM comes after OCIMIRROR_DEFAULT_UPSTREAM (its implied
 * default wins) and before OCIMIRROR_REGISTRY (which names its registries).
 */
export const ENV_VARIABLES: readonly EnvVariable[] = [
  { names: ['OCIMIRROR_CONFIG'], key: undefined, flag: '--config', description: 'config file (default: the bundled config/ocimirror.yaml)' },
  { names: ['OCIMIRROR_LISTEN'], key: 'listen', flag: '--listen', description: 'listen address host:port' },
  { names: ['OCIMIRROR_DATA'], key: 'storage.path', flag: '--data', description: 'data directory' },
  { names: ['OCIMIRROR_DEFAULT_UPSTREAM'], key: 'defaultUpstream', description: 'upstream for requests that name no registry' },
  {
    names: ['OCIMIRROR_UPSTREAM'],
    key: 'upstreams',
    flag: '--upstream',
    parse: singleUpstream,
    implies: { defaultUpstream: 'default' },
    description: "one upstream URL for every request (replaces upstreams; named 'default' and made the default)",
  },
  {
    names: ['OCIMIRROR_REGISTRY'],
    key: 'upstreams[0].registries',
    flag: '--registry',
    parse: list,
    requires: 'OCIMIRROR_UPSTREAM',
    description: 'registry names clients use for that upstream, comma-separated (e.g. docker.io); default: its host:port',
  },
  { names: ['OCIMIRROR_LOG_LEVEL'], key: 'log.level', flag: '--log-level', description: 'fatal|error|warn|info|debug|trace|silent' },
  { names: ['OCIMIRROR_HOT_CACHE_MAX_SIZE'], key: 'hotCache.maxSize', description: 'in-memory cache bound, e.g. 64MiB' },
  { names: ['OCIMIRROR_SHUTDOWN_GRACE'], key: 'server.shutdownGrace', description: 'time in-flight pulls get on SIGTERM, e.g. 30s' },
  { names: ['OCIMIRROR_MAX_SIZE'], key: 'storage.maxSize', description: 'disk quota for blobs, e.g. 50GiB (0 = unlimited)' },
  { names: ['OCIMIRROR_ADMIN_TOKEN'], key: 'admin.token', flag: '--token', description: 'admin API token (serve); the token prefetch and gc send' },
  { names: ['OCIMIRROR_URL'], key: undefined, flag: '--url', description: 'the mirror prefetch and gc talk to (default http://127.0.0.1:5000)' },
  {
    names: ['OCIMIRROR_SENDFILE'],
    key: 'server.sendfile',
    parse: (text) => (text === '0' ? 'off' : text),
    description: 'fills|all|off (0 = off): which blob bodies go out by sendfile(2)',
  },
  { names: ['OCIMIRROR_NATIVE_ADDON'], key: 'server.nativeAddon', parse: bool, description: '0|1 (or false|true): use the native addon where it is built' },
  { names: ['OCIMIRROR_IDLE_GC'], key: 'server.idleGc', parse: bool, description: '0|1 (or false|true): collect garbage after bursts' },
  { names: ['http_proxy', 'HTTP_PROXY'], key: 'egress.httpProxy', description: 'egress proxy for http:// upstreams (lower-case wins)' },
  { names: ['https_proxy', 'HTTPS_PROXY'], key: 'egress.httpsProxy', description: 'egress proxy for https:// upstreams (lower-case wins)' },
  { names: ['no_proxy', 'NO_PROXY'], key: 'egress.noProxy', description: 'hosts that go direct, comma-separated (lower-case wins)' },
];

/** The value a variable takes from the environment: its first spelling set to a non-empty value. */
export function envValue(variable: EnvVariable, env: Readonly<Record<string, string | undefined>>): string | undefined {
  for (const name of variable.names) {
    const value = env[name];
    if (value) return value;
  }
  return undefined;
}

/** '--log-level' → 'logLevel', the property commander and {@link ConfigOverrides} use. */
export function overrideName(flag: string): string {
  return flag.replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}
