/**
 * @module registry/range
 * Single byte-range requests per RFC 9110 §14.1.2 (`bytes=first-last`, `bytes=first-`,
 * `bytes=-suffix`). A syntactically invalid header or a multi-range request is ignored and the
 * whole blob is served (§14.2 allows a server to ignore Range); a valid range that starts past
 * the end, or a zero-length suffix, is unsatisfiable (§14.1.2, §15.5.17: 416 with
 * `Content-Range: bytes *\/size`).
 */

export type RangeResult =
  | { kind: 'none' }
  | { kind: 'unsatisfiable' }
  | { kind: 'range'; start: number; end: number /* inclusive */ };

const SINGLE = /^bytes[ \t]*=[ \t]*(\d*)[ \t]*-[ \t]*(\d*)[ \t]*$/i;

export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return { kind: 'none' };
  const m = SINGLE.exec(header);
  if (!m) return { kind: 'none' };
  const [, a = '', b = ''] = m;
  if (a === '' && b === '') return { kind: 'none' };
  if (a === '') {
    const suffix = Number(b);
    if (!Number.isSafeInteger(suffix)) return { kind: 'none' };
    if (suffix === 0) return { kind: 'unsatisfiable' };
    // §14.1.2: on a zero-length representation a non-zero suffix is satisfiable, yet no
    // Content-Range can describe zero bytes; serve the (empty) whole, as §14.2 allows.
    if (size === 0) return { kind: 'none' };
    return { kind: 'range', start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(a);
  const last = b === '' ? Number.MAX_SAFE_INTEGER : Number(b);
  // first > last is an invalid range-spec (ignored); a valid one starting past the end is unsatisfiable.
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(last) || last < start) return { kind: 'none' };
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'range', start, end: Math.min(last, size - 1) };
}

export function contentRange(start: number, end: number, size: number): string {
  return `bytes ${start}-${end}/${size}`;
}
