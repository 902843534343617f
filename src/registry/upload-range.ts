/**
 * @module registry/upload-range
 * The distribution-spec's non-standard ranges of a chunked upload: a PATCH's `Content-Range:
 * <start>-<end>` (inclusive, spec grammar `^[0-9]+-[0-9]+$`) and the `Range: 0-<end>` the
 * registry answers with. An invalid Content-Range is a 416 (RANGE_INVALID), as the spec lists
 * it among the 416 conditions with out-of-order chunks.
 */
import { RegistryError } from './errors.ts';

export interface ChunkRange {
  start: number;
  /** Inclusive. */
  end: number;
}

/**
 * The spec's form, also with RFC 9110's `bytes ` prefix and `/<total>` suffix, which some
 * clients send on PATCH: the numbers mean the same either way.
 */
const CONTENT_RANGE = /^(?:bytes[ =])?(\d{1,16})-(\d{1,16})(?:\/(?:\d{1,16}|\*))?$/;

export function parseContentRange(header: string): ChunkRange {
  const m = CONTENT_RANGE.exec(header.trim());
  const start = Number(m?.[1]);
  const end = Number(m?.[2]);
  if (!m || !Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) {
    throw new RegistryError('RANGE_INVALID', { message: 'invalid Content-Range: expected <start>-<end>, inclusive', detail: { contentRange: header.slice(0, 100) } });
  }
  return { start, end };
}

/**
 * The `Range` header value for an upload holding `size` bytes. An empty upload also answers
 * `0-0`, as distribution does: an inclusive range cannot say "nothing", and clients read the
 * end only after their first chunk.
 */
export function uploadRange(size: number): string {
  return `0-${Math.max(0, size - 1)}`;
}
