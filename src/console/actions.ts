/**
 * @module console/actions
 * What admins do from the console, through the same admin service (and so the same job queue)
 * as the admin API: prefetch, delete (after a confirmation page), gc, evict and sync are queued
 * and answered at once with a 303 to the job's page; pin and unpin take effect at once and go back
 * to the page the form came from with a message. Viewers are refused with 403 whatever they post.
 */
import type { Context } from 'hono';
import { RegistryError } from '../registry/errors.ts';
import type { ConsoleDeps, PageContext } from './page-context.ts';
import { consolePath, formOf, type ConsoleApp, type ConsoleContext } from './console-app.tsx';
import { renderDeleteConfirm } from './action-pages.tsx';
import { parseImageRef } from '../registry/image-ref.ts';
import { tagUrl } from './data/links.ts';

export interface ActionOptions {
  /** Shows `message` once on the page the redirect leads to. */
  setFlash: (c: ConsoleContext, message: string) => void;
}

/** Longest image reference taken from a form (a registry name and tag are far shorter). */
const MAX_IMAGE_CHARS = 1024;

function requireAdmin(ctx: PageContext): void {
  if (!ctx.identity.admin) throw new RegistryError('DENIED', { message: `${ctx.identity.name} may look but not act: this needs an admin` });
}

function imageOf(value: string | undefined): string {
  const image = value?.trim();
  if (!image) throw new RegistryError('BAD_REQUEST', { message: 'name an image: registry/repository:tag' });
  if (image.length > MAX_IMAGE_CHARS) throw new RegistryError('BAD_REQUEST', { message: `an image reference is at most ${MAX_IMAGE_CHARS} characters` });
  return image;
}

/** The job id in what the admin service answered (a job view, or `{jobs: [view…]}` for prefetch). */
function jobIdOf(answer: unknown): number {
  const view = answer as { id?: unknown; jobs?: Array<{ id?: unknown }> };
  const id = typeof view.id === 'number' ? view.id : view.jobs?.[0]?.id;
  if (typeof id !== 'number') throw new RegistryError('UNKNOWN', { message: 'the job was queued but its id is unknown' });
  return id;
}

const toJob = (c: Context, answer: unknown) => c.redirect(`/console/jobs/${jobIdOf(answer)}`, 303);

/**
 * Where pin and unpin go back to: the form's `back` (console pages only), else the image's tag
 * page (routed as the pin is; the console sends no Referer), else the images list.
 */
function backOf(deps: ConsoleDeps, form: Record<string, string | undefined>, image: string): string {
  let fallback = '/console/images';
  try {
    const ref = parseImageRef(image);
    const route = deps.router().resolve(`${ref.registry}/${ref.repo}`);
    if (ref.tag !== undefined) fallback = tagUrl(route.upstream.name, route.repo, ref.tag);
  } catch {
    // A name that does not route has no tag page: the list it is.
  }
  return consolePath(form.back, fallback);
}

export function registerActionRoutes(app: ConsoleApp, deps: ConsoleDeps, opts: ActionOptions): void {
  const admin = deps.admin;
  app.use('/actions/*', async (c, next) => {
    requireAdmin(c.get('ctx'));
    await next();
  });
  app.post('/actions/prefetch', async (c) => toJob(c, admin.prefetch([imageOf((await formOf(c)).image)], undefined)));
  app.get('/actions/delete', (c) => c.html(renderDeleteConfirm(c.get('ctx'), imageOf(c.req.query('image')), deps)));
  app.post('/actions/delete', async (c) => {
    const form = await formOf(c);
    const image = imageOf(form.image);
    if (form.confirm !== image) throw new RegistryError('BAD_REQUEST', { message: `deleting needs confirm=${image}: open /console/actions/delete?image=${image} to confirm` });
    return toJob(c, admin.deleteImage(image));
  });
  app.post('/actions/gc', (c) => toJob(c, admin.gc()));
  app.post('/actions/evict', (c) => toJob(c, admin.evict()));
  app.post('/actions/sync', async (c) => {
    const form = await formOf(c);
    if (!form.yaml?.trim()) throw new RegistryError('BAD_REQUEST', { message: 'paste the image list (skopeo sync YAML)' });
    return toJob(c, admin.sync({ name: form.name?.trim() || 'console', yaml: form.yaml, dest: form.dest?.trim() || 'cache' }));
  });
  app.post('/actions/pin', async (c) => {
    const form = await formOf(c);
    const image = imageOf(form.image);
    admin.addPin(image);
    opts.setFlash(c, `Pinned ${image}: eviction keeps it.`);
    return c.redirect(backOf(deps, form, image), 303);
  });
  app.post('/actions/unpin', async (c) => {
    const form = await formOf(c);
    const image = imageOf(form.image);
    admin.removePin(image);
    opts.setFlash(c, `Unpinned ${image}: eviction may take it like any other image.`);
    return c.redirect(backOf(deps, form, image), 303);
  });
}
