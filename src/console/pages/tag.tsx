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
import { bytes, Digest, When } from './page-parts.tsx';

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

function Actions(props: { ctx: PageContext; detail: TagDetail }) {
  const { ctx, detail } = props;
  const pin = detail.pin;
  return (
    <section aria-labelledby="actions-title">
      <h2 id="actions-title">Actions</h2>
      <div class="row">
        <ActionForm ctx={ctx} action="prefetch" image={detail.image} label="Prefetch all platforms" />{' '}
        {pin === undefined ? <ActionForm ctx={ctx} action="pin" image={detail.image} label="Pin" /> : null}
        {pin?.source === 'admin' ? <ActionForm ctx={ctx} action="unpin" image={pin.ref} label="Unpin" /> : null}{' '}
        <a href={`/console/actions/delete?image=${encodeURIComponent(detail.image)}`} data-action="delete" class="button danger">
          Delete…
        </a>
      </div>
    </section>
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
      <section aria-labelledby="pull-title">
        <h2 id="pull-title">Pull it through this mirror</h2>
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
      </section>
      {m?.kind === 'index' ? (
        <section aria-labelledby="platforms-title">
          <h2 id="platforms-title">Platforms</h2>
          <div class="table-wrap">
            <table data-platforms>
              <thead>
                <tr>
                  <th scope="col">Platform</th>
                  <th scope="col">Digest</th>
                  <th scope="col" class="num">Manifest size</th>
                  <th scope="col">In the cache</th>
                </tr>
              </thead>
              <tbody>
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
              </tbody>
            </table>
          </div>
        </section>
      ) : null}
      {m?.kind === 'image' ? (
        <section aria-labelledby="layers-title">
          <h2 id="layers-title">Layers</h2>
          <p>
            {m.layers.length} {m.layers.length === 1 ? 'layer' : 'layers'}, {bytes(m.layers.reduce((a, l) => a + l.size, 0))} compressed
            {m.config ? `; config ${bytes(m.config.size)}` : ''}.
          </p>
          <div class="table-wrap">
            <table data-layers>
              <thead>
                <tr>
                  <th scope="col">#</th>
                  <th scope="col">Digest</th>
                  <th scope="col">Media type</th>
                  <th scope="col" class="num">Size</th>
                  <th scope="col">In the cache</th>
                </tr>
              </thead>
              <tbody>
                {m.config ? (
                  <tr data-config>
                    <th scope="row">config</th>
                    <td>
                      <Digest digest={m.config.digest} />
                    </td>
                    <td>
                      <code>{m.config.mediaType}</code>
                    </td>
                    <td class="num">{bytes(m.config.size)}</td>
                    <td>{cachedWord(m.config)}</td>
                  </tr>
                ) : null}
                {m.layers.map((l, i) => (
                  <tr data-layer={l.digest}>
                    <th scope="row">{i + 1}</th>
                    <td>
                      <Digest digest={l.digest} />
                    </td>
                    <td>
                      <code>{l.mediaType}</code>
                    </td>
                    <td class="num">{bytes(l.size)}</td>
                    <td>{cachedWord(l)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </section>
      ) : null}
    </Layout>
  );
}
