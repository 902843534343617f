/**
 * @module test/helpers/push
 * Pushes fixture images into a registry through the Distribution HTTP API (OCI distribution-spec
 * "Pushing blobs" POST-then-PUT and "Pushing manifests"), streaming blobs from disk, then checks that
 * every tag resolves to the fixture digest. No skopeo: it is slower, and skopeo 1.9's `oci:` transport
 * cannot read Docker-typed manifests.
 *
 * Auth follows the challenge: no credentials until a 401, then Basic (htpasswd) or a Bearer token for
 * `repository:<repo>:pull,push` from the challenge's realm. Every upload starts with a HEAD and a POST,
 * so auth is settled before a request carries a streamed body.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { MANIFEST_ACCEPT, type BlobDesc, type FixtureImage, type FixtureManifest, type FixtureSet } from './images.ts';

export interface PushAuth { username: string; password: string }

/** `Bearer realm="…",service="…",scope="…"` → lower-cased scheme and params. */
function parseChallenge(header: string): { scheme: string; params: Record<string, string> } {
  const [scheme = '', rest = ''] = header.split(/ (.*)/s);
  const params = Object.fromEntries([...rest.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
  return { scheme: scheme.toLowerCase(), params };
}

/** One registry session: a connection pool plus the Authorization header per repository. */
class Session {
  readonly base: string;
  readonly #auth: PushAuth | undefined;
  readonly #agent = new Agent({ connections: 8 });
  /** A promise, so concurrent requests that meet the same challenge share one token fetch. */
  readonly #authorization = new Map<string, Promise<string>>();

  constructor(base: string, auth?: PushAuth) {
    this.base = base.replace(/\/$/, '');
    this.#auth = auth;
  }

  close(): Promise<void> {
    return this.#agent.close();
  }

  /** Sends a request, answering one 401 challenge; `body` is a factory so the retry gets a fresh stream. */
  async send(repo: string, method: 'GET' | 'HEAD' | 'POST' | 'PUT', pathOrUrl: string, headers: Record<string, string> = {}, body?: () => Readable | Buffer) {
    const url = new URL(pathOrUrl, this.base);
    for (let attempt = 0; ; attempt++) {
      const pending = this.#authorization.get(repo);
      const authorization = await pending;
      const res = await request(url, {
        method,
        headers: { ...headers, ...(authorization && { authorization }) },
        body: body?.(),
        dispatcher: this.#agent,
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
      const challenge = res.headers['www-authenticate'];
      if (res.statusCode !== 401 || attempt > 0 || typeof challenge !== 'string') return res;
      await res.body.dump();
      if (this.#authorization.get(repo) === pending) this.#authorization.set(repo, this.#answer(repo, challenge));
    }
  }

  async #answer(repo: string, challenge: string): Promise<string> {
    if (!this.#auth) throw new Error(`${this.base} wants credentials (${challenge}) and none were given`);
    const basic = `Basic ${Buffer.from(`${this.#auth.username}:${this.#auth.password}`).toString('base64')}`;
    const { scheme, params } = parseChallenge(challenge);
    if (scheme === 'basic') return basic;
    if (scheme !== 'bearer' || !params.realm) throw new Error(`unsupported auth challenge: ${challenge}`);
    const tokenUrl = new URL(params.realm);
    if (params.service) tokenUrl.searchParams.set('service', params.service);
    tokenUrl.searchParams.set('scope', `repository:${repo}:pull,push`);
    const res = await request(tokenUrl, { headers: { authorization: basic }, dispatcher: this.#agent });
    if (res.statusCode !== 200) throw new Error(`token request ${tokenUrl} → ${res.statusCode}: ${await res.body.text()}`);
    const json = (await res.body.json()) as { token?: string; access_token?: string };
    return `Bearer ${json.token ?? json.access_token}`;
  }
}

async function expectStatus(res: Awaited<ReturnType<Session['send']>>, want: number, what: string): Promise<void> {
  const text = await res.body.text();
  if (res.statusCode !== want) throw new Error(`${what}: expected ${want}, got ${res.statusCode}: ${text}`);
}

async function pushBlob(s: Session, fixtures: FixtureSet, repo: string, blob: BlobDesc): Promise<void> {
  const head = await s.send(repo, 'HEAD', `/v2/${repo}/blobs/${blob.digest}`);
  await head.body.dump();
  if (head.statusCode === 200) return;
  const start = await s.send(repo, 'POST', `/v2/${repo}/blobs/uploads/`);
  await expectStatus(start, 202, `start upload to ${repo}`);
  // distribution answers an absolute Location built from our Host header; a relative one resolves against the base.
  const location = new URL(String(start.headers.location), s.base);
  location.searchParams.set('digest', blob.digest);
  const put = await s.send(repo, 'PUT', location.href, {
    'content-type': 'application/octet-stream',
    'content-length': String(blob.size),
  }, () => createReadStream(fixtures.blobPath(blob.digest), { highWaterMark: 1 << 20 }));
  await expectStatus(put, 201, `upload ${blob.digest} to ${repo}`);
}

async function putManifest(s: Session, repo: string, ref: string, m: FixtureManifest): Promise<void> {
  const res = await s.send(repo, 'PUT', `/v2/${repo}/manifests/${ref}`, { 'content-type': m.mediaType }, () => m.bytes);
  await expectStatus(res, 201, `put manifest ${repo}:${ref}`);
}

async function pushImage(s: Session, fixtures: FixtureSet, image: FixtureImage): Promise<void> {
  const { repo, manifest } = image;
  await Promise.all(fixtures.allBlobs(image).map((blob) => pushBlob(s, fixtures, repo, blob)));
  // An index may only name manifests the registry already has, so children go first, by digest.
  for (const child of manifest.children ?? []) await putManifest(s, repo, child.digest, child);
  for (const tag of image.tags) await putManifest(s, repo, tag, manifest);
  for (const tag of image.tags) {
    const res = await s.send(repo, 'GET', `/v2/${repo}/manifests/${tag}`, { accept: MANIFEST_ACCEPT });
    await expectStatus(res, 200, `get manifest ${repo}:${tag}`);
    const got = res.headers['docker-content-digest'];
    if (got !== manifest.digest) throw new Error(`${repo}:${tag} resolves to ${String(got)}, fixture is ${manifest.digest}`);
  }
}

/**
 * Pushes `images` (default: all) and verifies their tags. Repositories and the blobs of one image go in
 * parallel; images of one repository in order, since they share layers.
 */
export async function pushFixtures(registryUrl: string, fixtures: FixtureSet, images = fixtures.images, auth?: PushAuth): Promise<void> {
  const session = new Session(registryUrl, auth);
  const repos = [...new Set(images.map((i) => i.repo))];
  try {
    await Promise.all(repos.map(async (repo) => {
      for (const image of images.filter((i) => i.repo === repo)) await pushImage(session, fixtures, image);
    }));
  } finally {
    await session.close();
  }
}
