/**
 * @module console/pages/repository
 * A repository's page: its totals and its tags a page at a time, each with the digest it names,
 * its manifest's size, when the upstream last confirmed it (or it was pushed) and when it was last pulled.
 */
import { Layout } from '../layout.tsx';
import type { PageContext } from '../page-context.ts';
import type { Source } from '../data/sources.ts';
import type { TagPage } from '../data/tags.ts';
import type { RepositoryStats } from '../../cache/metadata/browse-queries.ts';
import { imagesUrl, repositoryUrl, tagUrl } from '../data/links.ts';
import { bytes, DataTable, Digest, Pager, When } from './page-parts.tsx';

export interface RepositoryPageProps {
  ctx: PageContext;
  source: Source;
  repo: string;
  stats: RepositoryStats;
  tags: TagPage;
  after: string;
  page: number;
  now: number;
}

export function RepositoryPage(props: RepositoryPageProps) {
  const { source, repo, tags, now } = props;
  const confirmed = source.kind === 'hosted' ? 'Pushed' : 'Last confirmed upstream';
  return (
    <Layout ctx={props.ctx} title={repo}>
      <p>
        <a href={imagesUrl({ registry: source.name })}>Images of {source.name}</a>
      </p>
      <h1>
        {source.registries[0] ?? source.name}/{repo}
      </h1>
      <dl class="facts">
        <dt>{source.kind === 'hosted' ? 'Hosted registry' : 'Upstream'}</dt>
        <dd>{source.name}</dd>
        <dt>Tags</dt>
        <dd data-tag-count>{props.stats.tags}</dd>
        <dt>Blobs</dt>
        <dd>
          {props.stats.blobs} ({bytes(props.stats.bytes)})
        </dd>
      </dl>
      <h2>Tags</h2>
      {tags.items.length > 0 ? (
        <DataTable data="tags" columns={[{ label: 'Tag' }, { label: 'Digest' }, { label: 'Manifest', num: true }, { label: confirmed }, { label: 'Last pulled' }]}>
          {tags.items.map((t) => (
            <tr data-tag={t.tag}>
              <th scope="row">
                <a href={tagUrl(source.name, repo, t.tag)}>{t.tag}</a>
              </th>
              <td>
                <Digest digest={t.digest} />
              </td>
              <td class="num">{t.manifestSize === null ? <span class="muted">not cached</span> : bytes(t.manifestSize)}</td>
              <td>
                <When at={t.at} now={now} />
              </td>
              <td>
                <When at={t.lastAccess} now={now} />
              </td>
            </tr>
          ))}
        </DataTable>
      ) : (
        <p data-empty>No tag of this repository is cached{props.after ? ' after this point' : ''}.</p>
      )}
      <Pager
        label="Tag"
        page={props.page}
        first={props.after ? repositoryUrl(source.name, repo) : undefined}
        next={tags.next !== undefined ? repositoryUrl(source.name, repo, { after: tags.next, page: props.page + 1 }) : undefined}
      />
    </Layout>
  );
}
