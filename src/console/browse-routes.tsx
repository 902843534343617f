/**
 * @module console/browse-routes
 * The console's read-only pages: overview (`/console/`), images (`/console/images`), a repository
 * (`/console/images/<source>/<repo…>`) and a tag (`…/tags/<tag>`). Handlers read the cache through
 * console/data and render console/pages; who may see them was settled by the console's auth
 * middleware (`ctx`). A viewer sees only the repositories it may pull (`ctx.canPull`, as /v2/
 * decides); another repository's pages are 404, like one the cache does not hold, so they do not
 * tell that it exists.
 */
import type { Context, Hono } from 'hono';
import { RegistryError } from '../registry/errors.ts';
import type { ConsoleDeps, ConsoleEnv } from './page-context.ts';
import { overview, type HistoryWindow } from './data/overview.ts';
import { findSource, repositoryFilter, sourceSummaries } from './data/sources.ts';
import { repositoryPage } from './data/repositories.ts';
import { tagPage } from './data/tags.ts';
import { tagDetail } from './data/tag-detail.ts';
import { pullCommands } from './data/pull-commands.ts';
import { parseImagePath } from './data/links.ts';
import { OverviewPage } from './pages/overview.tsx';
import { ImagesPage } from './pages/images.tsx';
import { RepositoryPage } from './pages/repository.tsx';
import { TagPage } from './pages/tag.tsx';

/** Search text longer than any repository name matches nothing; bounded so it is never a large input. */
const MAX_QUERY = 256;

/** A positive page number from the query, 1 when absent or malformed (it is only displayed). */
function pageOf(c: Context): number {
  const n = Number(c.req.query('page'));
  return Number.isSafeInteger(n) && n > 0 ? n : 1;
}

const notFound = (message: string) => new RegistryError('NOT_FOUND', { message });

export function registerBrowseRoutes(app: Hono<ConsoleEnv>, deps: ConsoleDeps): void {
  const metadata = () => deps.storage.metadata;
  const now = () => deps.storage.metadata.now();

  app.get('/', (c) => {
    const asked = c.req.query('window');
    const window: HistoryWindow = asked === 'day' || asked === 'week' ? asked : 'hour';
    const ctx = c.get('ctx');
    return c.html(<OverviewPage ctx={ctx} data={overview(deps, { window, hosted: ctx.identity.admin })} window={window} now={now()} />);
  });

  app.get('/images', (c) => {
    const config = deps.config();
    const ctx = c.get('ctx');
    const sources = sourceSummaries(config, metadata(), (s) => repositoryFilter(ctx, s));
    const q = (c.req.query('q') ?? '').trim().slice(0, MAX_QUERY);
    const after = c.req.query('after') ?? '';
    const asked = c.req.query('registry');
    const selected = asked ? sources.find((s) => s.name === asked) : sources[0];
    if (asked && !selected) throw notFound(`no registry named '${asked.slice(0, 100)}' is configured`);
    const list = selected && repositoryPage(metadata(), selected, { q, after, visible: repositoryFilter(ctx, selected) });
    return c.html(<ImagesPage ctx={ctx} sources={sources} selected={selected} q={q} after={after} page={pageOf(c)} list={list} />);
  });

  app.get('/images/*', (c) => {
    const path = c.req.path;
    const parsed = parseImagePath(path.slice(path.indexOf('/images/') + '/images/'.length));
    if (!parsed) throw notFound('no such image page');
    const source = findSource(deps.config(), parsed.source);
    if (!source) throw notFound(`no registry named '${parsed.source.slice(0, 100)}' is configured`);
    const ctx = c.get('ctx');
    const visible = repositoryFilter(ctx, source);
    if (visible && !visible(parsed.repo)) throw notFound(`the cache holds nothing of ${source.name}/${parsed.repo.slice(0, 200)}`);
    if (parsed.tag === undefined) {
      const after = c.req.query('after') ?? '';
      const stats = metadata().browse.stats(source.kind, source.name, parsed.repo);
      // No tag and no blob: nothing of it is cached, so there are no tags to read either.
      if (stats.tags === 0 && stats.blobs === 0) throw notFound(`the cache holds nothing of ${source.name}/${parsed.repo.slice(0, 200)}`);
      const tags = tagPage(metadata(), source, parsed.repo, { after });
      return c.html(<RepositoryPage ctx={ctx} source={source} repo={parsed.repo} stats={stats} tags={tags} after={after} page={pageOf(c)} now={now()} />);
    }
    const detail = tagDetail(metadata(), deps.background.pins, source, parsed.repo, parsed.tag);
    if (!detail) throw notFound(`the cache holds no tag ${parsed.tag.slice(0, 128)} of ${source.name}/${parsed.repo.slice(0, 200)}`);
    const pull = pullCommands({ mirrorHost: deps.publicHost(c), tls: new URL(c.req.url).protocol === 'https:', registry: detail.registry, repo: parsed.repo, tag: parsed.tag });
    return c.html(<TagPage ctx={ctx} source={source} repo={parsed.repo} tag={parsed.tag} detail={detail} pull={pull} now={now()} />);
  });
}
