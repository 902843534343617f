/**
 * skopeo (containers/image, the library podman and CRI-O use) as a registry-mirror client for e2e tests.
 *
 * Facts this relies on (skopeo 1.9.3, see /work/shared/peers.md):
 *  - skopeo ignores CONTAINERS_REGISTRIES_CONF: pass `--registries-conf FILE` (a hidden global flag), which is what
 *    skopeoCopy/skopeoInspect* do when opts.registriesConf is given. podman honours the env var.
 *  - Drop-ins in /etc/containers/registries.conf.d are still read next to that file (on Debian: short-name aliases only).
 *  - `--insecure-policy` is passed unless opts.policy is given, so no /etc/containers/policy.json is needed.
 *  - registries.conf v2 mirror `location = "127.0.0.1:PORT/docker.io"` makes containers/image send
 *    `/v2/docker.io/library/alpine/...` (path-prefix routing); a mirror without a path sends `/v2/library/alpine/...`.
 *    It sends no `ns` query, starts with a TLS ClientHello on a plain-http port before retrying over http
 *    (`insecure = true`), then `GET /v2/`, GET (not HEAD) of the manifest by tag, blobs without Accept.
 *  - `oci:` destinations (measured with 1.9.3): without --preserve-digests a Docker schema2 manifest is converted to
 *    OCI (new digest); with it a single Docker manifest is stored as-is (same digest), but a Docker manifest LIST with
 *    --all fails ("must be converted to ... oci.image.index"): copy Docker lists to `dir:` to compare digests.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CommandError, hasBinary, runCommand, type RunResult } from './containerd.ts';

export { CommandError } from './containerd.ts';

export interface SkopeoGlobalOptions {
  /** registries.conf (v2) to use: passed as `--registries-conf FILE`. */
  registriesConf?: string;
  /** Trust policy file; default: `--insecure-policy`. */
  policy?: string;
  /** `--tmpdir` for big temporary blobs (default /var/tmp). */
  tmpDir?: string;
  /** `--debug`: logs every HTTP request skopeo makes to stderr. */
  debug?: boolean;
  /** Default 120 000 ms. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

export interface SkopeoCopyOptions extends SkopeoGlobalOptions {
  /** `--src-tls-verify=<v>`; default false (every registry in these tests is plain http on loopback). */
  srcTlsVerify?: boolean;
  /** `--dest-tls-verify=<v>`; default false. */
  destTlsVerify?: boolean;
  /** `--all`: copy every image of a list/index (default: only the one matching this machine's platform). */
  all?: boolean;
  /** `--preserve-digests`: fail rather than convert manifests (so the destination digest equals the source's). */
  preserveDigests?: boolean;
  /** `--src-creds user:pass`. */
  creds?: string;
  destCreds?: string;
  /** `--src-authfile` / `--dest-authfile` (else skopeo reads $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json). */
  authfile?: string;
  /** `--override-arch` / `--override-os` (global flags) to pick another platform from a list. */
  overrideArch?: string;
  overrideOs?: string;
  /** `--retry-times N`. */
  retryTimes?: number;
  extraArgs?: string[];
}

export interface SkopeoInspectOptions extends SkopeoGlobalOptions {
  /** `--tls-verify=<v>`; default false. */
  tlsVerify?: boolean;
  creds?: string;
  authfile?: string;
  overrideArch?: string;
  overrideOs?: string;
}

export function skopeoAvailable(): { ok: boolean; reason?: string } {
  return hasBinary('skopeo') ? { ok: true } : { ok: false, reason: 'skopeo not on PATH (apt-get install -y skopeo)' };
}

function globalArgs(o: SkopeoGlobalOptions & { overrideArch?: string; overrideOs?: string }): string[] {
  const a: string[] = [];
  if (o.registriesConf) a.push('--registries-conf', o.registriesConf);
  if (o.policy) a.push('--policy', o.policy);
  else a.push('--insecure-policy');
  if (o.tmpDir) a.push('--tmpdir', o.tmpDir);
  if (o.debug) a.push('--debug');
  if (o.overrideArch) a.push('--override-arch', o.overrideArch);
  if (o.overrideOs) a.push('--override-os', o.overrideOs);
  return a;
}

