/**
 * @module console/jobs-page
 * The job queue in the console: the list (filtered by state and type, paged, newest first) and
 * one job's page (state, payload, progress, attempts, error, result). Both stay live through
 * Server-Sent Events: the server reads the job rows every second and sends the re-rendered part
 * when it changed, so a running job's progress and state move without a reload.
 */
import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import { jobVisibility } from './job-visibility.ts';
import { RegistryError } from '../registry/errors.ts';
import { JOB_STATES, JOB_TYPES, type Job, type JobState, type JobType } from '../jobs/index.ts';
import type { ConsoleDeps, PageContext } from './page-context.ts';
import { Layout } from './layout.tsx';
import type { ConsoleApp } from './console-app.tsx';

const PAGE_SIZE = 50;
/** How often a stream reads the rows again: a job's progress is written about as often. */
const POLL_MS = 1000;
/** A stream ends after this long; the browser reconnects, so a forgotten tab does not hold one forever. */
const STREAM_MS = 300_000;
/** A comment line this often keeps proxies from closing a quiet stream. */
const KEEPALIVE_MS = 15_000;

interface JobFilter {
  state: JobState | undefined;
  type: JobType | undefined;
  page: number;
}

function filterOf(c: Context): JobFilter {
  const state = c.req.query('state') || undefined;
  const type = c.req.query('type') || undefined;
  if (state !== undefined && !(JOB_STATES as readonly string[]).includes(state)) throw new RegistryError('BAD_REQUEST', { message: `state must be one of ${JOB_STATES.join(', ')}` });
  if (type !== undefined && !(JOB_TYPES as readonly string[]).includes(type)) throw new RegistryError('BAD_REQUEST', { message: `type must be one of ${JOB_TYPES.join(', ')}` });
  const page = Number(c.req.query('page') ?? '1');
  return { state: state as JobState | undefined, type: type as JobType | undefined, page: Number.isSafeInteger(page) && page >= 1 && page <= 100_000 ? page : 1 };
}

function query(f: JobFilter, page = f.page): string {
  const q = new URLSearchParams();
  if (f.state) q.set('state', f.state);
  if (f.type) q.set('type', f.type);
  if (page > 1) q.set('page', String(page));
  const s = q.toString();
  return s ? `?${s}` : '';
}

function listJobs(deps: ConsoleDeps, f: JobFilter): { jobs: Job[]; more: boolean } {
  const rows = deps.background.store.list({ state: f.state, type: f.type, limit: PAGE_SIZE + 1, offset: (f.page - 1) * PAGE_SIZE });
  return { jobs: rows.slice(0, PAGE_SIZE), more: rows.length > PAGE_SIZE };
}

const when = (ms: number | null) => (ms ? new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '—');

export function StateBadge(props: { state: JobState }) {
  return (
    <span data-job-state class={`state state-${props.state}`}>
      {props.state}
    </span>
  );
}

/** Each `xDone`/`xTotal` (or `done`/`total`) pair in a job's progress, e.g. a prefetch's blobs and bytes. */
function progressPairs(o: Record<string, unknown>): Array<{ label: string; done: number; total: number }> {
  const pairs: Array<{ label: string; done: number; total: number }> = [];
  for (const [key, done] of Object.entries(o)) {
    const m = /^(.*?)(Done|done)$/.exec(key);
    if (!m || typeof done !== 'number') continue;
    const total = o[`${m[1]}${m[2] === 'Done' ? 'Total' : 'total'}`];
    if (typeof total === 'number' && total > 0) pairs.push({ label: m[1] || 'done', done, total });
  }
  return pairs;
}

/** Progress as bars (with the numbers in words) where it has done/total pairs, and always as JSON. */
function Progress(props: { progress: unknown }) {
  const p = props.progress;
  if (p === null || p === undefined) return <span class="muted">—</span>;
  const pairs = typeof p === 'object' && !Array.isArray(p) ? progressPairs(p as Record<string, unknown>) : [];
  return (
    <>
      {pairs.map(({ label, done, total }) => (
        <p>
          <label>
            {`${label}: ${done} of ${total} `}
            <progress value={Math.min(done, total)} max={total}>
              {`${done} of ${total}`}
            </progress>
          </label>
        </p>
      ))}
      <pre>{JSON.stringify(p, null, 2)}</pre>
    </>
  );
}

function summary(job: Job): string {
  const p = job.payload as Record<string, unknown> | null;
  if (p && typeof p === 'object') {
    for (const key of ['image', 'name', 'reason', 'scope']) if (typeof p[key] === 'string') return p[key];
  }
  return job.key ?? '';
}

