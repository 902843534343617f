/**
 * @module console/layout
 * The page shell every console page renders in: skip link, header with the navigation, who is
 * signed in and with which role, the logout form, and the `<main id="main">` the page fills.
 */
import type { Child } from 'hono/jsx';
import { raw } from 'hono/html';
import type { PageContext } from './page-context.ts';

const NAV: ReadonlyArray<{ href: string; label: string; current: (path: string) => boolean }> = [
  { href: '/console/', label: 'Overview', current: (p) => p === '/console' || p === '/console/' },
  { href: '/console/images', label: 'Images', current: (p) => p.startsWith('/console/images') },
  { href: '/console/jobs', label: 'Jobs', current: (p) => p.startsWith('/console/jobs') },
  { href: '/console/access', label: 'Access', current: (p) => p.startsWith('/console/access') },
];

const DOCTYPE = raw('<!doctype html>');

export interface LayoutProps {
  ctx: PageContext;
  title: string;
  children?: unknown;
}

/** The document around every page: head, skip link, the header with the brand, and `main#main`. */
function Shell(props: { title: string; head?: Child; header?: Child; children?: Child }) {
  // The doctype keeps browsers out of quirks mode; pages render through `c.html(<Layout …/>)` alone.
  return (
    <>
      {DOCTYPE}
      <html lang="en">
        <head>
          <meta charset="utf-8" />
          <meta name="viewport" content="width=device-width, initial-scale=1" />
          <title>{`${props.title} · ocimirror`}</title>
          <link rel="stylesheet" href="/console/assets/console.css" />
          {props.head}
        </head>
        <body>
          <a class="skip" href="#main">
            Skip to content
          </a>
          <header class="top">
            <a class="brand" href="/console/">
              ocimirror
            </a>
            {props.header}
          </header>
          <main id="main" tabindex={-1}>
            {props.children}
          </main>
        </body>
      </html>
    </>
  );
}

export function Layout(props: LayoutProps) {
  const { ctx, title } = props;
  const head = (
    <>
      {/* htmx's indicator styles are an inline <style>, which the CSP (style-src 'self') refuses. */}
      <meta name="htmx-config" content='{"includeIndicatorStyles":false}' />
      <script src="/console/assets/htmx.min.js" defer></script>
      <script src="/console/assets/console.js" defer></script>
    </>
  );
  const header = (
    <>
      <nav aria-label="Console">
        <ul>
          {NAV.map((n) => (
            <li>
              <a href={n.href} aria-current={n.current(ctx.path) ? 'page' : undefined}>
                {n.label}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <div class="who">
        <span data-identity>{ctx.identity.name}</span> <span class="role">({ctx.identity.admin ? 'admin' : 'viewer'})</span>
        <form method="post" action="/console/logout" class="inline">
          <input type="hidden" name="csrf" value={ctx.csrf} />
          <button type="submit">Log out</button>
        </form>
      </div>
    </>
  );
  return (
    <Shell title={title} head={head} header={header}>
      {ctx.flash ? (
        <p class="flash" role="status">
          {ctx.flash}
        </p>
      ) : null}
      {props.children as Child}
    </Shell>
  );
}

/** The shell for pages shown before anyone signs in (login) or when nobody could be (errors). */
export function BareLayout(props: { title: string; children?: unknown }) {
  return <Shell title={props.title}>{props.children as Child}</Shell>;
}
