/**
 * @module console/pages/images
 * The images page: every registry the mirror serves (upstreams and hosted) with its repository
 * count, then one registry's repositories, searchable by name, a page at a time, each with its
 * tag count and bytes drawn against the largest on the page.
 */
import { Layout } from '../layout.tsx';
import type { PageContext } from '../page-context.ts';
import type { SourceSummary } from '../data/sources.ts';
import type { RepositoryPage } from '../data/repositories.ts';
import { imagesUrl, repositoryUrl } from '../data/links.ts';
import { SizeBar } from '../charts/size-bar.tsx';
import { bytes, Pager } from './page-parts.tsx';

export interface ImagesPageProps {
  ctx: PageContext;
  sources: SourceSummary[];
  selected: SourceSummary | undefined;
  q: string;
  after: string;
  page: number;
  list: RepositoryPage | undefined;
}

export function ImagesPage(props: ImagesPageProps) {
  const { selected, list, q } = props;
  const largest = Math.max(0, ...(list?.items.map((r) => r.bytes) ?? []));
  return (
    <Layout ctx={props.ctx} title="Images">
      <h1>Images</h1>
      <section aria-labelledby="registries-title">
        <h2 id="registries-title">Registries</h2>
        <div class="table-wrap">
          <table data-registries>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Kind</th>
                <th scope="col">Clients call it</th>
                <th scope="col" class="num">Repositories</th>
              </tr>
            </thead>
            <tbody>
              {props.sources.map((s) => (
                <tr data-registry={s.name}>
                  <th scope="row">
                    <a href={imagesUrl({ registry: s.name })} aria-current={s.name === selected?.name ? 'true' : undefined}>
                      {s.name}
                    </a>
                  </th>
                  <td>{s.kind === 'hosted' ? 'hosted' : s.offline ? 'upstream (offline)' : 'upstream'}</td>
                  <td>{s.registries.join(', ')}</td>
                  <td class="num">{s.repositories}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
      {selected ? (
        <section aria-labelledby="repos-title">
          <h2 id="repos-title">Repositories of {selected.name}</h2>
          <form method="get" action="/console/images" class="row" role="search">
            <label>
              Registry
              <select name="registry">
                {props.sources.map((s) => (
                  <option value={s.name} selected={s.name === selected.name}>
                    {s.name}
                  </option>
                ))}
              </select>
            </label>
            <label>
              Repository name contains
              <input type="search" name="q" value={q} />
            </label>
            <button type="submit">Search</button>
          </form>
          {list && list.items.length > 0 ? (
            <div class="table-wrap">
              <table data-repositories>
                <thead>
                  <tr>
                    <th scope="col">Repository</th>
                    <th scope="col" class="num">Tags</th>
                    <th scope="col" class="num">Blobs</th>
                    <th scope="col" class="num">Bytes</th>
                    <th scope="col">Size (against the largest shown)</th>
                  </tr>
                </thead>
                <tbody>
                  {list.items.map((r) => (
                    <tr data-repository={r.repo}>
                      <th scope="row">
                        <a href={repositoryUrl(selected.name, r.repo)}>{r.repo}</a>
                      </th>
                      <td class="num">{r.tags}</td>
                      <td class="num">{r.blobs}</td>
                      <td class="num">{bytes(r.bytes)}</td>
                      <td>
                        <SizeBar value={r.bytes} max={largest} label={`Bytes of ${r.repo}`} format={bytes} text={false} />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ) : (
            <p data-empty>{q ? `No repository of ${selected.name} contains “${q}”${props.after ? ' after this point' : ''}.` : `The cache holds no repository of ${selected.name}${props.after ? ' after this point' : ''}.`}</p>
          )}
          <Pager
            label="Repository"
            page={props.page}
            first={props.after ? imagesUrl({ registry: selected.name, q }) : undefined}
            next={list?.next !== undefined ? imagesUrl({ registry: selected.name, q, after: list.next, page: props.page + 1 }) : undefined}
          />
        </section>
      ) : (
        <p>No registry is configured.</p>
      )}
    </Layout>
  );
}
