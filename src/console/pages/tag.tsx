/**
 * @module console/pages/tag
 * A tag's page: the digest and media type it names, when it was last pulled and last confirmed
 * upstream, whether a pin holds it, the exact pull commands for containerd, Docker and podman
 * (each with a copy button), what the manifest holds (an index's platforms, an image's config and
 * layers with sizes), and for admins the forms that pin, unpin, prefetch or delete it.
 */
import { Layout } from '../layout.tsx';
import type { PageContext } from '../page-context.ts';
import type { Source } from '../data/sources.ts';
import type { Descriptor, TagDetail } from '../data/tag-detail.ts';
import type { PullCommands } from '../data/pull-commands.ts';
import { repositoryUrl } from '../data/links.ts';
import { bytes, DataTable, Digest, Section, When } from './page-parts.tsx';

export interface TagPageProps {
  ctx: PageContext;
  source: Source;
  repo: string;
  tag: string;
  detail: TagDetail;
  pull: PullCommands;
  now: number;
}

function Command(props: { client: 'containerd' | 'docker' | 'podman'; text: string }) {
  return (
    <div class="pull">
      <pre>
        <code data-pull={props.client}>{props.text}</code>
      </pre>
      <button type="button" class="secondary" data-copy={props.text} aria-label={`Copy the ${props.client} command`}>
        Copy
      </button>
    </div>
  );
}

function ActionForm(props: { ctx: PageContext; action: 'pin' | 'unpin' | 'prefetch'; image: string; label: string }) {
  return (
    <form method="post" action={`/console/actions/${props.action}`} class="inline">
      <input type="hidden" name="csrf" value={props.ctx.csrf} />
      <input type="hidden" name="image" value={props.image} />
      <button type="submit" class={props.action === 'prefetch' ? undefined : 'secondary'} data-action={props.action}>
        {props.label}
      </button>
    </form>
  );
}

const cachedWord = (d: Descriptor) => (d.cached ? 'cached' : <span class="muted">not cached</span>);

/** The cells of a layers-table row, the same for the config blob and each layer. */
function BlobCells(props: { d: Descriptor }) {
  const { d } = props;
  return (
    <>
      <td>
        <Digest digest={d.digest} />
      </td>
      <td>
        <code>{d.mediaType}</code>
      </td>
      <td class="num">{bytes(d.size)}</td>
      <td>{cachedWord(d)}</td>
    </>
  );
}

const PLATFORM_COLUMNS = [{ label: 'Platform' }, { label: 'Digest' }, { label: 'Manifest size', num: true }, { label: 'In the cache' }];
const LAYER_COLUMNS = [{ label: '#' }, { label: 'Digest' }, { label: 'Media type' }, { label: 'Size', num: true }, { label: 'In the cache' }];

function Actions(props: { ctx: PageContext; detail: TagDetail }) {
  const { ctx, detail } = props;
  const pin = detail.pin;
  return (
    <Section id="actions" title="Actions">
      <div class="row">
        <ActionForm ctx={ctx} action="prefetch" image={detail.image} label="Prefetch all platforms" />{' '}
        {pin === undefined ? <ActionForm ctx={ctx} action="pin" image={detail.image} label="Pin" /> : null}
        {pin?.source === 'admin' ? <ActionForm ctx={ctx} action="unpin" image={pin.ref} label="Unpin" /> : null}{' '}
        <a href={`/console/actions/delete?image=${encodeURIComponent(detail.image)}`} data-action="delete" class="button danger">
          Delete…
        </a>
      </div>
    </Section>
  );
}