/** `visible`: whether the viewer may see what a job is about (console/job-visibility); all when absent. */
export function JobRows(props: { jobs: Job[]; visible?: (job: Job) => boolean }) {
  if (props.jobs.length === 0) {
    return (
      <tr>
        <td colspan={6}>No jobs match.</td>
      </tr>
    );
  }
  return (
    <>
      {props.jobs.map((job) => (
        <tr>
          <td class="num">
            <a href={`/console/jobs/${job.id}`}>{`#${job.id}`}</a>
          </td>
          <td>{job.type}</td>
          <td>
            <StateBadge state={job.state} />
          </td>
          <td>{props.visible?.(job) === false ? <em>a repository you cannot pull</em> : <code>{summary(job)}</code>}</td>
          <td class="num">{`${job.attempts}/${job.maxAttempts}`}</td>
          <td>{when(job.createdAt)}</td>
        </tr>
      ))}
    </>
  );
}

function JobTable(props: { jobs: Job[]; filter: JobFilter; more: boolean; visible: (job: Job) => boolean }) {
  const f = props.filter;
  return (
    <div id="jobs">
      <div class="table-wrap">
        <table>
          <caption class="muted">Newest first; updates live.</caption>
          <thead>
            <tr>
              <th scope="col" class="num">
                Job
              </th>
              <th scope="col">Type</th>
              <th scope="col">State</th>
              <th scope="col">What</th>
              <th scope="col" class="num">
                Attempts
              </th>
              <th scope="col">Queued</th>
            </tr>
          </thead>
          <tbody data-sse={`/console/jobs/events${query(f)}`} aria-live="polite">
            <JobRows jobs={props.jobs} visible={props.visible} />
          </tbody>
        </table>
      </div>
      <nav class="pager" aria-label="Pages">
        {f.page > 1 ? <a href={`/console/jobs${query(f, f.page - 1)}`}>Newer</a> : null}
        <span>{`Page ${f.page}`}</span>
        {props.more ? <a href={`/console/jobs${query(f, f.page + 1)}`}>Older</a> : null}
      </nav>
    </div>
  );
}

function AdminActions(props: { ctx: PageContext; sync: boolean }) {
  const csrf = <input type="hidden" name="csrf" value={props.ctx.csrf} />;
  return (
    <section aria-labelledby="act">
      <h2 id="act">Queue a job</h2>
      <form method="post" action="/console/actions/prefetch" class="row">
        {csrf}
        <label>
          Image to prefetch
          <input name="image" required placeholder="docker.io/library/alpine:3.20" />
        </label>
        <button type="submit" data-action="prefetch">
          Prefetch
        </button>
      </form>
      <form method="post" action="/console/actions/gc" class="row">
        {csrf}
        <button type="submit" data-action="gc">
          Collect garbage
        </button>
      </form>
      <form method="post" action="/console/actions/evict" class="row">
        {csrf}
        <button type="submit" data-action="evict">
          Evict to the quota
        </button>
      </form>
      {props.sync ? (
        <details>
          <summary>Sync an image list</summary>
          <form method="post" action="/console/actions/sync" class="stack">
            {csrf}
            <label>
              Name
              <input name="name" value="console" />
            </label>
            <label>
              Destination (cache, or a hosted registry with an optional prefix)
              <input name="dest" value="cache" />
            </label>
            <label>
              Image list (skopeo sync YAML)
              <textarea name="yaml" rows={8} required></textarea>
            </label>
            <button type="submit" data-action="sync">
              Queue the sync
            </button>
          </form>
        </details>
      ) : null}
    </section>
  );
}

/** One filter of the jobs list: "any" first, then each value, the current one selected. */
function FilterSelect(props: { label: string; name: string; values: readonly string[]; selected: string | undefined }) {
  return (
    <label>
      {props.label}
      <select name={props.name}>
        <option value="">any</option>
        {props.values.map((v) => (
          <option value={v} selected={props.selected === v}>
            {v}
          </option>
        ))}
      </select>
    </label>
  );
}

function JobsPage(props: { ctx: PageContext; filter: JobFilter; jobs: Job[]; more: boolean; sync: boolean; visible: (job: Job) => boolean }) {
  const f = props.filter;
  return (
    <Layout ctx={props.ctx} title="Jobs">
      <h1>Jobs</h1>
      <form method="get" action="/console/jobs" class="row" hx-get="/console/jobs" hx-trigger="change" hx-target="#jobs" hx-select="#jobs" hx-swap="outerHTML" hx-push-url="true">
        <FilterSelect label="State" name="state" values={JOB_STATES} selected={f.state} />
        <FilterSelect label="Type" name="type" values={JOB_TYPES} selected={f.type} />
        <button type="submit" class="secondary">
          Filter
        </button>
      </form>
      <JobTable jobs={props.jobs} filter={f} more={props.more} visible={props.visible} />
      {props.ctx.identity.admin ? <AdminActions ctx={props.ctx} sync={props.sync} /> : null}
    </Layout>
  );
}

