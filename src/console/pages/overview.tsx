/**
 * @module console/pages/overview
 * The overview page: the cache's size against its quota and low watermark, what it holds, hosted
 * registries, fills and jobs in flight, the traffic history of one window (hour, day or week) as
 * charts, and each upstream's health.
 */
import { Layout } from '../layout.tsx';
import type { PageContext } from '../page-context.ts';
import type { HistoryWindow, Overview, UpstreamHealth } from '../data/overview.ts';
import type { SeriesWindow } from '../../metrics/time-series.ts';
import { LineChart } from '../charts/line-chart.tsx';
import { StackedBars } from '../charts/stacked-bars.tsx';
import { SizeBar } from '../charts/size-bar.tsx';
import { bytes, count, DataTable, Section, utc, When } from './page-parts.tsx';

const WINDOWS: Record<HistoryWindow, { label: string; bucket: string }> = {
  hour: { label: 'Last hour', bucket: 'per minute' },
  day: { label: 'Last day', bucket: 'per 15 minutes' },
  week: { label: 'Last week', bucket: 'per 2 hours' },
};

const pct = (n: number) => `${Math.round(n * 100)} %`;

function totals(w: SeriesWindow) {
  const sum = (f: (p: SeriesWindow['points'][number]) => number) => w.points.reduce((a, p) => a + f(p), 0);
  return { cache: sum((p) => p.servedCacheBytes), miss: sum((p) => p.servedUpstreamBytes), fetched: sum((p) => p.upstreamBytes), hits: sum((p) => p.hits), misses: sum((p) => p.misses) };
}

function History(props: { window: HistoryWindow; data: SeriesWindow }) {
  const { data } = props;
  const w = WINDOWS[props.window];
  const t = totals(data);
  const requests = t.hits + t.misses;
  const first = data.points[0];
  const last = data.points[data.points.length - 1];
  const xStart = first ? utc(first.start).slice(5) : '';
  const xEnd = last ? utc(last.start).slice(5) : '';
  const ratio = requests > 0 ? `${count(t.hits)} of ${count(requests)} requests were served from the cache (${pct(t.hits / requests)})` : 'no cache hit or miss was answered';
  const byteWords = `${bytes(t.cache)} served from the cache, ${bytes(t.miss)} served on misses, ${bytes(t.fetched)} fetched from upstreams`;
  return (
    <Section
      id="history"
      title={
        <>
          Traffic: {w.label.toLowerCase()} ({w.bucket})
        </>
      }
    >
      <p>
        {(['hour', 'day', 'week'] as const).map((k) => (
          <>
            {k === props.window ? (
              <strong aria-current="true">{WINDOWS[k].label}</strong>
            ) : (
              <a href={`/console/?window=${k}`} data-window={k}>
                {WINDOWS[k].label}
              </a>
            )}{' '}
          </>
        ))}
      </p>
      <p data-history-summary>
        {w.label}: {byteWords}; {ratio}.
      </p>
      <LineChart
        id="chart-hit-ratio"
        title={`Cache hit ratio, ${w.label.toLowerCase()}`}
        summary={`Share of requests answered from the cache, ${w.bucket}: ${ratio}. Gaps are times with no request.`}
        series={[{ label: 'hit ratio', values: data.points.map((p) => p.hitRatio), dash: 'solid' }]}
        max={1}
        format={pct}
        xStart={xStart}
        xEnd={xEnd}
        xLabel="time (UTC)"
        yLabel="hits"
      />
      <LineChart
        id="chart-bytes"
        title={`Bytes served from the cache and fetched upstream, ${w.label.toLowerCase()}`}
        summary={`${byteWords}, ${w.bucket}.`}
        series={[
          { label: 'served from cache', values: data.points.map((p) => p.servedCacheBytes), dash: 'solid' },
          { label: 'fetched upstream', values: data.points.map((p) => p.upstreamBytes), dash: 'dash' },
        ]}
        area
        format={bytes}
        xStart={xStart}
        xEnd={xEnd}
        xLabel="time (UTC)"
        yLabel="bytes"
      />
      <StackedBars
        id="chart-hit-miss"
        title={`Bytes served on hits and on misses, ${w.label.toLowerCase()}`}
        summary={`${bytes(t.cache)} on hits (from the cache), ${bytes(t.miss)} on misses (through from the upstream), ${w.bucket}.`}
        values={data.points.map((p) => [p.servedCacheBytes, p.servedUpstreamBytes] as const)}
        labels={['hits (cache)', 'misses (upstream)']}
        xStart={xStart}
        xEnd={xEnd}
        yLabel="bytes"
        format={bytes}
      />
    </Section>
  );
}

