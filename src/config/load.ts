/**
 * @module config/load
 * Config = defaults < YAML file < environment (config/env's table) < command-line flags, parsed
 * from `unknown` into a deeply frozen {@link Config}. Every problem is reported with its key path,
 * all of them in one pass.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from './config-error.ts';
import { ENV_VARIABLES, envValue, overrideName, type ConfigOverrides } from './env.ts';
import { createConfigSchema, type Config, type Env } from './schema.ts';
import { packageRoot } from '../util/package-root.ts';

export type { ConfigOverrides } from './env.ts';
export { parseListen } from './listen.ts';

/** The config shipped in the package, used when no --config / OCIMIRROR_CONFIG is given. */
export const DEFAULT_CONFIG_FILE = path.join(packageRoot() ?? process.cwd(), 'config', 'ocimirror.yaml');

export interface LoadOptions {
  /** Path of the YAML file; `undefined` reads {@link DEFAULT_CONFIG_FILE}. */
  file?: string | undefined;
  env?: Env;
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
  env?: Env;
  overrides?: ConfigOverrides;
}

/** Validates an already-decoded config object (from YAML, JSON or a test) and applies overrides. */
export function parseConfig(raw: unknown, { env = {}, overrides = {} }: ParseOptions = {}): Config {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(['the config must be a mapping of keys to values']);
  }
  const merged = dropNulls(structuredClone(raw)) as Record<string, unknown>;
  const issues = applyOverrides(merged, env, overrides);
  const result = createConfigSchema(env).safeParse(merged);
  if (!result.success) issues.push(...result.error.issues.flatMap((issue) => describeIssue(issue)));
  if (issues.length > 0 || !result.success) throw new ConfigError(issues);
  return deepFreeze(result.data);
}

/** Sets each key of the environment table whose flag or variable is given; returns the problems. */
function applyOverrides(config: Record<string, unknown>, env: Env, overrides: ConfigOverrides): string[] {
  const issues: string[] = [];
  const given = new Set<string>();
  const flags = overrides as Record<string, string | undefined>;
  for (const variable of ENV_VARIABLES) {
    if (variable.key === undefined) continue;
    const flagValue = variable.flag ? flags[overrideName(variable.flag)] : undefined;
    const text = flagValue || envValue(variable, env);
    if (!text) continue;
    const primary = variable.names[0];
    if (variable.requires !== undefined && !given.has(variable.requires)) {
      const required = ENV_VARIABLES.find((v) => v.names[0] === variable.requires);
      issues.push(`${[variable.flag, primary].filter(Boolean).join(' / ')}: only applies together with ${[required?.flag, variable.requires].filter(Boolean).join(' / ')}`);
      continue;
    }
    given.add(primary);
    setPath(config, variable.key, variable.parse ? variable.parse(text) : text);
    for (const [key, value] of Object.entries(variable.implies ?? {})) setPath(config, key, value);
  }
  return issues;
}

/** Sets 'a.b', 'a[0].b' in a plain-object tree, copying the objects on the way so the caller's input is never changed. */
function setPath(root: Record<string, unknown>, keyPath: string, value: unknown): void {
  const keys = keyPath.split(/\.|\[(\d+)\]\.?/).filter((k) => k !== undefined && k !== '');
  let node: Record<string, unknown> = root;
  keys.forEach((key, i) => {
    if (i === keys.length - 1) {
      node[key] = value;
      return;
    }
    const next = node[key];
    const numericNext = /^\d+$/.test(keys[i + 1] as string);
    node[key] = Array.isArray(next) ? [...next] : next && typeof next === 'object' ? { ...(next as object) } : numericNext ? [] : {};
    node = node[key] as Record<string, unknown>;
  });
}

function describeIssue(issue: z.core.$ZodIssue, prefix: readonly PropertyKey[] = []): string[] {
  const keyPath = [...prefix, ...issue.path];
  if (issue.code === 'invalid_union') {
    // A union of a shorthand and a full form (prefetch.images: 'image' or {image, refresh}): report
    // the problems of the one form whose type matched, rather than a bare 'Invalid input'.
    const matched = issue.errors.filter((branch) => !branch.every((i) => i.code === 'invalid_type' && i.path.length === 0));
    if (matched.length === 1) return (matched[0] as z.core.$ZodIssue[]).flatMap((i) => describeIssue(i, keyPath));
  }
  const where = keyPath.length === 0 ? 'config' : keyPath.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('');
  if (issue.code === 'unrecognized_keys') return [`${where}: unknown key(s) ${issue.keys.map((k) => `'${k}'`).join(', ')}`];
  if (issue.code === 'invalid_type' && issue.message.includes('undefined')) return [`${where} is required`];
  if (issue.message.startsWith('is required')) return [`${where} ${issue.message}`];
  return [`${where}: ${issue.message}`];
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
