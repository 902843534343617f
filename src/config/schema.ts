/**
 * @module config/schema
 * The config file's shape, parsed from `unknown` into a typed object. Durations and sizes are
 * strings in the file ('30s', '50GiB') and numbers (ms, bytes) once parsed. Every option is
 * documented in config/ocimirror.yaml.
 */
import { z } from 'zod';
import { parseDuration, parseSize } from './units.ts';

/** A value written with units ('30s', '50GiB', '90%') or as a plain number, parsed by `parse`. */
const unit = (def: string, parse: (v: string | number) => number | undefined, example: string) =>
  z
    .union([z.string(), z.number()])
    .default(def)
    .transform((v, ctx) => {
      const parsed = parse(v);
      if (parsed === undefined) {
        ctx.addIssue({ code: 'custom', message: `expected ${example}, got '${v}'` });
        return z.NEVER;
      }
      return parsed;
    });

const duration = (def: string) => unit(def, parseDuration, "a duration such as '30s', '5m' or '7d'");
const size = (def: string) => unit(def, parseSize, "a size such as '512MiB' or '50GiB'");
/** A fraction as '90%' or 0.9. */
const fraction = (def: string) =>
  unit(
    def,
    (v) => {
      const n = typeof v === 'number' ? v : /^\d+(\.\d+)?%$/.test(v.trim()) ? Number(v.trim().slice(0, -1)) / 100 : Number.NaN;
      return n > 0 && n <= 1 ? n : undefined;
    },
    "a fraction such as '90%' or 0.9",
  );

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

/** An egress proxy for one upstream: its URL and optional basic credentials (from env, ideally). */
const proxySchema = z
  .object({
    url: upstreamUrl,
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
    /** Egress proxy for every request to this upstream (beats egress.httpProxy/httpsProxy). */
    proxy: proxySchema.optional(),
  })
  .strict();

export const configSchema = z
  .object({
    listen: z.string().default('0.0.0.0:5000'),
    storage: z
      .object({
        path: z.string().default('./data'),
        /** Disk quota for blobs; '0' = unlimited. Crossing it evicts least-recently-used blobs. */
        maxSize: size('0'),
        /** Eviction stops once usage is below this fraction of maxSize ('90%' or 0.9). */
        lowWatermark: fraction('90%'),
        /** Blobs unused for this long are evicted even under the quota; '0' = never. */
        maxAge: duration('0'),
      })
      .strict()
      .prefault({}),
    prefetch: z
      .object({
        /** Queue a pulled manifest's config and layers (and chosen platforms of an index) for prefetch. */
        onPull: z.boolean().default(true),
        /** Platforms of an index to prefetch, e.g. [linux/amd64]; empty = all. */
        platforms: z.array(z.string().regex(/^[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?$/i, 'expected os/arch[/variant] such as linux/amd64')).default([]),
        /** Watch list: images re-resolved on schedule, new digests pulled. 'registry/repo:tag', ':*' for every tag. */
        images: z.array(z.union([z.string(), z.object({ image: z.string(), refresh: z.union([z.string(), z.number()]).optional() }).strict()])).default([]),
        /** Default interval for watch-list entries. */
        refresh: duration('1h'),
      })
      .strict()
      .prefault({}),
    /** Images never evicted: 'registry/repo:tag' or 'registry/repo@sha256:…'. */
    pin: z.array(z.string()).default([]),
    jobs: z
      .object({
        concurrency: z.number().int().min(1).max(64).default(2),
        maxAttempts: z.number().int().min(1).max(100).default(5),
        /** First retry delay; doubles per attempt. */
        retryBackoff: duration('5s'),
      })
      .strict()
      .prefault({}),
    gc: z
      .object({
        /** How often the gc job runs; '0' = only on demand (`ocimirror gc`, admin API). */
        interval: duration('1h'),
        /** Blobs referenced by no cached manifest are kept this long before gc removes them. */
        grace: duration('1h'),
      })
      .strict()
      .prefault({}),
    admin: z
      .object({
        /** Bearer token for /admin/v1; unset = the admin API answers 401 to everyone. */
        token: z.string().min(16, 'expected at least 16 characters').optional(),
        tokenEnv: z.string().optional(),
      })
      .strict()
      .prefault({}),
    metrics: z
      .object({
        /** Prometheus metrics at GET /metrics. */
        enabled: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    hotCache: z
      .object({
        maxSize: size('64MiB'),
      })
      .strict()
      .prefault({}),
    /** Egress proxy for upstream requests (HTTP_PROXY, HTTPS_PROXY, NO_PROXY by convention). */
    egress: z
      .object({
        httpProxy: z.string().optional(),
        httpsProxy: z.string().optional(),
        /** Hosts that go direct: comma-separated, as NO_PROXY ('*' = all, '.example.com' = subdomains). */
        noProxy: z.string().default(''),
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
        /** Which blob bodies go out by sendfile(2): fills (clients following a fill), all, off. */
        sendfile: z.enum(['fills', 'all', 'off']).default('fills'),
        /** Use the native addon (sendfile, hashing fills off the event loop) where it is built. */
        nativeAddon: z.boolean().default(true),
        /** Collect garbage after bursts that grew memory (returns memory; a slower first request after idle). */
        idleGc: z.boolean().default(true),
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
  /** This upstream's own egress proxy, credentials resolved; undefined = egress.* applies. */
  readonly proxy: { readonly url: string; readonly username: string | undefined; readonly password: string | undefined } | undefined;
}

export interface WatchEntry {
  /** As written: 'docker.io/library/alpine:3.19', 'ghcr.io/org/app:*'. */
  readonly image: string;
  readonly refresh: number;
}

export interface Config {
  readonly listen: { readonly host: string; readonly port: number };
  readonly storage: { readonly path: string; readonly maxSize: number; readonly lowWatermark: number; readonly maxAge: number };
  readonly prefetch: { readonly onPull: boolean; readonly platforms: readonly string[]; readonly images: readonly WatchEntry[] };
  readonly pin: readonly string[];
  readonly jobs: { readonly concurrency: number; readonly maxAttempts: number; readonly retryBackoff: number };
  readonly gc: { readonly interval: number; readonly grace: number };
  readonly admin: { readonly token: string | undefined };
  readonly metrics: { readonly enabled: boolean };
  readonly hotCache: { readonly maxSize: number };
  readonly upstreams: readonly UpstreamConfig[];
  readonly defaultUpstream: string | undefined;
  readonly egress: { readonly httpProxy: string | undefined; readonly httpsProxy: string | undefined; readonly noProxy: string };
  readonly server: {
    readonly shutdownGrace: number;
    readonly drainDelay: number;
    readonly sendfile: 'fills' | 'all' | 'off';
    readonly nativeAddon: boolean;
    readonly idleGc: boolean;
  };
  readonly log: { readonly level: Parsed['log']['level'] };
}
