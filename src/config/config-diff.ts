/**
 * @module config/config-diff
 * What changed between two resolved configs, by key path as the loader reports problems
 * (`upstreams[1].tagTTL`), and which of those changes a running mirror cannot take:
 * {@link RESTART_ONLY} is the one list of keys that need a restart.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Config } from './schema.ts';

export interface RestartOnlyKey {
  /** Dotted key path. */
  readonly path: string;
  /** 'value': any change needs a restart; 'presence': only setting or removing the key does. */
  readonly kind: 'value' | 'presence';
  readonly why: string;
}

/** Keys a reload leaves as they were at start; everything else applies to new requests. */
export const RESTART_ONLY: readonly RestartOnlyKey[] = [
  { path: 'listen', kind: 'value', why: 'the listening socket is bound at start' },
  { path: 'storage.path', kind: 'value', why: 'the data directory is locked and opened at start' },
  { path: 'hotCache.maxSize', kind: 'value', why: 'the in-memory cache is sized at start' },
  { path: 'metrics.enabled', kind: 'value', why: 'the /metrics route and its registry are made at start' },
  { path: 'log.level', kind: 'value', why: "every module's logger is made at start" },
  { path: 'jobs', kind: 'value', why: "the job runner's concurrency, attempts and backoff are fixed at start" },
  { path: 'server.headersTimeout', kind: 'value', why: "the listener's header deadline is set at start" },
  { path: 'server.sendfile', kind: 'value', why: 'the blob writer is made at start' },
  { path: 'server.nativeAddon', kind: 'value', why: 'the native addon is loaded at start' },
  { path: 'server.idleGc', kind: 'value', why: 'the idle collector is started with the process' },
  { path: 'server.proxyProtocol', kind: 'value', why: 'the PROXY protocol front is made with the listener' },
  { path: 'cluster', kind: 'value', why: 'the member list, secret and health checks are set up at start' },
  { path: 'tls', kind: 'presence', why: 'HTTP or HTTPS is chosen when the listener is made (certificate paths reload)' },
  { path: 'tls.clientCA', kind: 'presence', why: 'whether handshakes ask for client certificates is fixed at start (the CA file reloads)' },
];

export interface ConfigDiff {
  /** Every key path whose value differs, leaves first-level deep (`upstreams[1]` when a whole upstream came or went). */
  readonly changed: string[];
  /** The {@link RESTART_ONLY} paths among them. */
  readonly restartOnly: string[];
}

/** Compares two resolved configs; pure, so reloads and tests see the same answer. */
export function diffConfig(before: Config, after: Config): ConfigDiff {
  const changed: string[] = [];
  walk(before, after, '', changed);
  const restartOnly = RESTART_ONLY.filter((key) => {
    const a = valueAt(before, key.path);
    const b = valueAt(after, key.path);
    return key.kind === 'presence' ? (a === undefined) !== (b === undefined) : !isDeepStrictEqual(a, b);
  }).map((key) => key.path);
  return { changed, restartOnly };
}

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function walk(a: unknown, b: unknown, at: string, out: string[]): void {
  if (isDeepStrictEqual(a, b)) return;
  if (isRecord(a) && isRecord(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    for (const key of keys) walk(a[key], b[key], at === '' ? key : `${at}.${key}`, out);
    return;
  }
  // Lists of mappings (upstreams, auth.rules) are compared entry by entry; lists of plain values as a whole.
  if (Array.isArray(a) && Array.isArray(b) && [...a, ...b].every(isRecord)) {
    for (let i = 0; i < Math.max(a.length, b.length); i++) walk(a[i], b[i], `${at}[${i}]`, out);
    return;
  }
  out.push(at === '' ? 'config' : at);
}

function valueAt(config: Config, dotted: string): unknown {
  let node: unknown = config;
  for (const key of dotted.split('.')) node = isRecord(node) ? node[key] : undefined;
  return node;
}

/**
 * `next` with every {@link RESTART_ONLY} change undone (the values `running` started with): what a
 * reload applies, so nothing downstream has to know which keys are live.
 */
export function withRestartOnlyKept(running: Config, next: Config): Config {
  const out = structuredClone(next) as unknown as Record<string, unknown>;
  for (const key of RESTART_ONLY) {
    const a = valueAt(running, key.path);
    const b = valueAt(out as unknown as Config, key.path);
    const differs = key.kind === 'presence' ? (a === undefined) !== (b === undefined) : !isDeepStrictEqual(a, b);
    if (differs) setAt(out, key.path, structuredClone(a));
  }
  return deepFreeze(out) as unknown as Config;
}

function setAt(root: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  const last = keys.pop() as string;
  let node = root;
  for (const key of keys) {
    if (!isRecord(node[key])) return; // the parent is absent, and 'presence' keys above it already decided
    node = node[key];
  }
  if (value === undefined) delete node[last];
  else node[last] = value;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