function UpstreamRow(props: { u: UpstreamHealth; now: number }) {
  const { u, now } = props;
  const state = u.offline ? 'offline' : u.lastAnswerAt === null && u.lastErrorAt === null ? 'not contacted yet' : u.healthy ? 'healthy' : 'failing';
  const rl = u.rateLimit;
  return (
    <tr data-upstream={u.name}>
      <th scope="row">
        {u.name}
        <br />
        <span class="muted">{u.registries.join(', ')}</span>
      </th>
      <td>
        <span class={`state state-${u.healthy && !u.offline ? 'done' : u.offline ? 'queued' : 'failed'}`} data-upstream-state>
          {state}
        </span>
      </td>
      <td>
        <When at={u.lastAnswerAt} now={now} />
      </td>
      <td>
        <When at={u.lastErrorAt} now={now} />
        {u.lastError ? <div class="muted">{u.lastError}</div> : null}
      </td>
      <td>
        <code>{u.activeUrl}</code>
        {u.urls
          .filter((s) => s.state === 'down')
          .map((s) => (
            <div class="muted">
              <code>{s.url}</code> down until {utc(s.retryAt)}
            </div>
          ))}
      </td>
      <td>
        {rl.remaining !== null ? `${rl.remaining}${rl.limit !== null ? ` of ${rl.limit}` : ''} left${rl.windowSeconds !== null ? ` per ${Math.round(rl.windowSeconds / 3600) >= 1 ? `${Math.round(rl.windowSeconds / 3600)} h` : `${rl.windowSeconds} s`}` : ''}` : <span class="muted">not reported</span>}
        {rl.observedAt !== null ? (
          <div class="muted">
            seen <When at={rl.observedAt} now={now} />
          </div>
        ) : null}
        {u.backgroundPausedUntil !== null ? <div>background work paused until {utc(u.backgroundPausedUntil)}</div> : null}
      </td>
    </tr>
  );
}

const HOSTED_COLUMNS = [{ label: 'Registry' }, ...['Repositories', 'Tags', 'Manifests', 'Blobs', 'Bytes'].map((label) => ({ label, num: true }))];
const UPSTREAM_COLUMNS = ['Upstream', 'State', 'Last answer', 'Last error', 'Serving URL', 'Rate limit'].map((label) => ({ label }));

export function OverviewPage(props: { ctx: PageContext; data: Overview; window: HistoryWindow; now: number }) {
  const { data, now } = props;
  return (
    <Layout ctx={props.ctx} title="Overview">
      <h1>Overview</h1>
      <Section id="cache" title="Cache">
        <p data-usage>
          {data.maxSize > 0 ? (
            <SizeBar value={data.usage.bytes} max={data.maxSize} label="Cache size against the quota" format={bytes} marks={[{ at: data.lowWatermarkBytes, label: 'low watermark' }]} />
          ) : (
            <>{bytes(data.usage.bytes)} of blobs (no quota: storage.maxSize is 0)</>
          )}
        </p>
        <dl class="facts">
          <dt>Blobs</dt>
          <dd data-blobs>
            {count(data.usage.blobs)} ({bytes(data.usage.bytes)})
          </dd>
          <dt>Manifests</dt>
          <dd data-manifests>
            {count(data.usage.manifests)} ({bytes(data.usage.manifestBytes)})
          </dd>
          <dt>Fills in flight</dt>
          <dd data-fills>{data.fillsInFlight}</dd>
          <dt>Job queue</dt>
          <dd data-job-depth>
            <a href="/console/jobs">{data.jobDepth} queued or running</a>
          </dd>
        </dl>
      </Section>
      {data.hosted.length > 0 ? (
        <Section id="hosted" title="Hosted registries">
          <DataTable columns={HOSTED_COLUMNS}>
            {data.hosted.map((h) => (
              <tr>
                <th scope="row">
                  <a href={`/console/images?registry=${encodeURIComponent(h.registry)}`}>{h.registry}</a>
                </th>
                <td class="num">{h.repositories}</td>
                <td class="num">{h.tags}</td>
                <td class="num">{h.manifests}</td>
                <td class="num">{h.blobs}</td>
                <td class="num">{bytes(h.bytes)}</td>
              </tr>
            ))}
          </DataTable>
        </Section>
      ) : null}
      {data.history ? <History window={props.window} data={data.history} /> : <p>No traffic history is recorded by this mirror.</p>}
      <Section id="upstreams" title="Upstreams">
        <DataTable data="upstreams" columns={UPSTREAM_COLUMNS}>
          {data.upstreams.map((u) => (
            <UpstreamRow u={u} now={now} />
          ))}
        </DataTable>
      </Section>
    </Layout>
  );
}
