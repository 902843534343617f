/**
 * @module config/load
 * Config = defaults < YAML file < OCIMIRROR_* environment < command-line flags, parsed from
 * `unknown` into a deeply frozen {@link Config}. Every problem is reported with its key path.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from './config-error.ts';
import { configSchema, type Config, type UpstreamConfig } from './schema.ts';
import { parseDuration } from './units.ts';
import { packageRoot } from '../util/package-root.ts';

/** The config shipped in the package, used when no --config / OCIMIRROR_CONFIG is given. */
export const DEFAULT_CONFIG_FILE = path.join(packageRoot() ?? process.cwd(), 'config', 'ocimirror.yaml');

/** Docker Hub's API hosts; clients call the registry itself 'docker.io'. */
const DOCKER_HUB_HOSTS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** Overrides that do not need a file (command-line flags take precedence over the environment). */
export interface ConfigOverrides {
  listen?: string | undefined;
  data?: string | undefined;
  upstream?: string | undefined;
  logLevel?: string | undefined;
}

/**
 * Environment variables read by {@link loadConfig}, as distribution reads REGISTRY_PROXY_REMOTEURL.
 * OCIMIRROR_CONFIG itself is read by the CLI.
 */
export const ENV_OVERRIDES = {
  OCIMIRROR_LISTEN: 'listen',
  OCIMIRROR_DATA: 'storage.path',
  OCIMIRROR_UPSTREAM: 'upstreams (one upstream named "default")',
  OCIMIRROR_DEFAULT_UPSTREAM: 'defaultUpstream',
  OCIMIRROR_LOG_LEVEL: 'log.level',
  OCIMIRROR_HOT_CACHE_MAX_SIZE: 'hotCache.maxSize',
  OCIMIRROR_SHUTDOWN_GRACE: 'server.shutdownGrace',
  OCIMIRROR_MAX_SIZE: 'storage.maxSize',
  OCIMIRROR_ADMIN_TOKEN: 'admin.token',
  OCIMIRROR_SENDFILE: 'server.sendfile',
  OCIMIRROR_NATIVE_ADDON: 'server.nativeAddon',
  OCIMIRROR_IDLE_GC: 'server.idleGc',
  HTTP_PROXY: 'egress.httpProxy',
  HTTPS_PROXY: 'egress.httpsProxy',
  NO_PROXY: 'egress.noProxy',
} as const;

export interface LoadOptions {
  /** Path of the YAML file; `undefined` reads {@link DEFAULT_CONFIG_FILE}. */
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  overrides?: ConfigOverrides;
}

export function loadConfig({ file, env = process.env, overrides = {} }: LoadOptions = {}): Config {
  const configFile = file ?? DEFAULT_CONFIG_FILE;
  let text: string;
  try {
    text = readFileSync(configFile, 'utf8');
  } catch (cause) {
    throw new ConfigError([`cannot read config file ${configFile}: ${(cause as Error).message}`], { cause });
  }
  let raw: unknown;
  try {
    raw = parseYaml(text) ?? {};
  } catch (cause) {
    throw new ConfigError([`${configFile} is not valid YAML: ${(cause as Error).message}`], { cause });
  }
  return parseConfig(raw, { env, overrides });
}

export interface ParseOptions {
  env?: NodeJS.ProcessEnv;
  overrides?: ConfigOverrides;
}

