/**
 * @module test/unit/proxy/fake-upstream
 * An in-memory registry standing in for an upstream client (the proxy's `Upstream` interface):
 * manifests by repository and reference, blobs by repository and digest, every request recorded,
 * and faults a test sets: an outage (the client's UNAVAILABLE), a status, different bytes, or a
 * gate that holds answers back until the test opens it. No sockets.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { parseConfig } from '../../../src/config/load.ts';
import type { UpstreamConfig } from '../../../src/config/schema.ts';
import type { Route } from '../../../src/proxy/router.ts';
import type { Upstream, UpstreamRequest, UpstreamResponse } from '../../../src/proxy/upstream.ts';
import { RegistryError } from '../../../src/registry/errors.ts';

export const sha256 = (bytes: Buffer | string) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

export interface FakeAnswer {
  status: number;
  headers?: Record<string, string>;
  body?: Buffer;
}

/** A fault for the requests it matches: an answer to give instead, or 'down' (no answer at all). */
export type Fault = (req: UpstreamRequest) => FakeAnswer | 'down' | undefined;

interface StoredManifest {
  bytes: Buffer;
  mediaType: string;
}

export class FakeUpstream implements Upstream {
  readonly name: string;
  readonly config: UpstreamConfig;
  readonly requests: UpstreamRequest[] = [];
  /** repo → reference (tag or digest) → manifest. */
  readonly #manifests = new Map<string, Map<string, StoredManifest>>();
  /** repo → digest → bytes. */
  readonly #blobs = new Map<string, Map<string, Buffer>>();
  #fault: Fault | undefined;
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;

  constructor(name = 'fake', { tagTTL = '5m' }: { tagTTL?: string } = {}) {
    this.name = name;
    const config = parseConfig({ upstreams: [{ name, url: `https://${name}.example`, registries: [`${name}.example`], tagTTL }] }, { env: {} });
    this.config = config.upstreams[0] as UpstreamConfig;
  }

  /** The route a request for `repo` on this upstream takes. */
  route(repo: string): Route {
    return { upstream: this, repo, prefix: undefined, via: 'default' };
  }

  /** Stores a manifest under its digest and the given tags; returns its digest. */
  putManifest(repo: string, doc: unknown, { mediaType = 'application/vnd.oci.image.manifest.v1+json', tags = [] as string[] } = {}): { digest: string; bytes: Buffer; mediaType: string } {
    const bytes = Buffer.from(JSON.stringify(doc));
    const digest = sha256(bytes);
    const refs = this.#manifests.get(repo) ?? new Map<string, StoredManifest>();
    this.#manifests.set(repo, refs);
    for (const ref of [digest, ...tags]) refs.set(ref, { bytes, mediaType });
    return { digest, bytes, mediaType };
  }

  /** Stores a blob for `repo`; returns its digest. */
  putBlob(repo: string, bytes: Buffer): string {
    const digest = sha256(bytes);
    const blobs = this.#blobs.get(repo) ?? new Map<string, Buffer>();
    this.#blobs.set(repo, blobs);
    blobs.set(digest, bytes);
    return digest;
  }

  /** Every later request goes through `fault` first (undefined: none). */
  fault(fault: Fault | undefined): void {
    this.#fault = fault;
  }

  /** Holds every answer back until the returned function is called. */
  hold(): () => void {
    this.#gate = new Promise<void>((resolve) => (this.#open = resolve));
    return () => {
      this.#gate = undefined;
      this.#open?.();
    };
  }

  /** Requests so far as `METHOD path`. */
  get log(): string[] {
    return this.requests.map((r) => `${r.method} ${r.path}`);
  }

  async request(req: UpstreamRequest): Promise<UpstreamResponse> {
    this.requests.push(req);
    if (this.#gate) await this.#gate;
    const faulted = this.#fault?.(req);
    if (faulted === 'down') {
      throw new RegistryError('UNAVAILABLE', { message: `upstream ${this.name} is unreachable` });
    }
    const answer = faulted ?? this.#answer(req);
    const body = req.method === 'HEAD' || answer.body === undefined ? Buffer.alloc(0) : answer.body;
    const headers: Record<string, string> = { ...answer.headers };
    if (answer.body !== undefined && headers['content-length'] === undefined) headers['content-length'] = String(answer.body.length);
    return { status: answer.status, headers, body: Readable.from(body.length === 0 ? [] : [body]), url: `${this.config.url}/v2/${req.path}` };
  }

  #answer(req: UpstreamRequest): FakeAnswer {
    const m = /^(.+)\/(manifests|blobs)\/([^/]+)$/.exec(req.path);
    if (!m) return notFound('NAME_UNKNOWN');
    const [, repo, kind, ref] = m as unknown as [string, string, string, string];
    if (kind === 'manifests') {
      const found = this.#manifests.get(repo)?.get(ref);
      if (!found) return notFound('MANIFEST_UNKNOWN');
      return { status: 200, headers: { 'content-type': found.mediaType, 'docker-content-digest': sha256(found.bytes) }, body: found.bytes };
    }
    const blob = this.#blobs.get(repo)?.get(ref);
    if (!blob) return notFound('BLOB_UNKNOWN');
    // `bytes=N-`, the one form a fill asks for when it continues a broken stream.
    const from = /^bytes=(\d+)-$/.exec(req.headers?.range ?? '')?.[1];
    if (from !== undefined && Number(from) < blob.length) {
      const start = Number(from);
      return { status: 206, headers: { 'content-type': 'application/octet-stream', 'content-range': `bytes ${start}-${blob.length - 1}/${blob.length}` }, body: blob.subarray(start) };
    }
    return { status: 200, headers: { 'content-type': 'application/octet-stream', 'docker-content-digest': ref }, body: blob };
  }
}

function notFound(code: string): FakeAnswer {
  return { status: 404, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify({ errors: [{ code }] })) };
}
