/**
 * @module http/token-route
 * /auth/token, the token endpoint of the Docker token flow: Basic credentials (an account, or
 * any user name with a robot token as password), or none where anonymous pulls are allowed, are
 * exchanged for a short-lived JWT whose grants are the scopes asked for narrowed to what the
 * rules allow. GET is what docker, podman and skopeo send; POST with an OAuth2 password grant is
 * what containerd tries first. With mutual TLS, a client that sends no credentials gets a token
 * for the account its certificate names.
 */
import { Hono, type Context } from 'hono';
import type { HttpBindings } from '@hono/node-server';
import { RegistryError } from '../registry/errors.ts';
import type { AccessEntry } from '../auth/token-service.ts';
import type { Action } from '../auth/rules.ts';
import { canonicalName, certificateOf, challenge, clientOf, type ClientAuth } from './auth-middleware.ts';
import { basicAuthorization } from '../util/basic-auth.ts';

const ACTIONS = new Set<string>(['pull', 'push', 'delete', '*']);
/** Largest form body read: a password grant is well under 1 KiB, and the body is held in memory. */
const MAX_FORM_BYTES = 64 * 1024;

/** `repository:name:actions` scopes (several per parameter, space-separated); others are ignored. */
export function parseScopes(values: string[]): Array<{ name: string; actions: Action[] }> {
  const out: Array<{ name: string; actions: Action[] }> = [];
  for (const scope of values.flatMap((v) => v.split(' ')).filter(Boolean)) {
    const first = scope.indexOf(':');
    const last = scope.lastIndexOf(':');
    if (first === -1 || last === first || scope.slice(0, first) !== 'repository') continue;
    const actions = scope.slice(last + 1).split(',').filter((x): x is Action => ACTIONS.has(x));
    out.push({ name: scope.slice(first + 1, last), actions });
  }
  return out;
}

type Ctx = Context<{ Bindings: HttpBindings }>;

/**
 * The repositories a scope's name may reach: the one its registry prefix names or, for a name
 * without one (containerd adds the registry as `?ns=` only on /v2/ requests), the name on every
 * served registry. Rules are applied again on each request (Authenticator.may), so the union is
 * only an upper bound.
 */
function candidates(auth: ClientAuth, name: string, host: string | undefined): string[] {
  const out = new Set<string>();
  const add = (hints: { ns?: string; host?: string | undefined }) => {
    try {
      out.add(canonicalName(auth.router.locate(name, hints).route, hints.ns));
    } catch {
      /* not served that way: nothing to grant */
    }
  };
  add({ host });
  const first = name.split('/')[0] ?? '';
  const hasRegistry = name.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (!hasRegistry) for (const ns of auth.registries) add({ ns });
  return [...out];
}

export function createTokenRoute(auth: ClientAuth): Hono<{ Bindings: HttpBindings }> {
  const app = new Hono<{ Bindings: HttpBindings }>();
  app.get('/', (c) => issue(c, auth, c.req.header('authorization'), c.req.queries('scope') ?? [], c.req.query('service'), false));
  app.post('/', async (c) => {
    const form = await readForm(c);
    let header = c.req.header('authorization');
    if (form.get('grant_type') === 'password') {
      header = basicAuthorization(form.get('username') ?? '', form.get('password') ?? '');
    } else if (form.get('grant_type') !== null) {
      throw new RegistryError('UNSUPPORTED', { message: 'only the password grant is supported' });
    }
    return issue(c, auth, header, form.getAll('scope'), form.get('service') ?? undefined, true);
  });
  return app;
}

async function readForm(c: Ctx): Promise<URLSearchParams> {
  const tooLarge = () => new RegistryError('BAD_REQUEST', { message: `the token request body is larger than ${MAX_FORM_BYTES} bytes` });
  if (Number(c.req.header('content-length') ?? 0) > MAX_FORM_BYTES) throw tooLarge();
  const body = c.req.raw.body;
  if (!body) return new URLSearchParams();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > MAX_FORM_BYTES) throw tooLarge();
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function issue(c: Ctx, auth: ClientAuth, header: string | undefined, scopes: string[], service: string | undefined, oauth: boolean): Promise<Response> {
  const a = auth.authenticator;
  const req = c.env.incoming;
  const deny = (message: string) => new RegistryError('UNAUTHORIZED', { message, headers: { 'WWW-Authenticate': challenge(req, a.service) } });
  if (service !== undefined && service !== a.service) throw new RegistryError('BAD_REQUEST', { message: `this token service is '${a.service}', not '${service}'` });
  // Bearer JWTs are not exchanged for new ones: only credentials (or a robot token) are.
  const identity = await a.authenticate(header, clientOf(req), challenge(req, a.service), { bearer: false, certificate: certificateOf(req) });
  if (identity.kind === 'anonymous' && !a.anonymousPull) throw deny('credentials are required');
  const access: AccessEntry[] = [];
  for (const { name, actions } of parseScopes(scopes)) {
    const allowed = new Set<Action>();
    for (const canonical of candidates(auth, name, req.headers.host)) for (const x of a.allowed(identity, canonical, name)) allowed.add(x);
    const granted = actions.includes('*') && allowed.has('*') ? (['*'] as Action[]) : actions.filter((x) => allowed.has(x));
    if (granted.length > 0) access.push({ type: 'repository', name, actions: granted });
  }
  const subject = identity.kind === 'account' ? identity.name : identity.kind === 'robot' ? `robot:${identity.id}` : '';
  const issued = await a.tokens.issue(subject, access);
  const body = { token: issued.token, access_token: issued.token, expires_in: issued.expiresIn, issued_at: issued.issuedAt };
  return c.json(oauth ? { ...body, scope: access.map((e) => `repository:${e.name}:${e.actions.join(',')}`).join(' ') } : body, 200, { 'Cache-Control': 'no-store' });
}
