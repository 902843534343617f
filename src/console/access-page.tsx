/**
 * @module console/access-page
 * Who the caller is and what they may do, and for admins the robot tokens: listed by id,
 * description, role and expiry (the secret is never stored, so never shown again), created with
 * the secret shown once on the result page, and revoked.
 */
import { RegistryError } from '../registry/errors.ts';
import type { Authenticator } from '../auth/authenticator.ts';
import type { RobotToken, RobotTokens } from '../auth/robot-tokens.ts';
import { isRole, type Role } from '../auth/rules.ts';
import { parseDuration } from '../config/units.ts';
import type { PageContext } from './page-context.ts';
import type { SessionStore } from './session.ts';
import { Layout } from './layout.tsx';
import { formOf, type ConsoleApp, type ConsoleContext } from './console-app.tsx';

export interface AccessOptions {
  robots: RobotTokens;
  /** Robot tokens sign in only with client auth configured (as on the admin API). */
  authenticator: Authenticator | undefined;
  sessions: SessionStore;
  setFlash: (c: ConsoleContext, message: string) => void;
}

const MAX_DESCRIPTION_CHARS = 200;

function TokenTable(props: { ctx: PageContext; tokens: RobotToken[] }) {
  if (props.tokens.length === 0) return <p>No robot tokens yet.</p>;
  return (
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th scope="col">Id</th>
            <th scope="col">Description</th>
            <th scope="col">Role</th>
            <th scope="col">Created</th>
            <th scope="col">Expires</th>
            <th scope="col">
              <span class="muted">Action</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {props.tokens.map((t) => (
            <tr>
              <td>
                <code>{t.id}</code>
              </td>
              <td>{t.description}</td>
              <td>{t.role}</td>
              <td>{t.createdAt}</td>
              <td>{t.expiresAt === null ? 'never' : t.expired ? `expired ${t.expiresAt}` : t.expiresAt}</td>
              <td>
                <form method="post" action={`/console/access/tokens/${t.id}/revoke`} class="inline" data-confirm={`Revoke robot token ${t.id} (${t.description})?`}>
                  <input type="hidden" name="csrf" value={props.ctx.csrf} />
                  <button type="submit" class="danger" data-action="revoke" aria-label={`Revoke ${t.id}`}>
                    Revoke
                  </button>
                </form>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function AccessPage(props: { ctx: PageContext; tokens: RobotToken[] | undefined; robotsSignIn: boolean }) {
  const { ctx } = props;
  return (
    <Layout ctx={ctx} title="Access">
      <h1>Access</h1>
      <dl class="facts">
        <dt>Signed in as</dt>
        <dd data-identity>{ctx.identity.name}</dd>
        <dt>Role</dt>
        <dd data-role>{ctx.identity.admin ? 'admin: may browse, queue jobs, pin, delete and manage robot tokens' : 'viewer: may browse and watch jobs'}</dd>
      </dl>
      {props.tokens ? (
        <section aria-labelledby="robots">
          <h2 id="robots">Robot tokens</h2>
          {props.robotsSignIn ? null : <p class="muted">Client auth is not configured: robot tokens are accepted only once it is.</p>}
          <TokenTable ctx={ctx} tokens={props.tokens} />
          <h3>New robot token</h3>
          <form method="post" action="/console/access/tokens" class="stack">
            <input type="hidden" name="csrf" value={ctx.csrf} />
            <label>
              Description (who or what uses it)
              <input name="description" required maxlength={MAX_DESCRIPTION_CHARS} />
            </label>
            <label>
              Role
              <select name="role">
                <option value="pull">pull</option>
                <option value="push">push</option>
                <option value="admin">admin</option>
              </select>
            </label>
            <label>
              Expires after (e.g. 30d; empty: never)
              <input name="expires" placeholder="30d" />
            </label>
            <button type="submit" data-action="create-token">
              Create token
            </button>
          </form>
        </section>
      ) : null}
    </Layout>
  );
}

function TokenCreatedPage(props: { ctx: PageContext; token: RobotToken & { token: string } }) {
  const t = props.token;
  return (
    <Layout ctx={props.ctx} title="Robot token created">
      <h1>Robot token created</h1>
      <p role="status">
        Copy the token now: it is shown only this once. The mirror keeps only its hash.
      </p>
      <p>
        <code class="secret" data-secret>
          {t.token}
        </code>{' '}
        <button type="button" data-copy={t.token}>
          Copy
        </button>
      </p>
      <dl class="facts">
        <dt>Id</dt>
        <dd>
          <code>{t.id}</code>
        </dd>
        <dt>Description</dt>
        <dd>{t.description}</dd>
        <dt>Role</dt>
        <dd>{t.role}</dd>
        <dt>Expires</dt>
        <dd>{t.expiresAt ?? 'never'}</dd>
      </dl>
      <p>
        Use it as the password of any user name, e.g. <code>docker login -u robot</code>, or as <code>Authorization: Bearer …</code>.
      </p>
      <p>
        <a href="/console/access">Back to access</a>
      </p>
    </Layout>
  );
}

export function registerAccessRoutes(app: ConsoleApp, opts: AccessOptions): void {
  const { robots } = opts;
  const requireAdmin = (ctx: PageContext) => {
    if (!ctx.identity.admin) throw new RegistryError('DENIED', { message: `${ctx.identity.name} may not manage robot tokens: this needs an admin` });
  };
  app.get('/access', (c) => {
    const ctx = c.get('ctx');
    return c.html(<AccessPage ctx={ctx} tokens={ctx.identity.admin ? robots.list() : undefined} robotsSignIn={opts.authenticator !== undefined} />);
  });
  app.post('/access/tokens', async (c) => {
    const ctx = c.get('ctx');
    requireAdmin(ctx);
    const form = await formOf(c);
    const description = form.description?.trim() ?? '';
    if (description === '' || description.length > MAX_DESCRIPTION_CHARS) throw new RegistryError('BAD_REQUEST', { message: `describe the token in 1 to ${MAX_DESCRIPTION_CHARS} characters` });
    const role = form.role || 'pull';
    if (!isRole(role)) throw new RegistryError('BAD_REQUEST', { message: 'role must be pull, push or admin' });
    let ttlMs: number | undefined;
    const expires = form.expires?.trim();
    if (expires) {
      try {
        ttlMs = parseDuration(expires);
      } catch {
        ttlMs = undefined;
      }
      if (ttlMs === undefined || !(ttlMs > 0)) throw new RegistryError('BAD_REQUEST', { message: "expires must be a duration such as '30d' or '12h'" });
    }
    const created = robots.create({ role: role as Role, description, ttlMs });
    return c.html(<TokenCreatedPage ctx={ctx} token={created} />, 201);
  });
  app.post('/access/tokens/:id/revoke', (c) => {
    requireAdmin(c.get('ctx'));
    const id = c.req.param('id');
    if (!/^[0-9a-f]{16}$/.test(id) || !robots.revoke(id)) throw new RegistryError('NOT_FOUND', { message: `no robot token ${id}` });
    opts.sessions.revokeRobot(id);
    opts.setFlash(c, `Revoked robot token ${id}.`);
    return c.redirect('/console/access', 303);
  });
}