export function TagPage(props: TagPageProps) {
  const { detail, pull, source, repo, tag, now } = props;
  const m = detail.manifest;
  return (
    <Layout ctx={props.ctx} title={`${repo}:${tag}`}>
      <p>
        <a href={repositoryUrl(source.name, repo)}>
          {detail.registry}/{repo}
        </a>
      </p>
      <h1>{detail.image}</h1>
      <dl class="facts">
        <dt>Digest</dt>
        <dd data-digest>
          <Digest digest={detail.digest} full />
        </dd>
        <dt>Media type</dt>
        <dd>
          <code>{detail.mediaType}</code>
        </dd>
        <dt>Last pulled</dt>
        <dd>{m ? <When at={m.lastAccess} now={now} /> : <span class="muted">manifest not cached</span>}</dd>
        <dt>{source.kind === 'hosted' ? 'Pushed' : 'Last confirmed upstream'}</dt>
        <dd>
          <When at={detail.confirmedAt} now={now} />
        </dd>
        <dt>Pinned</dt>
        <dd data-pinned={detail.pin ? 'yes' : 'no'}>
          {detail.pin ? `yes, ${detail.pin.source === 'config' ? 'by the config (pin:)' : 'through the admin API or console'} as ${detail.pin.ref}` : 'no'}
        </dd>
        {m ? (
          <>
            <dt>Manifest</dt>
            <dd>
              {bytes(m.size)}, served {m.hits} times
            </dd>
          </>
        ) : null}
      </dl>
      {props.ctx.identity.admin ? <Actions ctx={props.ctx} detail={detail} /> : null}
      <Section id="pull" title="Pull it through this mirror">
        <h3>containerd</h3>
        <p>
          With <code>/etc/containerd/certs.d/{pull.hostsDir}/hosts.toml</code> naming the mirror (containerd sends the
          registry as <code>?ns=</code>):
        </p>
        <pre>
          <code data-hosts-toml>{pull.hostsToml}</code>
        </pre>
        <Command client="containerd" text={pull.containerd} />
        <h3>Docker</h3>
        <p>
          The registry is the first path component after the mirror's host.
          {pull.insecure ? (
            <>
              {' '}
              The mirror is served over plain HTTP here: list it in <code>insecure-registries</code> in <code>/etc/docker/daemon.json</code>.
            </>
          ) : null}
        </p>
        <Command client="docker" text={pull.docker} />
        {pull.dockerMirror ? (
          <p>
            Or, with the mirror in <code>registry-mirrors</code> (Docker applies it to Docker Hub images only): <code data-pull-alt="docker">{pull.dockerMirror}</code>
          </p>
        ) : null}
        <h3>podman</h3>
        <p>
          Or once for all pulls: a <code>[[registry.mirror]]</code> with <code>location = "{pull.mirrorLocation}"</code> in{' '}
          <code>/etc/containers/registries.conf</code>.
        </p>
        <Command client="podman" text={pull.podman} />
      </Section>
      {m?.kind === 'index' ? (
        <Section id="platforms" title="Platforms">
          <DataTable data="platforms" columns={PLATFORM_COLUMNS}>
            {m.platforms.map((p) => (
              <tr data-platform={p.platform}>
                <th scope="row">
                  {p.platform}
                  {p.attestation ? <span class="muted"> (attestation)</span> : null}
                </th>
                <td>
                  <Digest digest={p.digest} />
                </td>
                <td class="num">{bytes(p.size)}</td>
                <td>{cachedWord(p)}</td>
              </tr>
            ))}
          </DataTable>
        </Section>
      ) : null}
      {m?.kind === 'image' ? (
        <Section id="layers" title="Layers">
          <p>
            {m.layers.length} {m.layers.length === 1 ? 'layer' : 'layers'}, {bytes(m.layers.reduce((a, l) => a + l.size, 0))} compressed
            {m.config ? `; config ${bytes(m.config.size)}` : ''}.
          </p>
          <DataTable data="layers" columns={LAYER_COLUMNS}>
            {m.config ? (
              <tr data-config>
                <th scope="row">config</th>
                <BlobCells d={m.config} />
              </tr>
            ) : null}
            {m.layers.map((l, i) => (
              <tr data-layer={l.digest}>
                <th scope="row">{i + 1}</th>
                <BlobCells d={l} />
              </tr>
            ))}
          </DataTable>
        </Section>
      ) : null}
    </Layout>
  );
}
