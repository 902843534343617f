/**
 * @module console/data/tags
 * One page of a repository's tags after a key, each with its digest, when the upstream last
 * confirmed it (or it was pushed), and its manifest's size and last pull.
 */
import type { Metadata } from '../../cache/metadata/metadata.ts';
import type { BrowseTagRow } from '../../cache/metadata/browse-queries.ts';
import type { Source } from './sources.ts';

export const TAG_PAGE = 50;

export interface TagPage {
  items: BrowseTagRow[];
  next: string | undefined;
}

export function tagPage(metadata: Metadata, source: Source, repo: string, { after = '', limit = TAG_PAGE }: { after?: string; limit?: number }): TagPage {
  const rows = metadata.browse.tags(source.kind, source.name, repo, after, limit + 1);
  const shown = rows.slice(0, limit);
  return { items: shown, next: rows.length > limit ? shown[shown.length - 1]!.tag : undefined };
}
