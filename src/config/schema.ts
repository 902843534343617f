/**
 * @module config/schema
 * The config file's shape, parsed from `unknown` into a typed object. Durations and sizes are
 * strings in the file ('30s', '50GiB') and numbers (ms, bytes) once parsed. Every option is
 * documented in config/ocimirror.yaml.
 */
import { z } from 'zod';
import { parseDuration, parseSize } from './units.ts';

const duration = (def: string) =>
  z
    .union([z.string(), z.number()])
    .default(def)
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: `expected a duration such as '30s', '5m' or '7d', got '${v}'` });
        return z.NEVER;
      }
      return ms;
    });

const size = (def: string) =>
  z
    .union([z.string(), z.number()])
    .default(def)
    .transform((v, ctx) => {
      const bytes = parseSize(v);
      if (bytes === undefined) {
        ctx.addIssue({ code: 'custom', message: `expected a size such as '512MiB' or '50GiB', got '${v}'` });
        return z.NEVER;
      }
      return bytes;
    });

/** Registry host names as clients spell them: 'docker.io', 'ghcr.io', 'registry.local:5000'. */
const registryName = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$/i, 'expected a registry host such as docker.io or myreg.local:5000')
  .transform((s) => s.toLowerCase());

/** 'is required' only when the key is absent; a value of the wrong type keeps zod's own message. */
const required = { error: (issue: { input: unknown }) => (issue.input === undefined ? 'is required' : undefined) };

const upstreamUrl = z
  .string(required)
  .refine((s) => {
    try {
      const u = new URL(s);
      return (u.protocol === 'http:' || u.protocol === 'https:') && u.search === '' && u.hash === '';
    } catch {
      return false;
    }
  }, 'expected an http(s) URL such as https://registry-1.docker.io')
  .transform((s) => s.replace(/\/+$/, ''));

const authSchema = z
  .object({
    username: z.string().optional(),
    usernameEnv: z.string().optional(),
    password: z.string().optional(),
    passwordEnv: z.string().optional(),
  })
  .strict();

const upstreamSchema = z
  .object({
    name: z.string(required).regex(/^[a-z0-9][a-z0-9_-]*$/i, 'expected letters, digits, - or _'),
    url: upstreamUrl,
    registries: z.array(registryName).default([]),
    tagTTL: duration('5m'),
    /** Connect and response-header timeout for one upstream request. */
    timeout: duration('30s'),
    /** Upper bound for one whole blob fill, detached from any client. */
    fillTimeout: duration('1h'),
    auth: authSchema.optional(),
    /** Token realms on other hosts that may receive this upstream's credentials (Docker Hub: auth.docker.io). */
    realmHosts: z.array(z.string()).default([]),
  })
  .strict();

export const configSchema = z
  .object({
    listen: z.string().default('0.0.0.0:5000'),
    storage: z
      .object({
        path: z.string().default('./data'),
      })
      .strict()
      .prefault({}),
    hotCache: z
      .object({
        maxSize: size('64MiB'),
      })
      .strict()
      .prefault({}),
    upstreams: z.array(upstreamSchema).default([]),
    defaultUpstream: z.string().optional(),
    server: z
      .object({
        shutdownGrace: duration('30s'),
        /** Seconds /readyz reports 503 before the listener closes, so load balancers stop routing first. */
        drainDelay: duration('0s'),
      })
      .strict()
      .prefault({}),
    log: z
      .object({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type RawConfig = z.input<typeof configSchema>;
type Parsed = z.output<typeof configSchema>;

export interface UpstreamAuth {
  readonly username: string;
  readonly password: string;
}

export interface UpstreamConfig {
  readonly name: string;
  readonly url: string;
  readonly registries: readonly string[];
  readonly tagTTL: number;
  readonly timeout: number;
  readonly fillTimeout: number;
  readonly auth: UpstreamAuth | undefined;
  readonly realmHosts: readonly string[];
}

export interface Config {
  readonly listen: { readonly host: string; readonly port: number };
  readonly storage: { readonly path: string };
  readonly hotCache: { readonly maxSize: number };
  readonly upstreams: readonly UpstreamConfig[];
  readonly defaultUpstream: string | undefined;
  readonly server: { readonly shutdownGrace: number; readonly drainDelay: number };
  readonly log: { readonly level: Parsed['log']['level'] };
}
