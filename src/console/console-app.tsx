/**
 * @module console/console-app
 * The web console under /console/: security headers, static assets, who is asking (a session
 * cookie from the login form, or an Authorization header the admin API would accept), CSRF checks
 * on every POST, HTML error pages with the error table's statuses, then the pages: browse (B's
 * browse-routes), jobs, actions and access. Viewers read; only admins act.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { Hono, type Context } from 'hono';
import type { BlankSchema } from 'hono/types';
import type { HttpBindings } from '@hono/node-server';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { bodyLimit } from 'hono/body-limit';
import { RegistryError } from '../registry/errors.ts';
import type { Authenticator, Identity } from '../auth/authenticator.ts';
import { ROBOT_PREFIX, type RobotTokens } from '../auth/robot-tokens.ts';
import { FailureLimiter } from '../auth/failure-limiter.ts';
import { clientOf } from '../http/auth-middleware.ts';
import { packageRoot } from '../util/package-root.ts';
import { basicAuthorization } from '../util/basic-auth.ts';
import type { Logger } from '../util/logger.ts';
import { CsrfTokens } from './csrf.ts';
import { pullPredicate } from './pull-access.ts';
import { SESSION_COOKIE, SessionStore, type Session, type SessionCredential } from './session.ts';
import type { ConsoleDeps, ConsoleEnv, ConsoleIdentity, PageContext } from './page-context.ts';
import { BareLayout, Layout } from './layout.tsx';
import { registerBrowseRoutes } from './browse-routes.tsx';
import { registerJobRoutes } from './jobs-page.tsx';
import { registerActionRoutes } from './actions.ts';
import { registerAccessRoutes } from './access-page.tsx';

/** Every console response carries these: nothing but our own files runs, nothing frames the console. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
  'X-Frame-Options': 'DENY',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

/** The login page's nonce cookie, which its form's CSRF token is bound to before any session exists. */
const LOGIN_COOKIE = 'ocimirror_console_login';
const LOGIN_FORM_MS = 3_600_000;
/** Forms are small; a sync list is the largest thing posted (the admin API takes bigger ones as JSON). */
const MAX_FORM_BYTES = 1024 * 1024;

/** What outlives a config reload: sessions, the CSRF key and the login failure counts. */
export interface ConsoleState {
  readonly sessions: SessionStore;
  readonly csrf: CsrfTokens;
  /** Failed admin-token logins per address (accounts and robot tokens count in the authenticator's). */
  readonly limiter: FailureLimiter;
  readonly now: () => number;
}

export function createConsoleState({ sessionTTL, now = Date.now }: { sessionTTL: () => number; now?: () => number }): ConsoleState {
  const csrf = new CsrfTokens({ now });
  return { sessions: new SessionStore({ ttlMs: sessionTTL, csrfFor: (id, expiresAt) => csrf.issue(id, expiresAt), now }), csrf, limiter: new FailureLimiter({ now }), now };
}

/** Who may sign in: the same credentials the admin API takes. */
export interface ConsoleAccess {
  /** The bootstrap admin.token. */
  token: string | undefined;
  /** With client `auth` configured: accounts and robot tokens. */
  authenticator: Authenticator | undefined;
  robots: RobotTokens;
  state: ConsoleState;
  log: Logger;
  /** True once the mirror is stopping: live streams end so the drain does not wait on them. */
  draining?: () => boolean;
}

export type ConsoleApp = Hono<ConsoleEnv & { Bindings: HttpBindings }, BlankSchema, '/console'>;
export type ConsoleContext = Context<ConsoleEnv & { Bindings: HttpBindings }>;

const digestOf = (s: string) => createHash('sha256').update(s).digest();

/**
 * The console as an app of its own, answering every path under /console (its own router, error
 * pages and 404s); `strict: false` so /console and /console/ are the same page.
 */
