/**
 * @module sync/sync-plan
 * A sync file as work: per registry, which repositories and how their references are chosen —
 * written out (tags and digests), or from the registry's tag list (all, regex, semver, with
 * `tags-deny` and `latest`). The plan is plain data, so a scheduled job can store it; turning a
 * selection into references needs the tag list, which the caller supplies.
 */
import type { SyncFile, SyncSource } from './sync-file.ts';
import { selectTags, type TagSelector } from './tag-selection.ts';

export type RepoSelector = { readonly kind: 'refs'; readonly refs: readonly string[] } | TagSelector;

export interface RepoSelection {
  /** The repository as the file writes it (`alpine`; the route adds Docker Hub's `library/`). */
  readonly repo: string;
  readonly selector: RepoSelector;
}

export interface SourcePlan {
  readonly source: SyncSource;
  readonly selections: readonly RepoSelection[];
}

export interface SyncPlan {
  readonly sources: readonly SourcePlan[];
}

export function planSync(file: SyncFile): SyncPlan {
  return {
    sources: file.sources.map((source) => ({
      source,
      selections: [
        ...Object.entries(source.images).map(([repo, refs]): RepoSelection => ({ repo, selector: refs.length === 0 ? { kind: 'all' } : { kind: 'refs', refs: [...new Set(refs)] } })),
        ...Object.entries(source.tagRegex).map(([repo, pattern]): RepoSelection => ({ repo, selector: { kind: 'regex', pattern } })),
        ...Object.entries(source.semver).map(([repo, range]): RepoSelection => ({ repo, selector: { kind: 'semver', range } })),
      ],
    })),
  };
}

/** Whether choosing the selection's references needs the repository's tag list. */
export function needsTagList(selector: RepoSelector): boolean {
  return selector.kind !== 'refs';
}

/** The tags and digests a selection copies; `listTags` is called only when a tag list is needed. */
export async function selectionReferences(selection: RepoSelection, source: SyncSource, listTags: () => Promise<readonly string[]>): Promise<string[]> {
  if (selection.selector.kind === 'refs') return [...selection.selector.refs];
  return selectTags(await listTags(), selection.selector, { deny: source.tagsDeny, latest: source.latest });
}

/** How the file chose a selection, for messages: `images`, `images-by-tag-regex`, `images-by-semver`. */
export function selectionKey(selector: RepoSelector): string {
  return selector.kind === 'regex' ? 'images-by-tag-regex' : selector.kind === 'semver' ? 'images-by-semver' : 'images';
}
