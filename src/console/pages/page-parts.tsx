/**
 * @module console/pages/page-parts
 * Small pieces the browse pages share: times written out in UTC with how long ago, byte counts,
 * the pager of keyset-paginated lists, titled sections and the scrollable tables in them.
 */
import type { Child } from 'hono/jsx';
import { formatBytes } from '../../config/units.ts';

export const bytes = (n: number) => formatBytes(n);

/** Counts with thousands separators, the same whatever the server's locale. */
export const count = (n: number) => n.toLocaleString('en-US');

/** "3 min ago", "2 h ago", "5 d ago"; "in the future" for a clock that moved back. */
export function ago(at: number, now: number): string {
  const s = Math.round((now - at) / 1000);
  if (s < 0) return 'in the future';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86_400)} d ago`;
}

export function utc(at: number): string {
  return `${new Date(at).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

export function When(props: { at: number | null | undefined; now: number; never?: string }) {
  if (props.at === null || props.at === undefined || props.at <= 0) return <span class="muted">{props.never ?? 'never'}</span>;
  return (
    <time datetime={new Date(props.at).toISOString()}>
      {utc(props.at)} ({ago(props.at, props.now)})
    </time>
  );
}

/** Links to the first and the next page; the page number is only shown, the key carries the position. */
export function Pager(props: { page: number; first: string | undefined; next: string | undefined; label: string }) {
  if (props.first === undefined && props.next === undefined) return null;
  return (
    <nav class="pager" aria-label={`${props.label} pages`}>
      {props.first !== undefined ? (
        <a href={props.first} rel="first" data-page="first">
          First page
        </a>
      ) : null}
      <span>Page {props.page}</span>
      {props.next !== undefined ? (
        <a href={props.next} rel="next" data-page="next">
          Next page
        </a>
      ) : null}
    </nav>
  );
}

/** Digests shown shortened ("sha256:0123456789ab…") with the whole one in a tooltip and for screen readers. */
export function Digest(props: { digest: string; full?: boolean }) {
  if (props.full) return <code class="digest">{props.digest}</code>;
  const short = props.digest.slice(0, props.digest.indexOf(':') + 13);
  return (
    <code class="digest" title={props.digest} aria-label={props.digest}>
      {short}…
    </code>
  );
}

/** A section named by its heading: `<h2 id="{id}-title">`, which `aria-labelledby` points at. */
export function Section(props: { id: string; title: Child; children?: Child }) {
  const titleId = `${props.id}-title`;
  return (
    <section aria-labelledby={titleId}>
      <h2 id={titleId}>{props.title}</h2>
      {props.children}
    </section>
  );
}

export interface Column {
  label: Child;
  /** Right-aligned numbers. */
  num?: boolean;
}

/**
 * A table that scrolls sideways on narrow screens, with a header row of `columns` and `children` as
 * its body rows; `data` names a `data-*` attribute tests and scripts find the table by.
 */
export function DataTable(props: { columns: readonly Column[]; data?: string; children?: Child }) {
  const marker = props.data === undefined ? {} : { [`data-${props.data}`]: true };
  return (
    <div class="table-wrap">
      <table {...marker}>
        <thead>
          <tr>
            {props.columns.map((c) => (
              <th scope="col" class={c.num ? 'num' : undefined}>
                {c.label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>{props.children}</tbody>
      </table>
    </div>
  );
}
