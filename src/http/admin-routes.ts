/**
 * @module http/admin-routes
 * The admin API under /admin/v1 (JSON), for operators and `ocimirror prefetch|gc|token --url`.
 * Every request needs `Authorization: Bearer <admin.token>` or, with client `auth` configured,
 * an admin account or admin robot token (http/auth-middleware); with neither the API answers 401
 * to everyone, so a mirror never exposes it by accident. It lives outside /v2/, so
 * no registry path can reach it. Slow work (prefetch, delete, gc, evict) is queued as a job
 * and answered 202 with the job, whose state GET /admin/v1/jobs/<id> shows. POST /reload reloads
 * the config as SIGHUP does and answers with the outcome.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Readable, Writable } from 'node:stream';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { Hono, type Context } from 'hono';
import type { HttpBindings } from '@hono/node-server';
import { RegistryError } from '../registry/errors.ts';
import { parseDuration } from '../config/units.ts';
import type { RobotTokens } from '../auth/robot-tokens.ts';
import { isRole } from '../auth/rules.ts';

/** What the admin API can do; implemented by admin/admin-service.ts. */
export interface AdminService {
  usage(): unknown;
  repositories(): unknown;
  upstreams(): unknown;
  pins(): unknown;
  addPin(image: string): unknown;
  removePin(image: string): unknown;
  jobs(filter: { state?: string | undefined; type?: string | undefined; limit?: number | undefined }): unknown;
  job(id: number): unknown;
  prefetch(images: string[], platforms: string[] | undefined): unknown;
  deleteImage(image: string): unknown;
  /** Queues a sync of an image list (skopeo sync YAML text) into `dest`. */
  sync(request: { name: string; yaml: string; dest: string; dryRun?: boolean; keepGoing?: boolean }): unknown;
  /** `bucket`: the shared bucket's sweep or quota eviction (storage.backend s3) rather than this replica's disk. */
  gc(scope?: 'bucket'): unknown;
  evict(scope?: 'bucket'): unknown;
  /** The cluster members this replica sees, with their state; absent without `cluster:`. */
  cluster?(): unknown;
  /** Reloads the config (as SIGHUP); throws when the new config was refused. Absent when there is no config file to reload. */
  reload?(): unknown;
  /** Fetches what is missing and plans a bundle; its tar is then written by `write`. Absent without the mirror's parts. */
  exportBundle?(request: BundleExportRequest, signal: AbortSignal): Promise<PreparedExport>;
  /** Imports a plain tar read from `body`; answers the import summary. Absent without the mirror's parts. */
  importBundle?(body: Readable, request: BundleImportRequest, signal: AbortSignal): Promise<unknown>;
}

export interface BundleExportRequest {
  images: string[];
  platforms: string[];
  /** The index.json of the earlier bundle a differential export leaves out. */
  since?: unknown;
}

export interface PreparedExport {
  /** Counts known before the first byte (images, manifests, blobs, skippedBlobs, bytes), sent as a header. */
  summary: Record<string, unknown>;
  /** Streams the tar into `out` and ends it; on failure `out` is destroyed, so the client sees a cut, never an end. */
  write(out: Writable): Promise<void>;
}

export interface BundleImportRequest {
  dest: string | undefined;
  baseName: string | undefined;
  /** The request's Content-Length, when the client gave one. */
  contentLength: number | undefined;
}

/** The response header carrying {@link PreparedExport.summary} as JSON. */
export const EXPORT_SUMMARY_HEADER = 'ocimirror-export';

const digestOf = (s: string) => createHash('sha256').update(s).digest();

export interface AdminAccess {
  /** The bootstrap admin.token. */
  token: string | undefined;
  /** With client auth configured: admits admin accounts and admin robot tokens, else throws. */
  authorize?: ((c: Context<{ Bindings: HttpBindings }>) => Promise<void>) | undefined;
  /** Robot tokens, managed under /tokens. */
  robots?: RobotTokens | undefined;
}