/** Validates an already-decoded config object (from YAML, JSON or a test) and applies overrides. */
export function parseConfig(raw: unknown, { env = {}, overrides = {} }: ParseOptions = {}): Config {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(['the config must be a mapping of keys to values']);
  }
  const merged = dropNulls(structuredClone(raw)) as Record<string, unknown>;
  const set = (keyPath: string[], value: unknown) => {
    let node = merged;
    for (const key of keyPath.slice(0, -1)) {
      const next = node[key];
      node[key] = next && typeof next === 'object' && !Array.isArray(next) ? { ...(next as object) } : {};
      node = node[key] as Record<string, unknown>;
    }
    node[keyPath[keyPath.length - 1] as string] = value;
  };
  const pick = (flag: string | undefined, envName: keyof typeof ENV_OVERRIDES) => flag ?? (env[envName] || undefined);

  const listen = pick(overrides.listen, 'OCIMIRROR_LISTEN');
  if (listen) set(['listen'], listen);
  const data = pick(overrides.data, 'OCIMIRROR_DATA');
  if (data) set(['storage', 'path'], data);
  const level = pick(overrides.logLevel, 'OCIMIRROR_LOG_LEVEL');
  if (level) set(['log', 'level'], level);
  if (env.OCIMIRROR_HOT_CACHE_MAX_SIZE) set(['hotCache', 'maxSize'], env.OCIMIRROR_HOT_CACHE_MAX_SIZE);
  if (env.OCIMIRROR_SHUTDOWN_GRACE) set(['server', 'shutdownGrace'], env.OCIMIRROR_SHUTDOWN_GRACE);
  if (env.OCIMIRROR_MAX_SIZE) set(['storage', 'maxSize'], env.OCIMIRROR_MAX_SIZE);
  if (env.OCIMIRROR_ADMIN_TOKEN) set(['admin', 'token'], env.OCIMIRROR_ADMIN_TOKEN);
  if (env.OCIMIRROR_SENDFILE) set(['server', 'sendfile'], env.OCIMIRROR_SENDFILE === '0' ? 'off' : env.OCIMIRROR_SENDFILE);
  const bool = (v: string) => (v === '0' || v === 'false' ? false : v === '1' || v === 'true' ? true : v);
  if (env.OCIMIRROR_NATIVE_ADDON) set(['server', 'nativeAddon'], bool(env.OCIMIRROR_NATIVE_ADDON));
  if (env.OCIMIRROR_IDLE_GC) set(['server', 'idleGc'], bool(env.OCIMIRROR_IDLE_GC));
  // Lower-case spellings are what curl and most tools read first; either works.
  const httpProxy = env.http_proxy || env.HTTP_PROXY;
  const httpsProxy = env.https_proxy || env.HTTPS_PROXY;
  const noProxy = env.no_proxy || env.NO_PROXY;
  if (httpProxy) set(['egress', 'httpProxy'], httpProxy);
  if (httpsProxy) set(['egress', 'httpsProxy'], httpsProxy);
  if (noProxy) set(['egress', 'noProxy'], noProxy);
  const upstream = pick(overrides.upstream, 'OCIMIRROR_UPSTREAM');
  if (upstream) {
    // Like distribution's REGISTRY_PROXY_REMOTEURL: one upstream serves every request.
    let host = '';
    try {
      host = new URL(upstream).host;
    } catch {
      /* reported by the schema below */
    }
    // Clients name Docker Hub 'docker.io' (containerd's ?ns=, CRI-O's prefix), never its API host.
    const registries = !host ? [] : DOCKER_HUB_HOSTS.has(host) ? [...new Set(['docker.io', host])] : [host];
    set(['upstreams'], [{ name: 'default', url: upstream, registries }]);
    set(['defaultUpstream'], 'default');
  }
  // The --upstream flag implies defaultUpstream 'default'; a flag beats the environment.
  if (env.OCIMIRROR_DEFAULT_UPSTREAM && !overrides.upstream) set(['defaultUpstream'], env.OCIMIRROR_DEFAULT_UPSTREAM);

  const result = configSchema.safeParse(merged);
  if (!result.success) throw new ConfigError(result.error.issues.map(describeIssue));
  const parsed = result.data;

  const issues: string[] = [];
  const listenAddr = parseListen(parsed.listen);
  if (!listenAddr) issues.push(`listen: expected host:port such as 0.0.0.0:5000, got '${parsed.listen}'`);

  const names = new Set<string>();
  const registryOwner = new Map<string, number>(); // registry → index of the first upstream serving it
  const upstreams: UpstreamConfig[] = parsed.upstreams.map((u, i) => {
    if (names.has(u.name)) issues.push(`upstreams[${i}].name: '${u.name}' is used by another upstream`);
    names.add(u.name);
    for (const reg of u.registries) {
      const owner = registryOwner.get(reg);
      if (owner === undefined) registryOwner.set(reg, i);
      else if (owner !== i) issues.push(`upstreams[${i}].registries: '${reg}' is already served by upstream '${parsed.upstreams[owner]?.name}'`);
    }
    return {
      name: u.name,
      url: u.url,
      registries: u.registries,
      tagTTL: u.tagTTL,
      timeout: u.timeout,
      fillTimeout: u.fillTimeout,
      auth: resolveAuth(u.auth, `upstreams[${i}].auth`, env, issues),
      realmHosts: u.realmHosts.map((h) => h.toLowerCase()),
      proxy: u.proxy ? resolveProxy(u.proxy, `upstreams[${i}].proxy`, env, issues) : undefined,
    };
  });
  if (parsed.defaultUpstream !== undefined && !names.has(parsed.defaultUpstream)) {
    issues.push(`defaultUpstream: '${parsed.defaultUpstream}' is not the name of a configured upstream`);
  }

  const images = parsed.prefetch.images.map((entry, i) => {
    const { image, refresh } = typeof entry === 'string' ? { image: entry, refresh: undefined } : entry;
    const ms = refresh === undefined ? parsed.prefetch.refresh : parseDuration(refresh);
    if (ms === undefined) issues.push(`prefetch.images[${i}].refresh: expected a duration such as '30s', '5m' or '7d', got '${refresh}'`);
    return { image, refresh: ms ?? 0 };
  });
  const adminToken = parsed.admin.token ?? (parsed.admin.tokenEnv ? env[parsed.admin.tokenEnv] : undefined);
  if (parsed.admin.tokenEnv && !parsed.admin.token && !adminToken) issues.push(`admin.tokenEnv: environment variable ${parsed.admin.tokenEnv} is not set`);
  if (adminToken !== undefined && adminToken.length < 16) issues.push('admin.tokenEnv: the admin token must have at least 16 characters');
  if (issues.length > 0) throw new ConfigError(issues);

  return deepFreeze({
    listen: listenAddr as { host: string; port: number },
    storage: { ...parsed.storage, path: path.resolve(parsed.storage.path) },
    prefetch: { onPull: parsed.prefetch.onPull, platforms: parsed.prefetch.platforms, images },
    pin: parsed.pin,
    jobs: parsed.jobs,
    gc: parsed.gc,
    admin: { token: adminToken },
    metrics: parsed.metrics,
    hotCache: parsed.hotCache,
    upstreams,
    defaultUpstream: parsed.defaultUpstream,
    egress: { httpProxy: parsed.egress.httpProxy, httpsProxy: parsed.egress.httpsProxy, noProxy: parsed.egress.noProxy },
    server: parsed.server,
    log: parsed.log,
  });
}

