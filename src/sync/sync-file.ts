/**
 * @module sync/sync-file
 * The image list `ocimirror sync FILE` reads: skopeo sync's YAML format (`skopeo sync --src yaml`),
 * unchanged, so an existing file works as it is, plus a few keys skopeo has no need for. Every
 * problem is reported with its key path (`docker.io.images-by-semver.alpine: invalid semver
 * range`), all of them in one pass, as the mirror's own config is.
 *
 *   <registry>:                        # a registry host: docker.io, quay.io, localhost:5000
 *     images:                          # skopeo: repository → tags and digests to copy
 *       busybox: []                    #   an empty list: every tag
 *       redis: ['7.2', 'sha256:…']
 *     images-by-tag-regex:             # skopeo: repository → a regex the tags must match (unanchored)
 *       nginx: ^1\.25\.\d+-alpine$
 *     images-by-semver:                # skopeo: repository → a semver range ('>= 3.19', '^1.2 || ~2.0');
 *       alpine: '>= 3.19'              #   tags that are not versions ('latest') never match
 *     credentials: { username: u, password: p }   # skopeo: for a registry no configured upstream serves
 *     tls-verify: true                 # skopeo: false = plain http (no configured upstream only)
 *     cert-dir: /etc/certs             # skopeo: accepted; the mirror verifies TLS with the system CAs
 *     # ocimirror's own keys, which skopeo would reject:
 *     platforms: [linux/amd64]         # platforms of an index to copy, or 'all' (default: prefetch.platforms)
 *     referrers: true                  # also copy manifests whose subject is a copied manifest
 *                                      #   (signatures, SBOMs), where the registry has the referrers API
 *     latest: 3                        # of the tags a listing selected (all, regex, semver), keep the 3
 *                                      #   highest: versions in semver order, other tags after them
 *     tags-deny: ['-rc\d*$', debug]    # regexes removing tags a listing selected
 *
 * `latest` and `tags-deny` apply to tags chosen from the registry's tag list; tags written out
 * under `images` are copied as written.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { isDigest } from '../registry/digest.ts';
import { isValidName, isValidTag } from '../registry/reference.ts';
import { validSemverRange } from './tag-selection.ts';

/** A problem with the sync file: every issue names its key path. */
export class SyncFileError extends Error {
  readonly issues: readonly string[];

  constructor(file: string, issues: readonly string[], options?: { cause?: unknown }) {
    super(`invalid sync file ${file}:\n  - ${issues.join('\n  - ')}`, options);
    this.name = 'SyncFileError';
    this.issues = issues;
  }
}

export interface SyncCredentials {
  readonly username: string;
  readonly password: string;
}

/** One registry of the file, with skopeo's keys and ocimirror's. */
export interface SyncSource {
  /** The registry host, lower-cased. */
  readonly registry: string;
  /** Repository → tags and digests; [] = every tag. */
  readonly images: Readonly<Record<string, readonly string[]>>;
  readonly tagRegex: Readonly<Record<string, string>>;
  readonly semver: Readonly<Record<string, string>>;
  readonly credentials: SyncCredentials | undefined;
  readonly tlsVerify: boolean;
  readonly certDir: string | undefined;
  /** Platforms of an index to copy; 'all'; undefined = the mirror's prefetch.platforms. */
  readonly platforms: readonly string[] | 'all' | undefined;
  readonly referrers: boolean;
  readonly latest: number | undefined;
  readonly tagsDeny: readonly string[];
}

export interface SyncFile {
  readonly sources: readonly SyncSource[];
}

