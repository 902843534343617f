/**
 * @module console/action-pages
 * Pages an action needs before it runs: the confirmation of a delete, naming what goes.
 */
import { formatImageRef, parseImageRef } from '../registry/image-ref.ts';
import type { ConsoleDeps, PageContext } from './page-context.ts';
import { Layout } from './layout.tsx';

function DeleteConfirm(props: { ctx: PageContext; image: string; pinned: boolean }) {
  const { ctx, image } = props;
  return (
    <Layout ctx={ctx} title={`Delete ${image}?`}>
      <h1>{`Delete ${image}?`}</h1>
      <p>
        This removes <code>{image}</code> from the cache: its tag, its manifests, and the layers no other cached image uses. Clients pulling it again fetch it
        from the upstream. A delete job is queued; its page shows how it went.
      </p>
      {props.pinned ? <p class="error">This image is pinned: its pinned content stays until it is unpinned.</p> : null}
      <form method="post" action="/console/actions/delete" class="row">
        <input type="hidden" name="csrf" value={ctx.csrf} />
        <input type="hidden" name="image" value={image} />
        <input type="hidden" name="confirm" value={image} />
        <button type="submit" class="danger" data-action="delete">
          {`Delete ${image}`}
        </button>
        <a href="/console/images">Cancel</a>
      </form>
    </Layout>
  );
}

export function renderDeleteConfirm(ctx: PageContext, image: string, deps: ConsoleDeps) {
  let normal = image;
  try {
    normal = formatImageRef(parseImageRef(image));
  } catch {
    // A malformed name is refused by the delete itself; here it is only not pinned.
  }
  const pinned = deps.background.pins.list().some((p) => p.ref === normal);
  return <DeleteConfirm ctx={ctx} image={image} pinned={pinned} />;
}