export function createAdminRoutes(service: AdminService, access: AdminAccess): Hono<{ Bindings: HttpBindings }> {
  const admin = new Hono<{ Bindings: HttpBindings }>();
  const expected = access.token === undefined ? undefined : digestOf(access.token);
  admin.use('*', async (c, next) => {
    const header = c.req.header('authorization') ?? '';
    const given = /^Bearer\s+(.+)$/i.exec(header)?.[1];
    // Compare hashes in constant time so the token's length and prefix don't leak through timing.
    const bootstrap = expected !== undefined && given !== undefined && timingSafeEqual(digestOf(given), expected);
    if (!bootstrap && access.authorize) {
      await access.authorize(c);
    } else if (!bootstrap) {
      throw new RegistryError('UNAUTHORIZED', {
        message: expected ? 'admin API: a valid bearer token is required' : 'admin API is disabled: set admin.token (or OCIMIRROR_ADMIN_TOKEN)',
        headers: { 'WWW-Authenticate': 'Bearer realm="ocimirror-admin"' },
      });
    }
    await next();
  });

  admin.get('/usage', (c) => c.json(service.usage() as object));
  admin.get('/repositories', (c) => c.json(service.repositories() as object));
  admin.get('/upstreams', (c) => c.json(service.upstreams() as object));
  admin.get('/pins', (c) => c.json(service.pins() as object));
  admin.post('/pins', async (c) => c.json(service.addPin(await imageFrom(c)) as object, 201));
  admin.delete('/pins', (c) => c.json(service.removePin(requiredQuery(c, 'image')) as object));
  admin.get('/jobs', (c) => {
    const limit = c.req.query('limit');
    return c.json(service.jobs({ state: c.req.query('state'), type: c.req.query('type'), limit: limit === undefined ? undefined : Number(limit) }) as object);
  });
  admin.get('/jobs/:id', (c) => {
    const id = Number(c.req.param('id'));
    const job = Number.isSafeInteger(id) ? service.job(id) : undefined;
    if (!job) throw new RegistryError('NOT_FOUND', { message: `no job ${c.req.param('id')}` });
    return c.json(job as object);
  });
  admin.post('/prefetch', async (c) => {
    const body = await jsonBody(c);
    const images = Array.isArray(body.images) ? body.images : typeof body.image === 'string' ? [body.image] : undefined;
    if (!images || images.length === 0 || !images.every((i): i is string => typeof i === 'string')) {
      throw new RegistryError('BAD_REQUEST', { message: 'expected {"images": ["registry/repo:tag", ...]}' });
    }
    const platforms = Array.isArray(body.platforms) ? body.platforms.filter((p): p is string => typeof p === 'string') : undefined;
    return c.json(service.prefetch(images, platforms) as object, 202);
  });
  admin.post('/sync', async (c) => {
    const body = await jsonBody(c);
    if (typeof body.yaml !== 'string') throw new RegistryError('BAD_REQUEST', { message: 'expected {"yaml": "<sync file text>", "dest": "cache", "name": "sync.yaml", "dryRun": false, "keepGoing": true}' });
    const request = {
      name: typeof body.name === 'string' ? body.name : 'sync file',
      yaml: body.yaml,
      dest: typeof body.dest === 'string' ? body.dest : 'cache',
      ...(typeof body.dryRun === 'boolean' ? { dryRun: body.dryRun } : {}),
      ...(typeof body.keepGoing === 'boolean' ? { keepGoing: body.keepGoing } : {}),
    };
    return c.json(service.sync(request) as object, 202);
  });
  admin.delete('/images', (c) => c.json(service.deleteImage(requiredQuery(c, 'image')) as object, 202));
  const scopeOf = (c: Context): 'bucket' | undefined => {
    const scope = c.req.query('scope');
    if (scope === undefined || scope === 'disk') return undefined;
    if (scope === 'bucket') return scope;
    throw new RegistryError('BAD_REQUEST', { message: "scope must be 'disk' (the default) or 'bucket'" });
  };
  admin.post('/gc', (c) => c.json(service.gc(scopeOf(c)) as object, 202));
  admin.post('/evict', (c) => c.json(service.evict(scopeOf(c)) as object, 202));
  const cluster = service.cluster?.bind(service);
  admin.get('/cluster', (c) => {
    if (!cluster) throw new RegistryError('NOT_FOUND', { message: 'this mirror runs as a single node: cluster is not configured' });
    return c.json(cluster() as object);
  });
  const reload = service.reload?.bind(service);
  if (reload) admin.post('/reload', (c) => c.json(reload() as object));
  bundleRoutes(admin, service);
  if (access.robots) robotTokenRoutes(admin, access.robots);
  return admin;
}