/** Registry hosts as skopeo and Docker read them: a dot, a port or 'localhost' makes a host. */
const REGISTRY = /^(localhost|[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+|[a-z0-9]([a-z0-9.-]*[a-z0-9])?:\d{1,5})(:\d{1,5})?$/i;

const PLATFORM = /^[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?$/i;

function compiles(pattern: string): boolean {
  try {
    new RegExp(pattern);
    return true;
  } catch {
    return false;
  }
}

const regex = z.string().refine(compiles, 'invalid regular expression');

const repoName = (key: string) => (isValidName(key) ? undefined : 'invalid repository name (lower-case path components such as library/alpine)');

/** A record keyed by repository names; a bad name is reported at its own key. */
function repositories<T extends z.ZodType>(value: T) {
  return z.record(z.string(), value).superRefine((record, ctx) => {
    for (const key of Object.keys(record)) {
      const problem = repoName(key);
      if (problem) ctx.addIssue({ code: 'custom', path: [key], message: problem });
    }
  });
}

const reference = z.string().refine((r) => isValidTag(r) || isDigest(r), 'expected a tag or a sha256 digest');

const source = z
  .object({
    // `busybox:` with nothing after it is YAML null: skopeo reads it as an empty list.
    images: repositories(z.array(z.union([reference, z.number().transform(String)])).nullable().transform((v) => v ?? [])).optional(),
    'images-by-tag-regex': repositories(regex).optional(),
    'images-by-semver': repositories(z.string().refine(validSemverRange, 'invalid semver range')).optional(),
    credentials: z.object({ username: z.string(), password: z.string() }).strict().optional(),
    'tls-verify': z.boolean().default(true),
    'cert-dir': z.string().optional(),
    platforms: z
      .union([z.literal('all'), z.array(z.string().regex(PLATFORM, 'expected os/arch[/variant] such as linux/amd64')).min(1, "expected at least one platform, or 'all'")])
      .optional(),
    referrers: z.boolean().default(false),
    latest: z.number().int('expected a whole number').min(1, 'expected at least 1').optional(),
    'tags-deny': z.union([regex.transform((r) => [r]), z.array(regex)]).default([]),
  })
  .strict();

const SELECTION_KEYS = ['images', 'images-by-tag-regex', 'images-by-semver'] as const;

const file = z.record(z.string(), source.nullable()).superRefine(
  (record, ctx) => {
    // Runs even when entries failed, so one pass reports every problem: it reads them defensively.
    for (const [registry, entry] of Object.entries(record as Record<string, unknown>)) {
      const e = (entry ?? {}) as Record<string, unknown>;
      const lists = SELECTION_KEYS.some((k) => e[k] !== null && typeof e[k] === 'object' && Object.keys(e[k] as object).length > 0);
      if (!REGISTRY.test(registry)) {
        ctx.addIssue({ code: 'custom', path: [registry], message: 'expected a registry host such as docker.io, quay.io or localhost:5000' });
      } else if (!lists) {
        ctx.addIssue({ code: 'custom', path: [registry], message: 'lists no images (images, images-by-tag-regex or images-by-semver)' });
      }
    }
  },
  { when: () => true },
);

/** `docker.io.images.alpine[2]`: registry hosts hold dots, so the path is written as skopeo users read it. */
function where(path: readonly PropertyKey[]): string {
  if (path.length === 0) return 'sync file';
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('');
}

function describe(issue: z.core.$ZodIssue, prefix: readonly PropertyKey[] = []): string[] {
  const path = [...prefix, ...issue.path];
  if (issue.code === 'invalid_union') {
    // Of a union's forms (a regex or a list of them), report the one whose type matched.
    const matched = issue.errors.filter((branch) => !branch.every((i) => i.code === 'invalid_type' && i.path.length === 0));
    if (matched.length === 1) return (matched[0] as z.core.$ZodIssue[]).flatMap((i) => describe(i, path));
  }
  if (issue.code === 'unrecognized_keys') return [`${where(path)}: unknown key(s) ${issue.keys.map((k) => `'${k}'`).join(', ')}`];
  if (issue.code === 'invalid_type' && issue.message.endsWith('received undefined')) return [`${where(path)} is required`];
  return [`${where(path)}: ${issue.message}`];
}

/** Validates a decoded sync file; `name` is what errors call it (its path). */
export function parseSyncFile(raw: unknown, name = 'sync file'): SyncFile {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new SyncFileError(name, ['expected a mapping of registries to their images (skopeo sync --src yaml format)']);
  }
  const result = file.safeParse(raw);
  if (!result.success) throw new SyncFileError(name, result.error.issues.flatMap((i) => describe(i)));
  const sources = Object.entries(result.data).map(([registry, e]): SyncSource => {
    const entry = e as z.output<typeof source>;
    return {
      registry: registry.toLowerCase(),
      images: entry.images ?? {},
      tagRegex: entry['images-by-tag-regex'] ?? {},
      semver: entry['images-by-semver'] ?? {},
      credentials: entry.credentials,
      tlsVerify: entry['tls-verify'],
      certDir: entry['cert-dir'],
      platforms: entry.platforms,
      referrers: entry.referrers,
      latest: entry.latest,
      tagsDeny: entry['tags-deny'],
    };
  });
  return { sources };
}

/** Reads and validates a sync file (YAML; JSON is YAML too). */
export function readSyncFile(path: string): SyncFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new SyncFileError(path, [`cannot read it: ${(cause as Error).message}`], { cause });
  }
  return parseSyncText(text, path);
}

/** Validates a sync file's text (a file read here, or one sent to a running mirror); `name` is what errors call it. */
export function parseSyncText(text: string, name: string): SyncFile {
  let raw: unknown;
  let asText: unknown;
  try {
    raw = parseYaml(text);
    asText = parseYaml(text, { schema: 'failsafe' });
  } catch (cause) {
    throw new SyncFileError(name, [`not valid YAML: ${(cause as Error).message}`], { cause });
  }
  return parseSyncFile(keepTagText(raw, asText), name);
}

/**
 * Tags are strings, but YAML reads an unquoted `1.0` as the number 1: the tags under `images` are
 * taken as written (from a parse that reads every scalar as a string), so `- 1.0` means tag "1.0".
 */
function keepTagText(raw: unknown, asText: unknown): unknown {
  if (!isRecord(raw) || !isRecord(asText)) return raw;
  const out: Record<string, unknown> = { ...raw };
  for (const [registry, entry] of Object.entries(raw)) {
    const images = isRecord(entry) ? entry.images : undefined;
    const textImages = (asText[registry] as Record<string, unknown> | undefined)?.images;
    if (!isRecord(images) || !isRecord(textImages)) continue;
    const fixed: Record<string, unknown> = {};
    for (const [repo, refs] of Object.entries(images)) {
      const textRefs = textImages[repo];
      fixed[repo] = Array.isArray(refs) && Array.isArray(textRefs)
        ? refs.map((r, i) => (typeof r === 'number' && typeof textRefs[i] === 'string' ? textRefs[i] : r))
        : refs;
    }
    out[registry] = { ...(entry as Record<string, unknown>), images: fixed };
  }
  return out;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