function resolveAuth(
  auth: { username?: string | undefined; usernameEnv?: string | undefined; password?: string | undefined; passwordEnv?: string | undefined } | undefined,
  where: string,
  env: NodeJS.ProcessEnv,
  issues: string[],
): UpstreamConfig['auth'] {
  if (!auth) return undefined;
  const username = auth.username ?? (auth.usernameEnv ? env[auth.usernameEnv] : undefined);
  const password = auth.password ?? (auth.passwordEnv ? env[auth.passwordEnv] : undefined);
  if (!username) {
    issues.push(auth.usernameEnv ? `${where}.usernameEnv: environment variable ${auth.usernameEnv} is not set` : `${where}.username is required`);
    return undefined;
  }
  if (password === undefined) {
    issues.push(auth.passwordEnv ? `${where}.passwordEnv: environment variable ${auth.passwordEnv} is not set` : `${where}.password or ${where}.passwordEnv is required`);
    return undefined;
  }
  return { username, password };
}

function resolveProxy(
  proxy: { url: string; username?: string | undefined; usernameEnv?: string | undefined; password?: string | undefined; passwordEnv?: string | undefined },
  where: string,
  env: NodeJS.ProcessEnv,
  issues: string[],
): NonNullable<UpstreamConfig['proxy']> {
  const username = proxy.username ?? (proxy.usernameEnv ? env[proxy.usernameEnv] : undefined);
  const password = proxy.password ?? (proxy.passwordEnv ? env[proxy.passwordEnv] : undefined);
  if (proxy.usernameEnv && username === undefined) issues.push(`${where}.usernameEnv: environment variable ${proxy.usernameEnv} is not set`);
  if (proxy.passwordEnv && password === undefined) issues.push(`${where}.passwordEnv: environment variable ${proxy.passwordEnv} is not set`);
  return { url: proxy.url, username, password };
}

/** 'host:port', ':port', '[::1]:port' → parts; undefined when malformed. */
export function parseListen(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-f:.]+)\]|([^:[\]]*)):(\d{1,5})$/i.exec(text.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const where = issue.path.length === 0 ? 'config' : issue.path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('');
  if (issue.code === 'unrecognized_keys') return `${where}: unknown key(s) ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
  if (issue.code === 'invalid_type' && issue.message.includes('undefined')) return `${where} is required`;
  if (issue.message === 'is required') return `${where} is required`;
  return `${where}: ${issue.message}`;
}

/** A key left empty in YAML (`admin:` with everything below commented out) means "use the defaults". */
function dropNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(dropNulls);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null).map(([k, v]) => [k, dropNulls(v)]));
  }
  return value;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