export function JobDetails(props: { job: Job }) {
  const job = props.job;
  return (
    <dl class="facts">
      <dt>State</dt>
      <dd>
        <StateBadge state={job.state} />
      </dd>
      <dt>Type</dt>
      <dd>{job.type}</dd>
      <dt>Attempts</dt>
      <dd>{`${job.attempts} of ${job.maxAttempts}`}</dd>
      <dt>Queued</dt>
      <dd>{when(job.createdAt)}</dd>
      <dt>Started</dt>
      <dd>{when(job.startedAt)}</dd>
      <dt>Finished</dt>
      <dd>{when(job.finishedAt)}</dd>
      {job.state === 'queued' && job.runAfter > job.createdAt ? (
        <>
          <dt>Runs after</dt>
          <dd>{when(job.runAfter)}</dd>
        </>
      ) : null}
      <dt>Payload</dt>
      <dd>
        <pre>{JSON.stringify(job.payload, null, 2)}</pre>
      </dd>
      <dt>Progress</dt>
      <dd>
        <Progress progress={job.progress} />
      </dd>
      <dt>Last error</dt>
      <dd>{job.lastError ? <pre class="error">{job.lastError}</pre> : <span class="muted">none</span>}</dd>
      <dt>Result</dt>
      <dd>{job.result === null ? <span class="muted">—</span> : <pre>{JSON.stringify(job.result, null, 2)}</pre>}</dd>
    </dl>
  );
}

function JobPage(props: { ctx: PageContext; job: Job }) {
  const job = props.job;
  return (
    <Layout ctx={props.ctx} title={`Job #${job.id}`}>
      <h1>{`Job #${job.id}: ${job.type}`}</h1>
      <div id="job" data-sse={`/console/jobs/${job.id}/events`} aria-live="polite">
        <JobDetails job={job} />
      </div>
      <p>
        <a href="/console/jobs">All jobs</a>
      </p>
    </Layout>
  );
}

const finished = (job: Job) => job.state === 'done' || job.state === 'failed';

/**
 * Streams `render()` as `update` events whenever its HTML changes; `end` when it says the thing
 * watched is over (the browser then stops), or nothing when the stream times out or the mirror
 * drains (the browser reconnects, to whichever replica answers).
 */
function pollStream(c: Context, render: () => { html: string; end: boolean }, draining: () => boolean): Response {
  return streamSSE(c, async (stream) => {
    const started = Date.now();
    let last: string | undefined;
    let quietSince = started;
    while (!stream.aborted && !stream.closed && !draining() && Date.now() - started < STREAM_MS) {
      const { html, end } = render();
      if (html !== last) {
        await stream.writeSSE({ event: 'update', data: html });
        last = html;
        quietSince = Date.now();
      } else if (Date.now() - quietSince >= KEEPALIVE_MS) {
        await stream.write(': keep-alive\n\n');
        quietSince = Date.now();
      }
      if (end) {
        await stream.writeSSE({ event: 'end', data: 'done' });
        return;
      }
      await stream.sleep(POLL_MS);
    }
  });
}

export function registerJobRoutes(app: ConsoleApp, deps: ConsoleDeps, opts: { draining: () => boolean }): void {
  const jobOf = (raw: string): Job => {
    const id = Number(raw);
    const job = /^\d{1,15}$/.test(raw) ? deps.background.store.get(id) : undefined;
    if (!job) throw new RegistryError('NOT_FOUND', { message: `no job ${raw}` });
    return job;
  };
  /** Read per page and per stream update (not per row), so a config reload applies to the next one. */
  const visibleTo = (ctx: PageContext) => jobVisibility(ctx, deps.config());
  /** A job the caller may not look into is answered as one that does not exist. */
  const visibleJob = (c: Context, raw: string): Job => {
    const job = jobOf(raw);
    if (!visibleTo(c.get('ctx'))(job)) throw new RegistryError('NOT_FOUND', { message: `no job ${raw}` });
    return job;
  };
  app.get('/jobs', (c) => {
    const filter = filterOf(c);
    const { jobs, more } = listJobs(deps, filter);
    const ctx = c.get('ctx');
    return c.html(<JobsPage ctx={ctx} filter={filter} jobs={jobs} more={more} sync={typeof deps.admin.sync === 'function'} visible={visibleTo(ctx)} />);
  });
  app.get('/jobs/events', (c) => {
    const filter = filterOf(c);
    const ctx = c.get('ctx');
    return pollStream(c, () => ({ html: String(<JobRows jobs={listJobs(deps, filter).jobs} visible={visibleTo(ctx)} />), end: false }), opts.draining);
  });
  app.get('/jobs/:id', (c) => c.html(<JobPage ctx={c.get('ctx')} job={visibleJob(c, c.req.param('id'))} />));
  app.get('/jobs/:id/events', (c) => {
    const id = visibleJob(c, c.req.param('id')).id;
    return pollStream(
      c,
      () => {
        const job = deps.background.store.get(id);
        return job ? { html: String(<JobDetails job={job} />), end: finished(job) } : { html: '<p>This job was pruned.</p>', end: true };
      },
      opts.draining,
    );
  });
}
