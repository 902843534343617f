/**
 * @module console/data/links
 * URLs of the browse pages, built in one place so every link and every route agree: repository
 * names keep their slashes, each segment percent-encoded.
 */

const enc = (repo: string) => repo.split('/').map(encodeURIComponent).join('/');

function query(params: Record<string, string | number | undefined>): string {
  const entries = Object.entries(params).filter((e): e is [string, string | number] => e[1] !== undefined && e[1] !== '');
  return entries.length === 0 ? '' : `?${new URLSearchParams(entries.map(([k, v]): [string, string] => [k, String(v)])).toString()}`;
}

export function imagesUrl(params: { registry?: string | undefined; q?: string | undefined; after?: string | undefined; page?: number | undefined } = {}): string {
  return `/console/images${query(params)}`;
}

export function repositoryUrl(source: string, repo: string, params: { after?: string | undefined; page?: number | undefined } = {}): string {
  return `/console/images/${encodeURIComponent(source)}/${enc(repo)}${query(params)}`;
}

export function tagUrl(source: string, repo: string, tag: string): string {
  return `/console/images/${encodeURIComponent(source)}/${enc(repo)}/tags/${encodeURIComponent(tag)}`;
}

/** The parts of a path under /console/images/: a source and a repository, with a tag when it ends in /tags/<tag>. */
export function parseImagePath(rest: string): { source: string; repo: string; tag: string | undefined } | undefined {
  const segments = rest.split('/').filter((s) => s !== '');
  let decoded: string[];
  try {
    decoded = segments.map(decodeURIComponent);
  } catch {
    return undefined;
  }
  if (decoded.length < 2) return undefined;
  const [source, ...repoParts] = decoded as [string, ...string[]];
  // A tag has no '/', so ".../tags/<tag>" at the end is a tag page (a repository whose name ends in /tags/x is not reachable here).
  const n = repoParts.length;
  if (n >= 3 && repoParts[n - 2] === 'tags') return { source, repo: repoParts.slice(0, n - 2).join('/'), tag: repoParts[n - 1] };
  return { source, repo: repoParts.join('/'), tag: undefined };
}