export function createConsole(deps: ConsoleDeps, access: ConsoleAccess): ConsoleApp {
  const app: ConsoleApp = new Hono<ConsoleEnv & { Bindings: HttpBindings }>({ strict: false }).basePath('/console');
  const { state } = access;
  const adminDigest = access.token === undefined ? undefined : digestOf(access.token);
  const isAdminToken = (given: string) => adminDigest !== undefined && timingSafeEqual(digestOf(given), adminDigest);

  app.onError((err, c) => errorPage(err, c as ConsoleContext, access.log));
  app.use('*', async (c, next) => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) c.header(name, value);
    await next();
  });

  registerAssets(app);
  // Posts are forms; bounded so nobody streams gigabytes into the form parser (which the CSRF check runs first).
  app.post(
    '*',
    bodyLimit({
      maxSize: MAX_FORM_BYTES,
      onError: () => {
        throw new RegistryError('BAD_REQUEST', { message: `the form is larger than ${MAX_FORM_BYTES} bytes` });
      },
    }),
  );

  const fromIdentity = (identity: Identity): { identity: ConsoleIdentity; credential: SessionCredential } => {
    const a = access.authenticator;
    if (identity.kind === 'account' && a) return { identity: { name: identity.name, admin: a.isAdmin(identity) }, credential: { kind: 'account', name: identity.name } };
    if (identity.kind === 'robot') return { identity: { name: `robot:${identity.id}`, admin: identity.role === 'admin' }, credential: { kind: 'robot', id: identity.id } };
    // Repository-scoped registry tokens say nothing about the console.
    throw new RegistryError('UNAUTHORIZED', { message: 'the console takes an account, a robot token or the admin token' });
  };

  /**
   * The identity a live session stands for now (a revoked robot or a changed admin token ends it),
   * with the registry identity its repository rules are judged by (none for the admin token).
   */
  const sessionIdentity = (s: Session): { identity: ConsoleIdentity; who: Identity | undefined } | undefined => {
    const cred = s.credential;
    if (cred.kind === 'admin-token') return adminDigest !== undefined && cred.digest === adminDigest.toString('hex') ? { identity: s.identity, who: undefined } : undefined;
    if (!access.authenticator) return undefined;
    let who: Identity;
    if (cred.kind === 'account') {
      who = { kind: 'account', name: cred.name };
    } else {
      const robot = access.robots.list().find((t) => t.id === cred.id && !t.expired);
      if (!robot) return undefined;
      who = { kind: 'robot', id: robot.id, role: robot.role };
    }
    return { identity: fromIdentity(who).identity, who };
  };

  /** The Authorization header as the admin API reads it: the admin token, else an account or robot token. */
  const fromHeader = async (c: ConsoleContext, header: string): Promise<{ identity: ConsoleIdentity; who: Identity | undefined }> => {
    const bearer = /^Bearer\s+(.+)$/i.exec(header)?.[1];
    if (bearer !== undefined && isAdminToken(bearer)) return { identity: { name: 'admin-token', admin: true }, who: undefined };
    const a = access.authenticator;
    if (!a) throw new RegistryError('UNAUTHORIZED', { message: 'the Authorization header does not carry the admin token' });
    const identity = await a.authenticate(header, clientOf(c.env.incoming), 'Basic realm="ocimirror-console"');
    return { identity: fromIdentity(identity).identity, who: identity };
  };

  // Who is asking, before any page: the login page and assets are the only public ones.
  app.use('*', async (c, next) => {
    const sub = c.req.path.slice('/console'.length) || '/';
    if (sub === '/login' || sub.startsWith('/assets/')) return next();
    const header = c.req.header('authorization');
    let ctx: PageContext | undefined;
    if (header !== undefined) {
      // A browser never attaches an Authorization header a page on another site could choose, so
      // header-authenticated requests (scripts, tests) need no CSRF token: ctx.csrf stays empty.
      const { identity, who } = await fromHeader(c, header);
      ctx = { identity, csrf: '', path: c.req.path, canPull: pullPredicate(access.authenticator, who, identity.admin) };
    } else {
      const session = state.sessions.get(getCookie(c, SESSION_COOKIE));
      const current = session && sessionIdentity(session);
      if (session && current) {
        const reading = c.req.method === 'GET' || c.req.method === 'HEAD';
        const { identity, who } = current;
        ctx = {
          identity,
          csrf: session.csrf,
          path: c.req.path,
          flash: c.req.method === 'GET' && !sub.endsWith('/events') ? takeFlash(session) : undefined,
          canPull: pullPredicate(access.authenticator, who, identity.admin),
        };
        if (!reading) {
          const form = await formOf(c);
          if (!state.csrf.verify(session.id, form.csrf)) throw new RegistryError('DENIED', { message: 'the form is stale or did not come from this console (CSRF check failed): reload the page and try again' });
        }
      } else if (session) {
        state.sessions.delete(session.id);
      }
    }
    if (!ctx) {
      if ((c.req.method === 'GET' || c.req.method === 'HEAD') && c.req.header('hx-request') === undefined && !sub.endsWith('/events')) {
        const next_ = c.req.url.slice(new URL(c.req.url).origin.length);
        return c.redirect(`/console/login?next=${encodeURIComponent(next_)}`, 303);
      }
      throw new RegistryError('UNAUTHORIZED', { message: 'sign in to use the console' });
    }
    c.set('ctx', ctx);
    c.header('Cache-Control', 'no-store');
    await next();
  });

  registerLogin(app, access, isAdminToken, fromIdentity);

  app.post('/logout', (c) => {
    state.sessions.delete(getCookie(c, SESSION_COOKIE));
    deleteCookie(c, SESSION_COOKIE, { path: '/console' });
    return c.redirect('/console/login', 303);
  });

  registerBrowseRoutes(app as unknown as Hono<ConsoleEnv>, deps);
  registerJobRoutes(app, deps, { draining: access.draining ?? (() => false) });
  registerActionRoutes(app, deps, { setFlash: (c, message) => setFlash(state, c, message) });
  registerAccessRoutes(app, { robots: access.robots, authenticator: access.authenticator, sessions: state.sessions, setFlash: (c, message) => setFlash(state, c, message) });
  app.all('*', () => {
    throw new RegistryError('NOT_FOUND', { message: 'no such console page' });
  });
  return app;
}

