/**
 * @module sync/tag-selection
 * Which tags of a repository's tag list a sync copies: all of them, those a regex matches, or
 * those whose version a semver range admits; then `tags-deny` removes some and `latest: N` keeps
 * the N highest. Pure functions over the list the registry returned.
 *
 * Tags are read as versions the way skopeo's semver library (Masterminds/semver) reads them, more
 * leniently than npm's semver: a `v` prefix and missing minor or patch are fine (`v1`, `3.19`,
 * `1.25.3-alpine`), and a range may join its comparators with commas (`>= 1.2, < 2`). A tag that
 * is not a version (`latest`, `edge`) never matches a range. Prereleases (`2.0.0-rc1`) match only
 * a range that names a prerelease, as in both libraries.
 */
import semver from 'semver';

/** How a repository's tags are chosen from its tag list. */
export type TagSelector =
  | { readonly kind: 'all' }
  | { readonly kind: 'regex'; readonly pattern: string }
  | { readonly kind: 'semver'; readonly range: string };

export interface SelectionLimits {
  /** Regexes (unanchored, as skopeo's tag regex) removing tags. */
  readonly deny?: readonly string[];
  /** Keep only this many, highest first (see {@link compareTagsHighestFirst}). */
  readonly latest?: number | undefined;
}

const LENIENT_VERSION = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$/;

/** The version a tag names (`v1` → 1.0.0, `3.19` → 3.19.0), or null when it names none. */
export function tagVersion(tag: string): semver.SemVer | null {
  const m = LENIENT_VERSION.exec(tag);
  if (!m) return null;
  const [, major = '0', minor = '0', patch = '0', pre, build] = m;
  const core = [major, minor, patch].map((n) => n.replace(/^0+(?=\d)/, '')).join('.');
  return semver.parse(`${core}${pre ? `-${pre}` : ''}${build ? `+${build}` : ''}`);
}

/** A range as npm's semver reads it: commas (Masterminds' AND) become spaces. */
function normalizeRange(range: string): string {
  return range.trim().replace(/\s*,\s*/g, ' ');
}

export function validSemverRange(range: string): boolean {
  return range.trim() !== '' && semver.validRange(normalizeRange(range)) !== null;
}

export function tagInRange(tag: string, range: string): boolean {
  const version = tagVersion(tag);
  return version !== null && semver.satisfies(version, normalizeRange(range));
}

/**
 * Order for `latest`: tags that are versions first, highest version first (equal versions such as
 * `v1` and `1.0` by text, descending), then the other tags in descending lexical (code point) order.
 */
export function compareTagsHighestFirst(a: string, b: string): number {
  const va = tagVersion(a);
  const vb = tagVersion(b);
  if (va && vb) return semver.rcompare(va, vb) || descending(a, b);
  if (va) return -1;
  if (vb) return 1;
  return descending(a, b);
}

function descending(a: string, b: string): number {
  return a < b ? 1 : a > b ? -1 : 0;
}

/** The tags of `all` the selector chooses, less the denied ones, cut to `latest`; each once. */
export function selectTags(all: readonly string[], selector: TagSelector, { deny = [], latest }: SelectionLimits = {}): string[] {
  const denied = deny.map((d) => new RegExp(d));
  let chosen = [...new Set(all)];
  if (selector.kind === 'regex') {
    const re = new RegExp(selector.pattern);
    chosen = chosen.filter((t) => re.test(t));
  } else if (selector.kind === 'semver') {
    chosen = chosen.filter((t) => tagInRange(t, selector.range));
  }
  chosen = chosen.filter((t) => !denied.some((re) => re.test(t)));
  if (latest !== undefined) chosen = chosen.sort(compareTagsHighestFirst).slice(0, latest);
  return chosen;
}