async function skopeo(args: string[], o: SkopeoGlobalOptions): Promise<RunResult> {
  const r = await runCommand('skopeo', args, { timeoutMs: o.timeoutMs ?? 120_000, env: o.env });
  if (r.code !== 0 || r.timedOut) {
    const why = r.timedOut ? `timed out after ${r.durationMs} ms` : `exited with ${r.code ?? r.signal}`;
    const tail = (s: string) => s.trim().split('\n').slice(-25).join('\n');
    throw new CommandError(`skopeo ${args.join(' ')} ${why}\n--- stderr ---\n${tail(r.stderr)}\n--- stdout ---\n${tail(r.stdout)}`, r);
  }
  return r;
}

/**
 * `skopeo copy SRC DEST` (transport-qualified refs: docker://…, oci:DIR[:tag], dir:DIR). Throws CommandError with
 * skopeo's stderr on failure.
 */
export async function skopeoCopy(
  src: string,
  dest: string,
  opts: SkopeoCopyOptions = {},
): Promise<{ stdout: string; stderr: string; durationMs: number }> {
  const args = [...globalArgs(opts), 'copy'];
  args.push(`--src-tls-verify=${opts.srcTlsVerify ?? false}`, `--dest-tls-verify=${opts.destTlsVerify ?? false}`);
  if (opts.all) args.push('--all');
  if (opts.preserveDigests) args.push('--preserve-digests');
  if (opts.creds) args.push('--src-creds', opts.creds);
  if (opts.destCreds) args.push('--dest-creds', opts.destCreds);
  if (opts.authfile) args.push('--src-authfile', opts.authfile, '--dest-authfile', opts.authfile);
  if (opts.retryTimes !== undefined) args.push('--retry-times', String(opts.retryTimes));
  args.push(...(opts.extraArgs ?? []), src, dest);
  const r = await skopeo(args, opts);
  return { stdout: r.stdout, stderr: r.stderr, durationMs: r.durationMs };
}

function inspectArgs(ref: string, opts: SkopeoInspectOptions, extra: string[]): string[] {
  const args = [...globalArgs(opts), 'inspect', `--tls-verify=${opts.tlsVerify ?? false}`];
  if (opts.creds) args.push('--creds', opts.creds);
  if (opts.authfile) args.push('--authfile', opts.authfile);
  return [...args, ...extra, ref];
}

/** The raw manifest bytes skopeo gets for `ref` (for a list/index: the list itself). */
export async function skopeoInspectRaw(ref: string, opts: SkopeoInspectOptions = {}): Promise<Buffer> {
  const r = await skopeo(inspectArgs(ref, opts, ['--raw']), opts);
  return r.stdoutBuf;
}

/**
 * Digest of the manifest `ref` resolves to, as sha256 of the `skopeo inspect --raw` bytes (for a list/index: the
 * list's own digest, i.e. what the registry reports in Docker-Content-Digest for the tag).
 */
export async function skopeoInspectDigest(ref: string, opts: SkopeoInspectOptions = {}): Promise<string> {
  return sha256Digest(await skopeoInspectRaw(ref, opts));
}

// ---------------------------------------------------------------------------------------------------------------
// registries.conf

export interface RegistriesConfEntry {
  /** Images matching this prefix use this entry ('docker.io', 'registry.example.test/team', '*.example.test'). */
  prefix: string;
  /** Where the registry itself is; default '127.0.0.1:1' (closed: a fallback to "upstream" fails loudly). */
  location?: string;
  /** Mirror locations `host:port[/path]`, tried in order before `location`. */
  mirror: string | string[];
  /** `insecure = true` on the mirrors (plain http allowed); default true. */
  insecure?: boolean;
  /** `insecure` on the registry location itself; default same as `insecure`. */
  locationInsecure?: boolean;
  /** `mirror-by-digest-only = true`: mirrors are used only for pulls by digest. */
  mirrorByDigestOnly?: boolean;
}