/** GET /tokens, POST /tokens {description, role?, expires?}, DELETE /tokens/:id. */
function robotTokenRoutes(admin: Hono<{ Bindings: HttpBindings }>, robots: RobotTokens): void {
  admin.get('/tokens', (c) => c.json({ tokens: robots.list() }));
  admin.post('/tokens', async (c) => {
    const body = await jsonBody(c);
    const role = body.role ?? 'pull';
    if (typeof body.description !== 'string' || body.description.trim() === '') throw new RegistryError('BAD_REQUEST', { message: 'expected {"description": "...", "role": "pull|push|admin", "expires": "30d"}' });
    if (!isRole(role)) throw new RegistryError('BAD_REQUEST', { message: `role must be pull, push or admin, not ${JSON.stringify(role)}` });
    let ttlMs: number | undefined;
    if (body.expires !== undefined && body.expires !== null) {
      ttlMs = typeof body.expires === 'string' || typeof body.expires === 'number' ? parseDuration(body.expires) : undefined;
      if (ttlMs === undefined || ttlMs <= 0) throw new RegistryError('BAD_REQUEST', { message: "expires must be a duration such as '30d' or '12h'" });
    }
    return c.json(robots.create({ role, description: body.description, ttlMs }), 201);
  });
  admin.delete('/tokens/:id', (c) => {
    if (!robots.revoke(c.req.param('id'))) throw new RegistryError('NOT_FOUND', { message: `no robot token ${c.req.param('id')}` });
    return c.json({ revoked: c.req.param('id') });
  });
}

/**
 * POST /export {images, platforms?, since?} answers a tar streamed as it is written (errors
 * before its first byte are JSON; after it, the connection is cut). POST /import?dest=&baseName=
 * reads a plain tar body and answers the import summary once it is imported.
 */
function bundleRoutes(admin: Hono<{ Bindings: HttpBindings }>, service: AdminService): void {
  const exporter = service.exportBundle?.bind(service);
  const importer = service.importBundle?.bind(service);
  if (exporter) {
    admin.post('/export', async (c) => {
      const body = await jsonBody(c);
      const images = body.images;
      if (!Array.isArray(images) || images.length === 0 || !images.every((i): i is string => typeof i === 'string')) {
        throw new RegistryError('BAD_REQUEST', { message: 'expected {"images": ["registry/repo:tag", ...], "platforms": ["linux/amd64"], "since": <an earlier bundle\'s index.json>}' });
      }
      const platforms = Array.isArray(body.platforms) ? body.platforms.filter((p): p is string => typeof p === 'string') : [];
      const outgoing = c.env.outgoing;
      const controller = new AbortController();
      outgoing.once('close', () => {
        if (!outgoing.writableFinished) controller.abort(new Error('the client went away'));
      });
      const prepared = await exporter({ images, platforms, ...(body.since === undefined ? {} : { since: body.since }) }, controller.signal);
      outgoing.writeHead(200, { 'Content-Type': 'application/x-tar', 'Cache-Control': 'no-store', [EXPORT_SUMMARY_HEADER]: JSON.stringify(prepared.summary) });
      // The service reports a failure; the cut connection is what tells the client.
      prepared.write(outgoing).catch(() => {});
      return RESPONSE_ALREADY_SENT;
    });
  }
  if (importer) {
    admin.post('/import', async (c) => {
      const incoming = c.env.incoming;
      const controller = new AbortController();
      incoming.once('aborted', () => controller.abort(new Error('the client went away')));
      try {
        const summary = await importer(incoming, { dest: c.req.query('dest'), baseName: c.req.query('baseName'), contentLength: contentLengthOf(incoming) }, controller.signal);
        return c.json(summary as object);
      } catch (err) {
        // Refused before reading (too large for the disk): answer now and close, rather than take
        // gigabytes in to drop them. Refused midway: the client is still sending, and reads the
        // answer once its body is through.
        if (!incoming.readableDidRead) c.env.outgoing.setHeader('Connection', 'close');
        else await drain(incoming);
        throw err;
      }
    });
  }
}

function contentLengthOf(incoming: IncomingMessage): number | undefined {
  const header = incoming.headers['content-length'];
  if (header === undefined || !/^\d{1,16}$/.test(header)) return undefined;
  return Number(header);
}

/** Reads and drops what is left of a request body (resolves when it ended or the connection closed). */
async function drain(incoming: IncomingMessage): Promise<void> {
  if (incoming.readableEnded || incoming.destroyed) return;
  await new Promise<void>((resolve) => {
    incoming.once('end', resolve).once('close', resolve).once('error', () => resolve());
    incoming.resume();
  });
}

async function jsonBody(c: Context): Promise<Record<string, unknown>> {
  try {
    const body = (await c.req.json()) as unknown;
    if (body && typeof body === 'object' && !Array.isArray(body)) return body as Record<string, unknown>;
  } catch {
    /* reported below */
  }
  throw new RegistryError('BAD_REQUEST', { message: 'expected a JSON object body' });
}

async function imageFrom(c: Context): Promise<string> {
  const body = await jsonBody(c);
  if (typeof body.image !== 'string') throw new RegistryError('BAD_REQUEST', { message: 'expected {"image": "registry/repo:tag"}' });
  return body.image;
}

function requiredQuery(c: Context, name: string): string {
  const v = c.req.query(name);
  if (!v) throw new RegistryError('BAD_REQUEST', { message: `the ${name} query parameter is required` });
  return v;
}
