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
import { bytes, DataTable, Pager, Section } from './page-parts.tsx';

export interface ImagesPageProps {
  ctx: PageContext;
  sources: SourceSummary[];
  selected: SourceSummary | undefined;
  q: string;
  after: string;
  page: number;
  list: RepositoryPage | undefined;
}

const REGISTRY_COLUMNS = [{ label: 'Name' }, { label: 'Kind' }, { label: 'Clients call it' }, { label: 'Repositories', num: true }];
const REPOSITORY_COLUMNS = [{ label: 'Repository' }, { label: 'Tags', num: true }, { label: 'Blobs', num: true }, { label: 'Bytes', num: true }, { label: 'Size (against the largest shown)' }];

export function ImagesPage(props: ImagesPageProps) {
  const { selected, list, q } = props;
  const largest = Math.max(0, ...(list?.items.map((r) => r.bytes) ?? []));
  return (
    <Layout ctx={props.ctx} title="Images">
      <h1>Images</h1>
      <Section id="registries" title="Registries">
        <DataTable data="registries" columns={REGISTRY_COLUMNS}>
          {props.sources.map((s) => (
            <tr data-registry={s.name}>
              <th scope="row">
                <a href={imagesUrl({ registry: s.name })} aria-current={s.name === selected?.name ? 'true' : undefined}>
                  {s.name}
                </a>
              </th>
              <td>{s.kind === 'hosted' ? 'hosted' : s.offline ? 'upstream (offline)' : 'upstream'}</td>
              <td>{s.registries.join(', ')}</td>
              <td class="num">
                {s.repositories}
                {s.capped ? '+' : ''}
              </td>
            </tr>
          ))}
        </DataTable>
      </Section>
      {selected ? (
        <Section id="repos" title={<>Repositories of {selected.name}</>}>
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
            <DataTable data="repositories" columns={REPOSITORY_COLUMNS}>
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
            </DataTable>
          ) : (
            <p data-empty>{q ? `No repository of ${selected.name} contains “${q}”${props.after ? ' after this point' : ''}.` : `The cache holds no repository of ${selected.name}${props.after ? ' after this point' : ''}.`}</p>
          )}
          <Pager
            label="Repository"
            page={props.page}
            first={props.after ? imagesUrl({ registry: selected.name, q }) : undefined}
            next={list?.next !== undefined ? imagesUrl({ registry: selected.name, q, after: list.next, page: props.page + 1 }) : undefined}
          />
        </Section>
      ) : (
        <p>No registry is configured.</p>
      )}
    </Layout>
  );
}