/** Flash messages ride on the session, so a redirect's target shows them once without any URL parameter. */
const flashes = new WeakMap<Session, string>();

function takeFlash(session: Session): string | undefined {
  const message = flashes.get(session);
  flashes.delete(session);
  return message;
}

function setFlash(state: ConsoleState, c: ConsoleContext, message: string): void {
  const session = state.sessions.get(getCookie(c, SESSION_COOKIE));
  if (session) flashes.set(session, message);
}

/** The posted form as strings (files and repeated fields dropped); parsed once, kept for the handler. */
export async function formOf(c: Context): Promise<Record<string, string | undefined>> {
  const type = c.req.header('content-type') ?? '';
  if (!type.startsWith('application/x-www-form-urlencoded') && !type.startsWith('multipart/form-data')) return {};
  const body = await c.req.parseBody();
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(body)) if (typeof v === 'string') out[k] = v;
  return out;
}

function isTls(c: ConsoleContext): boolean {
  return (c.env?.incoming?.socket as TLSSocket | undefined)?.encrypted === true;
}

/** A `next` or `back` target limited to console pages, so a link cannot send anyone elsewhere after login. */
export function consolePath(target: string | undefined, fallback = '/console/'): string {
  if (target === undefined || !target.startsWith('/console/') || /\.\.|%2e|\\|[\u0000-\u001f]/i.test(target)) return fallback;
  return target;
}

function registerLogin(
  app: ConsoleApp,
  access: ConsoleAccess,
  isAdminToken: (given: string) => boolean,
  fromIdentity: (identity: Identity) => { identity: ConsoleIdentity; credential: SessionCredential },
): void {
  const { state } = access;
  const showForm = (c: ConsoleContext, status: 200 | 400 | 401 | 403 | 429, message?: string) => {
    const nonce = randomBytes(24).toString('base64url');
    setCookie(c, LOGIN_COOKIE, nonce, { path: '/console', httpOnly: true, sameSite: 'Strict', secure: isTls(c), maxAge: LOGIN_FORM_MS / 1000 });
    c.header('Cache-Control', 'no-store');
    const csrf = state.csrf.issue(nonce, state.now() + LOGIN_FORM_MS);
    return c.html(<LoginPage csrf={csrf} next={consolePath(c.req.query('next') ?? undefined, '')} message={message} accounts={access.authenticator !== undefined} />, status);
  };
  app.get('/login', (c) => showForm(c, 200));
  app.post('/login', async (c) => {
    const form = await formOf(c);
    if (!state.csrf.verify(getCookie(c, LOGIN_COOKIE), form.csrf)) return showForm(c, 403, 'The form had expired; please sign in again.');
    const client = clientOf(c.env.incoming);
    let signedIn: { identity: ConsoleIdentity; credential: SessionCredential } | undefined;
    const token = form.token?.trim();
    try {
      if (token) {
        const wait = state.limiter.blockedFor(client);
        if (wait !== undefined) return showForm(c, 429, `Too many failed attempts; try again in ${wait} s.`);
        if (isAdminToken(token)) {
          state.limiter.succeed(client);
          signedIn = { identity: { name: 'admin-token', admin: true }, credential: { kind: 'admin-token', digest: digestOf(token).toString('hex') } };
        } else if (token.startsWith(ROBOT_PREFIX) && access.authenticator) {
          signedIn = fromIdentity(await access.authenticator.authenticate(`Bearer ${token}`, client, 'Basic realm="ocimirror-console"'));
        } else {
          state.limiter.fail(client);
          access.log.warn({ client }, 'console sign-in with a token that is neither the admin token nor a robot token');
        }
      } else if (form.user && form.password !== undefined && access.authenticator) {
        signedIn = fromIdentity(await access.authenticator.authenticate(basicAuthorization(form.user, form.password), client, 'Basic realm="ocimirror-console"', { bearer: false }));
      }
    } catch (err) {
      if (err instanceof RegistryError && err.code === 'TOOMANYREQUESTS') return showForm(c, 429, 'Too many failed attempts; try again later.');
      if (err instanceof RegistryError && err.code === 'UNAUTHORIZED') return showForm(c, 401, 'Those credentials were not accepted.');
      throw err;
    }
    if (!signedIn) return showForm(c, 401, 'Those credentials were not accepted.');
    const session = state.sessions.create(signedIn.identity, signedIn.credential);
    deleteCookie(c, LOGIN_COOKIE, { path: '/console' });
    setCookie(c, SESSION_COOKIE, session.id, {
      path: '/console',
      httpOnly: true,
      sameSite: 'Strict',
      secure: isTls(c),
      maxAge: Math.max(1, Math.floor((session.expiresAt - state.now()) / 1000)),
    });
    return c.redirect(consolePath(form.next), 303);
  });
}

