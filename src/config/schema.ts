/**
 * @module config/schema
 * The config file's shape, parsed from `unknown` into the resolved {@link Config}: durations and
 * sizes written as strings ('30s', '50GiB') become numbers (ms, bytes), `*Env` secrets are read
 * from the environment the schema is built with, and the rules that span several keys are
 * checked in the same pass as the rest. Every option is documented in config/ocimirror.yaml.
 */
import { isIP } from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import { parseListen } from './listen.ts';
import { parseDuration, parseSize } from './units.ts';

/** The environment `*Env` keys are read from. */
export type Env = Readonly<Record<string, string | undefined>>;

/** A value written with units ('30s', '50GiB', '90%') or as a plain number, parsed by `parse`. */
const unit = (parse: (v: string | number) => number | undefined, example: string) =>
  z.union([z.string(), z.number()]).transform((v, ctx) => {
    const parsed = parse(v);
    if (parsed === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected ${example}, got '${v}'` });
      return z.NEVER;
    }
    return parsed;
  });

const durationValue = unit(parseDuration, "a duration such as '30s', '5m' or '7d'");
const duration = (def: string) => durationValue.prefault(def);
const size = (def: string) => unit(parseSize, "a size such as '512MiB' or '50GiB'").prefault(def);
/** A fraction as '90%' or 0.9. */
const fraction = (def: string) =>
  unit((v) => {
    const n = typeof v === 'number' ? v : /^\d+(\.\d+)?%$/.test(v.trim()) ? Number(v.trim().slice(0, -1)) / 100 : Number.NaN;
    return n > 0 && n <= 1 ? n : undefined;
  }, "a fraction such as '90%' or 0.9").prefault(def);

/** Registry host names as clients spell them: 'docker.io', 'ghcr.io', 'registry.local:5000'. */
const registryName = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$/i, 'expected a registry host such as docker.io or myreg.local:5000')
  .transform((s) => s.toLowerCase());

/** 'is required' only when the key is absent; a value of the wrong type keeps zod's own message. */
const required = { error: (issue: { input: unknown }) => (issue.input === undefined ? 'is required' : undefined) };

const httpUrl = z
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

/**
 * An egress proxy as HTTP_PROXY is written: an http(s) URL, or host:port meaning http://. The message
 * never repeats the value: it may carry the proxy's password.
 */
const egressProxy = z.string().refine((s) => {
  try {
    const u = new URL(s.includes('://') ? s : `http://${s}`);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}, 'expected a proxy URL such as http://proxy.example:3128 or proxy.example:3128 (value not shown: it may hold credentials)');

/** A cluster member's URL, reduced to its origin ('http://10.0.0.11:5000'): members are compared and hashed as text. */
const memberUrl = z
  .string()
  .refine((s) => {
    try {
      const u = new URL(s);
      return (u.protocol === 'http:' || u.protocol === 'https:') && (u.pathname === '/' || u.pathname === '') && u.search === '' && u.hash === '' && u.username === '' && u.password === '';
    } catch {
      return false;
    }
  }, 'expected a scheme, host and port such as http://10.0.0.11:5000 (no path)')
  .transform((s) => new URL(s).origin);

/** A DNS server as node:dns takes it: an address, with an optional port ('127.0.0.1:5353', '[::1]:53'). */
const dnsServer = z.string().refine((s) => {
  const m = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(s) ?? /^([^:]+)(?::(\d{1,5}))?$/.exec(s);
  const host = m?.[1] ?? s;
  const port = m?.[2];
  return isIP(host) !== 0 && (port === undefined || (Number(port) >= 1 && Number(port) <= 65535));
}, "expected a DNS server address such as 10.96.0.10, 127.0.0.1:5353 or [::1]:53");

/** An address block as '10.0.0.0/8', '::1/128' or a bare address (a /32 or /128). */
const cidr = z.string().refine((s) => {
  const [addr = '', bits, extra] = s.split('/');
  const family = isIP(addr);
  if (family === 0 || extra !== undefined) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}, "expected an address block such as 10.0.0.0/8, 127.0.0.1/32 or ::1/128");

const listenAddress = z
  .string()
  .default('0.0.0.0:5000')
  .transform((text, ctx) => {
    const listen = parseListen(text);
    if (!listen) {
      ctx.addIssue({ code: 'custom', message: `expected host:port such as 0.0.0.0:5000, got '${text}'` });
      return z.NEVER;
    }
    return listen;
  });

const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/** Username and password, each written in the file or named by a `*Env` variable. */
const credentialKeys = {
  username: z.string().optional(),
  usernameEnv: z.string().optional(),
  password: z.string().optional(),
  passwordEnv: z.string().optional(),
};

type Ctx = z.core.$RefinementCtx<unknown>;
const unset = (ctx: Ctx, key: string, variable: string) =>
  ctx.addIssue({ code: 'custom', path: [key], message: `environment variable ${variable} is not set` });

const unsetOrEmpty = (ctx: Ctx, key: string, variable: string, env: Env) =>
  env[variable] === undefined ? unset(ctx, key, variable) : ctx.addIssue({ code: 'custom', path: [key], message: `environment variable ${variable} is empty` });

/** A value from the file, else from the environment variable its `*Env` key names (checked: that variable must be set). */
function secret(ctx: Ctx, env: Env, value: string | undefined, envKey: string, variable: string | undefined): string | undefined {
  if (value !== undefined || variable === undefined) return value;
  const fromEnv = env[variable];
  if (fromEnv === undefined) unset(ctx, envKey, variable);
  return fromEnv;
}

/** Both halves of {@link credentialKeys}, each resolved by {@link secret}. */
function credentials(ctx: Ctx, env: Env, c: Partial<Record<keyof typeof credentialKeys, string>>): { username: string | undefined; password: string | undefined } {
  return {
    username: secret(ctx, env, c.username, 'usernameEnv', c.usernameEnv),
    password: secret(ctx, env, c.password, 'passwordEnv', c.passwordEnv),
  };
}

/** Builds the schema; `env` is where `auth.passwordEnv`, `admin.tokenEnv` and `proxy.passwordEnv` are read. */
export function createConfigSchema(env: Env = {}) {
  const auth = z
    .object(credentialKeys)
    .strict()
    .transform((a, ctx): UpstreamAuthShape | undefined => {
      const { username, password } = credentials(ctx, env, a);
      if (a.username === undefined && a.usernameEnv === undefined) ctx.addIssue({ code: 'custom', path: ['username'], message: 'is required' });
      if (a.password === undefined && a.passwordEnv === undefined) ctx.addIssue({ code: 'custom', path: ['password'], message: 'is required (or passwordEnv)' });
      return username === undefined || password === undefined ? undefined : { username, password };
    });

  /** An egress proxy for one upstream: its URL and optional basic credentials (from env, ideally). */
  const proxy = z
    .object({ url: httpUrl, ...credentialKeys })
    .strict()
    .transform((p, ctx) => {
      // A password alone would be dropped without a word: Basic needs a username (an empty password is fine).
      if (p.username === undefined && p.usernameEnv === undefined && (p.password !== undefined || p.passwordEnv !== undefined)) {
        ctx.addIssue({ code: 'custom', path: ['username'], message: 'is required with a password (or usernameEnv)' });
      }
      return { url: p.url, ...credentials(ctx, env, p) };
    });

  const upstream = z
    .object({
      name: z.string(required).regex(/^[a-z0-9][a-z0-9_-]*$/i, 'expected letters, digits, - or _'),
      /** The upstream's base URL; or `urls`, several mirrors of the same content tried in order. */
      url: httpUrl.optional(),
      urls: z.array(httpUrl).min(1, 'expected at least one URL').optional(),
      /** A URL that failed to answer (network error, timeout, 5xx) is skipped this long. */
      failover: z.object({ backoff: duration('30s') }).strict().prefault({}),
      /** Background prefetch and refresh pause while the registry's RateLimit-Remaining is under this; 0 = never. */
      rateLimitFloor: z.number().int().min(0).default(0),
      registries: z.array(registryName).default([]),
      tagTTL: duration('5m'),
      /** Connect and response-header timeout for one upstream request; manifests and lists must arrive whole within it. */
      timeout: duration('30s'),
      /** The longest silence between two chunks of an upstream response body before it is given up. */
      bodyTimeout: duration('30s'),
      /** Upper bound for one whole blob fill, detached from any client. */
      fillTimeout: duration('1h'),
      auth: auth.optional(),
      /** Token realms on other hosts that may receive this upstream's credentials (Docker Hub: auth.docker.io). */
      realmHosts: z.array(z.string()).default([]),
      /** Egress proxy for every request to this upstream (beats egress.httpProxy/httpsProxy). */
      proxy: proxy.optional(),
      /** Never contact it (air-gapped): serve cached and imported content, tags never expire; url may be left out. */
      offline: z.boolean().default(false),
    })
    .strict()
    .superRefine(
      (u, ctx) => {
        // Exactly one of url and urls (none for an offline upstream). Runs even when other keys failed, so it reads defensively.
        if (u.offline === true && u.url === undefined && u.urls === undefined) return;
        if ((u.url === undefined) === (u.urls === undefined)) {
          ctx.addIssue({ code: 'custom', path: ['url'], message: u.url === undefined ? 'is required' : 'expected url or urls, not both' });
        }
        const seen = new Set<string>();
        (Array.isArray(u.urls) ? u.urls : []).forEach((url, i) => {
          if (typeof url !== 'string') return;
          if (seen.has(url)) ctx.addIssue({ code: 'custom', path: ['urls', i], message: `'${url}' is listed twice` });
          seen.add(url);
        });
      },
      { when: () => true },
    )
    .transform((u) => {
      // An offline upstream without a URL gets its first registry's, which is never dialled.
      const urls = u.urls ?? [u.url ?? `https://${u.registries[0] ?? 'offline.invalid'}`];
      const { urls: _urls, ...rest } = u;
      return { ...rest, url: urls[0] as string, urls, realmHosts: u.realmHosts.map((h) => h.toLowerCase()), auth: u.auth, proxy: u.proxy };
    });

  const hosted = z
    .object({
      /** The registry name clients use: `/v2/<name>/<repo>/…`, `?ns=<name>` or Host `<name>`. */
      name: registryName,
      /** Quota for this registry's pushed content (blobs and manifests); '0' = unlimited. Refused at push with 507. */
      maxSize: size('0'),
    })
    .strict()
    .transform((h) => ({ ...h, name: h.name.toLowerCase() }));

  const watchEntry = z.union([z.string(), z.object({ image: z.string(), refresh: durationValue.optional() }).strict()]);

  const admin = z
    .object({
      /** Bearer token for /admin/v1; unset = the admin API answers 401 to everyone. */
      token: z.string().optional(),
      tokenEnv: z.string().optional(),
    })
    .strict()
    .prefault({})
    .transform((a, ctx) => {
      const token = secret(ctx, env, a.token, 'tokenEnv', a.tokenEnv);
      if (token !== undefined && token.length < 16) {
        const where = a.token !== undefined ? 'token' : 'tokenEnv';
        ctx.addIssue({ code: 'custom', path: [where], message: where === 'token' ? 'expected at least 16 characters' : `${a.tokenEnv} holds fewer than 16 characters` });
      }
      return { token };
    });

  /**
   * The shared blob bucket. Keys come from the variables accessKeyIdEnv/secretAccessKeyEnv name (AWS's
   * own by default), else from credentialsFile; with neither, the AWS SDK's default chain (instance role).
   */
  const s3 = z
    .object({
      /** Unset = AWS S3 itself for the region. */
      endpoint: httpUrl.optional(),
      bucket: z.string(required).min(1),
      region: z.string().min(1).default('us-east-1'),
      prefix: z.string().regex(/^$|\/$/, "expected '' or a path ending in '/'").default(''),
      forcePathStyle: z.boolean().default(true),
      accessKeyIdEnv: z.string().min(1).optional(),
      secretAccessKeyEnv: z.string().min(1).optional(),
      credentialsFile: z.string().min(1).transform((p) => path.resolve(p)).optional(),
      caFile: z.string().min(1).transform((p) => path.resolve(p)).optional(),
    })
    .strict()
    .transform((b, ctx) => {
      const { accessKeyIdEnv, secretAccessKeyEnv, ...rest } = b;
      const named = accessKeyIdEnv !== undefined || secretAccessKeyEnv !== undefined;
      if (named && b.credentialsFile !== undefined) ctx.addIssue({ code: 'custom', path: ['credentialsFile'], message: 'expected accessKeyIdEnv/secretAccessKeyEnv or credentialsFile, not both' });
      const idVar = accessKeyIdEnv ?? 'AWS_ACCESS_KEY_ID';
      const secretVar = secretAccessKeyEnv ?? 'AWS_SECRET_ACCESS_KEY';
      // AWS's own variable names may be unset (the SDK chain takes over); variables named here must be set.
      // An empty one (a Secret not filled in yet) is refused too: the bucket would answer 403 to every request.
      const missing = (v: string) => env[v] === undefined || env[v] === '';
      if (accessKeyIdEnv !== undefined && missing(idVar)) unsetOrEmpty(ctx, 'accessKeyIdEnv', idVar, env);
      if (secretAccessKeyEnv !== undefined && missing(secretVar)) unsetOrEmpty(ctx, 'secretAccessKeyEnv', secretVar, env);
      const accessKeyId = env[idVar];
      const secretAccessKey = env[secretVar];
      const credentials = b.credentialsFile === undefined && accessKeyId !== undefined && secretAccessKey !== undefined ? { accessKeyId, secretAccessKey } : undefined;
      return { ...rest, credentials };
    });

  /**
   * Replicas that know each other: `self`, and the members as a static `peers` list or the A/AAAA
   * records of `dns` (a headless Service; every member on self's scheme and port). Member URLs are
   * normalised to their origin, so every replica spells (and hashes) a member the same way.
   */
  const cluster = z
    .object({
      self: memberUrl.optional(),
      /** How `self` is read from the environment (Kubernetes: `http://$(POD_IP):5000`). */
      selfEnv: z.string().min(1).optional(),
      peers: z.array(memberUrl).min(1, 'expected at least one member (self included)').optional(),
      dns: z.string().regex(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?\.?$/i, 'expected a DNS name such as ocimirror-headless.ns.svc.cluster.local').optional(),
      /** The DNS server asked for `dns` ('10.96.0.10', '127.0.0.1:5353'); unset = the system's. */
      dnsServer: dnsServer.optional(),
      secret: z.string().optional(),
      secretEnv: z.string().optional(),
      healthInterval: duration('2s'),
      failAfter: z.number().int().min(1).max(100).default(3),
    })
    .strict()
    .superRefine((c, ctx) => {
      if (c.self === undefined && c.selfEnv === undefined) ctx.addIssue({ code: 'custom', path: ['self'], message: 'is required (or selfEnv)' });
      if ((c.peers === undefined) === (c.dns === undefined)) {
        ctx.addIssue({ code: 'custom', path: ['peers'], message: c.peers === undefined ? 'is required (or dns)' : 'expected peers or dns, not both' });
      }
      if (c.dnsServer !== undefined && c.dns === undefined) ctx.addIssue({ code: 'custom', path: ['dnsServer'], message: 'applies only with dns' });
      if (c.secret === undefined && c.secretEnv === undefined) ctx.addIssue({ code: 'custom', path: ['secretEnv'], message: 'is required (or secret)' });
    })
    .transform((c, ctx) => {
      let self = c.self;
      if (self === undefined && c.selfEnv !== undefined) {
        const text = env[c.selfEnv];
        if (text === undefined) unset(ctx, 'selfEnv', c.selfEnv);
        else {
          const parsed = memberUrl.safeParse(text);
          if (parsed.success) self = parsed.data;
          else ctx.addIssue({ code: 'custom', path: ['selfEnv'], message: `${c.selfEnv} holds '${text}': ${parsed.error.issues[0]?.message ?? 'not a URL'}` });
        }
      }
      const peers = c.peers === undefined ? undefined : [...new Set(c.peers)];
      if (self !== undefined && peers !== undefined && !peers.includes(self)) {
        ctx.addIssue({ code: 'custom', path: ['peers'], message: `expected to list self (${self}): every replica must see the same members` });
      }
      const value = secret(ctx, env, c.secret, 'secretEnv', c.secretEnv);
      // The secret opens the internal API on every replica: at least 256 bits' worth of characters.
      if (value !== undefined && value.length < 32) {
        const where = c.secret !== undefined ? 'secret' : 'secretEnv';
        ctx.addIssue({ code: 'custom', path: [where], message: where === 'secret' ? 'expected at least 32 characters' : `${c.secretEnv} holds fewer than 32 characters` });
      }
      return { self: self ?? '', peers, dns: c.dns?.replace(/\.$/, '').toLowerCase(), dnsServer: c.dnsServer, secret: value ?? '', healthInterval: c.healthInterval, failAfter: c.failAfter };
    });

  const role = z.enum(['pull', 'push', 'admin']);
  const clientAuth = z
    .object({
      /** Accounts: an htpasswd file of bcrypt hashes (`htpasswd -B`), re-read when it changes. */
      htpasswd: z.string().min(1).transform((p) => path.resolve(p)).optional(),
      /** What requests without credentials may do: none, or pull every repository. */
      anonymous: z.enum(['none', 'pull']).default('none'),
      /** Named sets of accounts that rules can refer to. */
      groups: z.record(z.string(), z.array(z.string())).default({}),
      /** First match wins: who (accounts or groups) may do what (roles) on which repositories ('docker.io/library/*', '**'). */
      rules: z
        .array(
          z
            .object({
              accounts: z.array(z.string()).default([]),
              groups: z.array(z.string()).default([]),
              repositories: z.array(z.string().min(1)).min(1),
              roles: z.array(role).min(1),
            })
            .strict(),
        )
        .default([]),
      /**
       * Mutual TLS (tls.clientCA): a request without an Authorization header is made by the account its
       * certificate's subject CN names. First match wins; `cn` takes `*`; no `account` = the CN itself.
       */
      certificates: z
        .array(z.object({ cn: z.string().min(1), account: z.string().min(1).optional() }).strict())
        .default([{ cn: '*' }]),
      /** Key that signs bearer tokens (file of at least 32 bytes); default: generated in the data directory. */
      tokenKey: z.string().min(1).transform((p) => path.resolve(p)).optional(),
      /** Lifetime of a bearer token from /auth/token. */
      tokenTTL: duration('5m'),
      /** The `service` named in challenges and tokens; a token for another service is refused. */
      service: z.string().min(1).default('ocimirror'),
    })
    .strict();

  return z
    .object({
      listen: listenAddress,
      storage: z
        .object({
          path: z.string().default('./data').transform((p) => path.resolve(p)),
          /**
           * Quota for blobs; '0' = unlimited. Crossing it evicts least-recently-used blobs: from this disk,
           * or with backend s3 from the bucket (localCache.maxSize bounds the disk then).
           */
          maxSize: size('0'),
          /** Eviction stops once usage is below this fraction of maxSize ('90%' or 0.9). */
          lowWatermark: fraction('90%'),
          /** Blobs unused for this long are evicted even under the quota; '0' = never. */
          maxAge: duration('0'),
          /** Where blobs live: this disk, or an S3-compatible bucket shared by several replicas (storage.s3). */
          backend: z.enum(['filesystem', 's3']).default('filesystem'),
          s3: s3.optional(),
          /** With backend s3: this replica's disk tier of hot blobs in front of the bucket (LRU); '0' = unlimited. */
          localCache: z.object({ maxSize: size('0') }).strict().prefault({}),
        })
        .strict()
        .superRefine((st, ctx) => {
          if (st.backend !== 's3') return;
          if (st.s3 === undefined) ctx.addIssue({ code: 'custom', path: ['s3'], message: 'is required when backend is s3' });
        }, { when: () => true })
        .prefault({}),
      prefetch: z
        .object({
          /** Queue a pulled manifest's config and layers (and chosen platforms of an index) for prefetch. */
          onPull: z.boolean().default(true),
          /** Platforms of an index to prefetch, e.g. [linux/amd64]; empty = all. */
          platforms: z.array(z.string().regex(/^[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?$/i, 'expected os/arch[/variant] such as linux/amd64')).default([]),
          /** Watch list: images re-resolved on schedule, new digests pulled. 'registry/repo:tag', ':*' for every tag. */
          images: z.array(watchEntry).default([]),
          /** Default interval for watch-list entries. */
          refresh: duration('1h'),
        })
        .strict()
        .prefault({})
        .transform((p) => ({
          onPull: p.onPull,
          platforms: p.platforms,
          images: p.images.map((e): WatchEntry => (typeof e === 'string' ? { image: e, refresh: p.refresh } : { image: e.image, refresh: e.refresh ?? p.refresh })),
        })),
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
          /** Blob uploads to hosted repositories untouched this long are abandoned: gc removes them. */
          uploadMaxAge: duration('24h'),
        })
        .strict()
        .prefault({}),
      /** Image lists (skopeo sync YAML) synced on a schedule as background jobs. */
      sync: z
        .array(
          z
            .object({
              /** The sync file, read at each run. */
              file: z.string(required).min(1).transform((p) => path.resolve(p)),
              /** `cache`, or a hosted registry with an optional repository prefix (`registry.internal/mirrored`). */
              dest: z.string().min(1).default('cache'),
              /** How often; the first run is at start-up (or when the entry appears on a reload). */
              interval: duration('6h'),
            })
            .strict(),
        )
        .default([]),
      admin,
      /** Replicas that know each other (membership and health); unset = a single node. */
      cluster: cluster.optional(),
      /** Client accounts; unset = anonymous pulls, as a public registry. */
      auth: clientAuth.optional(),
      /** The web console under /console/, served when the admin API is (admin.token or client auth). */
      console: z
        .object({
          enabled: z.boolean().default(true),
          /** How long a console login lasts; sessions live in memory, so a restart signs everyone out. */
          sessionTTL: duration('12h'),
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
      hotCache: z.object({ maxSize: size('64MiB') }).strict().prefault({}),
      /** Egress proxy for upstream requests (HTTP_PROXY, HTTPS_PROXY, NO_PROXY by convention). */
      egress: z
        .object({
          httpProxy: egressProxy.optional(),
          httpsProxy: egressProxy.optional(),
          /** Hosts that go direct: comma-separated, as NO_PROXY ('*' = all, '.example.com' = subdomains). */
          noProxy: z.string().default(''),
        })
        .strict()
        .prefault({}),
      upstreams: z.array(upstream).default([]),
      /** Registries whose content is pushed here (the push API), never fetched, refreshed or evicted. */
      hosted: z.array(hosted).default([]),
      /** The upstream (or hosted registry) for names that say no registry (Docker's registry-mirrors). */
      defaultUpstream: z.string().optional(),
      server: z
        .object({
          shutdownGrace: duration('30s'),
          /** Seconds /readyz reports 503 before the listener closes, so load balancers stop routing first. */
          drainDelay: duration('0s'),
          /** How long a client may take to send a request's headers before it gets 408 (slow-header senders hold connections). */
          headersTimeout: duration('30s'),
          /** Which blob bodies go out by sendfile(2): fills (clients following a fill), all, off. */
          sendfile: z.enum(['fills', 'all', 'off']).default('fills'),
          /** Use the native addon (sendfile, hashing fills off the event loop) where it is built. */
          nativeAddon: z.boolean().default(true),
          /** Collect garbage after bursts that grew memory (returns memory; a slower first request after idle). */
          idleGc: z.boolean().default(true),
          /** Accept PROXY protocol v1/v2 headers from these peers only (an L4 balancer); others are cut. */
          proxyProtocol: z
            .object({
              trustedCidrs: z.array(cidr).min(1),
              /** How long a peer may take to send the header before the connection is closed. */
              timeout: duration('5s'),
            })
            .strict()
            .optional(),
          /** Peers (an L7 ingress) whose X-Forwarded-For names the client; empty = never read it. */
          trustedProxies: z.array(cidr).default([]),
        })
        .strict()
        .prefault({}),
      log: z.object({ level: logLevel.default('info') }).strict().prefault({}),
      /** Serve HTTPS: PEM files, reloaded when they change; clientCA asks for client certificates. */
      tls: z
        .object({
          cert: z.string(required).min(1),
          key: z.string(required).min(1),
          clientCA: z.string().min(1).optional(),
        })
        .strict()
        .optional(),
    })
    .strict()
    .superRefine((config, ctx) => checkUpstreams(config as unknown as Partial<Record<string, unknown>>, ctx), {
      // Run even when other keys failed, so one pass reports every problem.
      when: () => true,
    });
}

/**
 * Rules across upstreams and hosted registries: unique names, each registry served by one
 * upstream or hosted, a defaultUpstream that names one of them. It runs on whatever parsed, so it reads the values defensively.
 */
function checkUpstreams(config: Partial<Record<string, unknown>>, ctx: z.core.$RefinementCtx<unknown>): void {
  const upstreams = Array.isArray(config.upstreams) ? (config.upstreams as Array<{ name?: unknown; registries?: unknown } | undefined>) : [];
  const names = new Set<string>();
  const owner = new Map<string, number>(); // registry → index of the first upstream serving it
  upstreams.forEach((u, i) => {
    const name = typeof u?.name === 'string' ? u.name : undefined;
    if (name !== undefined) {
      if (names.has(name)) ctx.addIssue({ code: 'custom', path: ['upstreams', i, 'name'], message: `'${name}' is used by another upstream` });
      names.add(name);
    }
    const registries = Array.isArray(u?.registries) ? u.registries.filter((r): r is string => typeof r === 'string').map((r) => r.toLowerCase()) : [];
    for (const reg of registries) {
      const first = owner.get(reg);
      if (first === undefined) owner.set(reg, i);
      else if (first !== i) ctx.addIssue({ code: 'custom', path: ['upstreams', i, 'registries'], message: `'${reg}' is already served by upstream '${String(upstreams[first]?.name)}'` });
    }
  });
  // Hosted registries share the namespace clients route by: a name serves one thing only.
  const hosted = Array.isArray(config.hosted) ? (config.hosted as Array<{ name?: unknown } | undefined>) : [];
  const hostedNames = new Set<string>();
  hosted.forEach((h, i) => {
    if (typeof h?.name !== 'string') return;
    const name = h.name.toLowerCase();
    if (hostedNames.has(name)) ctx.addIssue({ code: 'custom', path: ['hosted', i, 'name'], message: `'${name}' is listed twice` });
    else if (owner.has(name)) ctx.addIssue({ code: 'custom', path: ['hosted', i, 'name'], message: `'${name}' is already served by upstream '${String(upstreams[owner.get(name) as number]?.name)}'` });
    else if (names.has(name)) ctx.addIssue({ code: 'custom', path: ['hosted', i, 'name'], message: `'${name}' is the name of an upstream` });
    hostedNames.add(name);
  });
  const syncs = Array.isArray(config.sync) ? (config.sync as Array<{ dest?: unknown } | undefined>) : [];
  syncs.forEach((entry, i) => {
    const dest = typeof entry?.dest === 'string' ? entry.dest.replace(/\/+$/, '') : 'cache';
    const registry = dest.split('/')[0]?.toLowerCase() ?? '';
    if (dest !== 'cache' && !hostedNames.has(registry)) ctx.addIssue({ code: 'custom', path: ['sync', i, 'dest'], message: `expected 'cache' or a hosted registry (hosted[].name) with an optional repository prefix, got '${dest}'` });
  });
  const def = config.defaultUpstream;
  if (typeof def === 'string' && !names.has(def) && !hostedNames.has(def.toLowerCase())) {
    ctx.addIssue({ code: 'custom', path: ['defaultUpstream'], message: `'${def}' is not the name of a configured upstream or hosted registry` });
  }
}

type ConfigSchema = ReturnType<typeof createConfigSchema>;

/** What a config file may hold (durations and sizes as strings, `*Env` secrets by name). */
export type RawConfig = z.input<ConfigSchema>;

type DeepReadonly<T> = T extends (infer E)[] ? readonly DeepReadonly<E>[] : T extends object ? { readonly [K in keyof T]: DeepReadonly<T[K]> } : T;

/** The resolved config: numbers in ms and bytes, secrets read, deeply frozen by the loader. */
export type Config = DeepReadonly<z.output<ConfigSchema>>;
export type UpstreamConfig = Config['upstreams'][number];

interface UpstreamAuthShape {
  username: string;
  password: string;
}
export type UpstreamAuth = Readonly<UpstreamAuthShape>;

export interface WatchEntry {
  /** As written: 'docker.io/library/alpine:3.19', 'ghcr.io/org/app:*'. */
  readonly image: string;
  /** Re-resolve interval, ms. */
  readonly refresh: number;
}