export const CLOSED_LOCATION = '127.0.0.1:1';

const tq = (s: string): string => JSON.stringify(s);

/** The registries.conf v2 TOML text (see registries.conf(5)). */
export function registriesConfText(
  entries: RegistriesConfEntry | RegistriesConfEntry[],
  opts: { unqualifiedSearchRegistries?: string[] } = {},
): string {
  const list = Array.isArray(entries) ? entries : [entries];
  const lines = [
    '# written by test/helpers/skopeo.ts',
    `unqualified-search-registries = [${(opts.unqualifiedSearchRegistries ?? ['docker.io']).map(tq).join(', ')}]`,
  ];
  for (const e of list) {
    const mirrors = Array.isArray(e.mirror) ? e.mirror : [e.mirror];
    if (mirrors.length === 0) throw new Error(`registries.conf entry ${e.prefix}: no mirror`);
    for (const m of mirrors) {
      if (/^[a-z]+:\/\//i.test(m)) throw new Error(`registries.conf mirror must be host:port[/path] without a scheme, got ${m}`);
    }
    const insecure = e.insecure ?? true;
    lines.push(
      '',
      '[[registry]]',
      `prefix = ${tq(e.prefix)}`,
      `location = ${tq(e.location ?? CLOSED_LOCATION)}`,
      `insecure = ${e.locationInsecure ?? insecure}`,
    );
    if (e.mirrorByDigestOnly) lines.push('mirror-by-digest-only = true');
    for (const m of mirrors) lines.push('', '[[registry.mirror]]', `location = ${tq(m)}`, `insecure = ${insecure}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * Write a registries.conf v2 file for path-prefix mirroring as podman/CRI-O/skopeo use it, e.g.
 * `writeRegistriesConf(f, { prefix: 'docker.io', mirror: '127.0.0.1:5000/docker.io' })`. Returns the file path.
 */
export async function writeRegistriesConf(
  file: string,
  entries: RegistriesConfEntry | RegistriesConfEntry[],
  opts: { unqualifiedSearchRegistries?: string[] } = {},
): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, registriesConfText(entries, opts));
  return file;
}

// ---------------------------------------------------------------------------------------------------------------
// digests of what skopeo wrote locally

export function sha256Digest(buf: Buffer | string): string {
  return `sha256:${createHash('sha256').update(buf).digest('hex')}`;
}

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return `sha256:${h.digest('hex')}`;
}

export interface LocalImage {
  /** Digest of the top-level manifest or index (what a registry would report for the tag). */
  digest: string;
  mediaType: string;
  /** Its raw bytes. */
  manifest: Buffer;
  /** Every digest reachable from the top (index → manifests → config + layers), top first, no duplicates. */
  referenced: string[];
  /** Referenced digests whose blob is not present (e.g. other platforms' manifests after a copy without --all). */
  missing: string[];
  /** Every blob present on disk → its size; each was re-hashed and matches its name (else this throws). */
  blobs: Map<string, number>;
}

interface Descriptor {
  mediaType?: string;
  digest?: string;
  size?: number;
  annotations?: Record<string, string>;
}
interface ManifestLike {
  mediaType?: string;
  manifests?: Descriptor[];
  config?: Descriptor;
  layers?: Descriptor[];
}

/** Split `oci:DIR[:tag]` / `dir:DIR` / a plain path into its kind, directory and (oci) tag. */
export function parseLocalRef(dest: string): { kind: 'oci' | 'dir'; dir: string; tag?: string } {
  if (dest.startsWith('dir:')) return { kind: 'dir', dir: dest.slice(4) };
  if (dest.startsWith('oci:')) {
    const rest = dest.slice(4);
    const i = rest.lastIndexOf(':');
    if (i > 0 && !rest.slice(i + 1).includes('/')) return { kind: 'oci', dir: rest.slice(0, i), tag: rest.slice(i + 1) };
    return { kind: 'oci', dir: rest };
  }
  throw new Error(`parseLocalRef: expected oci:DIR[:tag] or dir:DIR, got ${dest}`);
}

const HEX64 = /^[a-f0-9]{64}$/;

/**
 * Inspect what skopeo wrote to an `oci:DIR[:tag]` or `dir:DIR` destination: re-hash every blob (throwing on any
 * mismatch between a blob's name and its content), find the top manifest and walk what it references.
 */
export async function localImageDigests(dest: string): Promise<LocalImage> {
  const { kind, dir, tag } = parseLocalRef(dest);
  const blobs = new Map<string, number>();
  const files = new Map<string, string>(); // digest → file
  let topBytes: Buffer;

  const addBlob = async (file: string, expected: string) => {
    const got = await sha256File(file);
    if (got !== expected) throw new Error(`${file}: content hashes to ${got}, expected ${expected}`);
    blobs.set(expected, (await stat(file)).size);
    files.set(expected, file);
  };

  if (kind === 'oci') {
    const layout = JSON.parse(await readFile(path.join(dir, 'oci-layout'), 'utf8')) as { imageLayoutVersion?: string };
    if (!layout.imageLayoutVersion) throw new Error(`${dir}: oci-layout has no imageLayoutVersion`);
    const blobDir = path.join(dir, 'blobs', 'sha256');
    for (const name of await readdir(blobDir)) {
      if (HEX64.test(name)) await addBlob(path.join(blobDir, name), `sha256:${name}`);
    }
    const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as ManifestLike;
    const entries = index.manifests ?? [];
    const named = tag ? entries.filter((d) => d.annotations?.['org.opencontainers.image.ref.name'] === tag) : entries;
    if (named.length !== 1 || !named[0]?.digest) {
      throw new Error(`${dir}: expected exactly one index.json entry${tag ? ` for tag ${tag}` : ''}, found ${named.length}`);
    }
    const top = named[0].digest;
    const file = files.get(top);
    if (!file) throw new Error(`${dir}: index.json names ${top} but that blob is missing`);
    topBytes = await readFile(file);
  } else {
    // dir: manifest.json (top), version, <hex> blobs, and with --all <hex>.manifest.json per instance
    topBytes = await readFile(path.join(dir, 'manifest.json'));
    for (const name of await readdir(dir)) {
      const m = /^([a-f0-9]{64})(\.manifest\.json)?$/.exec(name);
      if (m) await addBlob(path.join(dir, name), `sha256:${m[1]}`);
    }
    const topDigest = sha256Digest(topBytes);
    blobs.set(topDigest, topBytes.length);
    files.set(topDigest, path.join(dir, 'manifest.json'));
  }

  const digest = sha256Digest(topBytes);
  const topDoc = JSON.parse(topBytes.toString('utf8')) as ManifestLike;
  const referenced: string[] = [];
  const missing: string[] = [];
  const seen = new Set<string>();
  const visit = async (d: string, parsed?: ManifestLike) => {
    if (seen.has(d)) return;
    seen.add(d);
    referenced.push(d);
    const file = files.get(d);
    if (!file) {
      missing.push(d);
      return;
    }
    let doc = parsed;
    if (!doc) {
      const bytes = await readFile(file);
      try {
        doc = JSON.parse(bytes.toString('utf8')) as ManifestLike;
      } catch {
        return;
      }
    }
    for (const m of doc.manifests ?? []) if (m.digest) await visit(m.digest);
    for (const b of [doc.config, ...(doc.layers ?? [])]) {
      if (!b?.digest || seen.has(b.digest)) continue;
      seen.add(b.digest);
      referenced.push(b.digest);
      if (!files.has(b.digest)) missing.push(b.digest);
    }
  };
  await visit(digest, topDoc);
  return { digest, mediaType: topDoc.mediaType ?? '', manifest: topBytes, referenced, missing, blobs };
}