function LoginPage(props: { csrf: string; next: string; message: string | undefined; accounts: boolean }) {
  return (
    <BareLayout title="Sign in">
      <h1>Sign in to the ocimirror console</h1>
      {props.message ? (
        <p class="error" role="alert">
          {props.message}
        </p>
      ) : null}
      <form method="post" action="/console/login" class="stack">
        <input type="hidden" name="csrf" value={props.csrf} />
        <input type="hidden" name="next" value={props.next} />
        {props.accounts ? (
          <fieldset>
            <legend>Account</legend>
            <label>
              User name
              <input name="user" autocomplete="username" />
            </label>
            <label>
              Password
              <input name="password" type="password" autocomplete="current-password" />
            </label>
          </fieldset>
        ) : null}
        <fieldset>
          <legend>{props.accounts ? 'Or a token' : 'Token'}</legend>
          <label>
            Admin token or robot token
            <input name="token" type="password" autocomplete="off" />
          </label>
        </fieldset>
        <button type="submit">Sign in</button>
      </form>
    </BareLayout>
  );
}

/** An error as a page, with the status the error table gives its code (401 pages never ask for Basic credentials). */
function errorPage(err: Error, c: ConsoleContext, log: Logger): Response | Promise<Response> {
  const known = err instanceof RegistryError;
  if (!known) log.error({ err, method: c.req.method, path: c.req.path }, 'unhandled console error');
  const status: number = known ? err.status : 500;
  const message = known ? err.message : 'Something went wrong; the mirror logged it.';
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) c.header(name, value);
  c.header('Cache-Control', 'no-store');
  if (known && err.headers['Retry-After']) c.header('Retry-After', err.headers['Retry-After']);
  const ctx = c.get('ctx') as PageContext | undefined;
  const title = status === 401 ? 'Sign-in needed' : status === 403 ? 'Not allowed' : status === 404 ? 'Not found' : 'Error';
  const body = (
    <>
      <h1>{title}</h1>
      <p class="error" role="alert">
        {message}
      </p>
      {status === 401 ? (
        <p>
          <a href="/console/login">Sign in</a>
        </p>
      ) : (
        <p>
          <a href="/console/">Back to the overview</a>
        </p>
      )}
    </>
  );
  return c.html(ctx ? <Layout ctx={ctx} title={title}>{body}</Layout> : <BareLayout title={title}>{body}</BareLayout>, status as 400);
}

const ASSETS: Readonly<Record<string, { file: () => string; type: string }>> = {
  'htmx.min.js': { file: () => path.join(root(), 'node_modules/htmx.org/dist/htmx.min.js'), type: 'text/javascript; charset=utf-8' },
  'console.js': { file: () => path.join(root(), 'src/console/assets/console.js'), type: 'text/javascript; charset=utf-8' },
  'console.css': { file: () => path.join(root(), 'src/console/assets/console.css'), type: 'text/css; charset=utf-8' },
};

function root(): string {
  const dir = packageRoot();
  if (dir === undefined) throw new RegistryError('NOT_FOUND', { message: 'the console assets are not installed' });
  return dir;
}

/** Assets are read once and kept: they are small (htmx ~50 KB) and change only with the package. */
function registerAssets(app: ConsoleApp): void {
  const cache = new Map<string, Buffer>();
  app.get('/assets/:name', (c) => {
    const name = c.req.param('name');
    const asset = Object.hasOwn(ASSETS, name) ? ASSETS[name] : undefined;
    if (!asset) throw new RegistryError('NOT_FOUND', { message: 'no such asset' });
    let body = cache.get(name);
    if (!body) {
      try {
        body = readFileSync(asset.file());
      } catch (err) {
        throw new RegistryError('NOT_FOUND', { message: `console asset ${name} is missing from the installation`, cause: err });
      }
      cache.set(name, body);
    }
    return c.body(new Uint8Array(body), 200, { 'Content-Type': asset.type, 'Cache-Control': 'public, max-age=3600' });
  });
}
