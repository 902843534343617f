/**
 * @module test/unit/registry/range
 * Range headers per RFC 9110 §14 (Range Requests):
 *  - §14.1: range units are compared case-insensitively; `bytes` is the only one we serve.
 *  - §14.1.1: `int-range = first-pos "-" [ last-pos ]`, `suffix-range = "-" suffix-length`;
 *    "An int-range is invalid if the last-pos value is present and less than the first-pos."
 *  - §14.1.2: "If the last-pos value is absent, or if the value is greater than or equal to the
 *    current length of the representation data, the byte range is interpreted as the remainder
 *    of the representation"; "If the selected representation is shorter than the specified
 *    suffix-length, the entire representation is used." A range-spec is satisfiable if it is
 *    "an int-range with a first-pos that is less than the current length of the selected
 *    representation or a suffix-range with a non-zero suffix-length", and "When a selected
 *    representation has zero length, the only satisfiable form of range-spec in a GET request
 *    is a suffix-range with a non-zero suffix-length."
 *  - §14.2: "A server MAY ignore the Range header field", which is what ocimirror does with
 *    malformed headers and multi-range requests (served whole, 200).
 *  - §14.4 / §15.5.17: 206 carries `Content-Range: bytes first-last/complete-length`; 416 only
 *    when no range is satisfiable.
 * The 10000-byte examples are the RFC's own (§14.1.2).
 */
import { describe, expect, it } from 'vitest';
import { contentRange, parseRange } from '../../../src/registry/range.ts';

const SIZE = 10_000;
const range = (start: number, end: number) => ({ kind: 'range', start, end });
const NONE = { kind: 'none' };
const UNSATISFIABLE = { kind: 'unsatisfiable' };

describe('parseRange: satisfiable single ranges', () => {
  it('answers the RFC 9110 §14.1.2 examples for a 10000-byte representation', () => {
    expect(parseRange('bytes=0-499', SIZE)).toEqual(range(0, 499));
    expect(parseRange('bytes=500-999', SIZE)).toEqual(range(500, 999));
    expect(parseRange('bytes=-500', SIZE)).toEqual(range(9500, 9999));
    expect(parseRange('bytes=9500-', SIZE)).toEqual(range(9500, 9999));
  });

  it('serves single bytes at either end', () => {
    expect(parseRange('bytes=0-0', SIZE)).toEqual(range(0, 0));
    expect(parseRange('bytes=-1', SIZE)).toEqual(range(9999, 9999));
    expect(parseRange('bytes=9999-9999', SIZE)).toEqual(range(9999, 9999));
    expect(parseRange('bytes=9999-', SIZE)).toEqual(range(9999, 9999));
  });

  it('clamps a last-pos at or past the end to the last byte', () => {
    expect(parseRange('bytes=0-9999', SIZE)).toEqual(range(0, 9999));
    expect(parseRange('bytes=0-10000', SIZE)).toEqual(range(0, 9999));
    expect(parseRange('bytes=5000-99999999', SIZE)).toEqual(range(5000, 9999));
  });

  it('uses the whole representation when the suffix is longer than it', () => {
    expect(parseRange('bytes=-10000', SIZE)).toEqual(range(0, 9999));
    expect(parseRange('bytes=-99999', SIZE)).toEqual(range(0, 9999));
  });

  it('treats the range unit case-insensitively (§14.1)', () => {
    expect(parseRange('Bytes=0-1', SIZE)).toEqual(range(0, 1));
    expect(parseRange('BYTES=-2', SIZE)).toEqual(range(9998, 9999));
  });

  it('works on a one-byte representation', () => {
    expect(parseRange('bytes=0-', 1)).toEqual(range(0, 0));
    expect(parseRange('bytes=-5', 1)).toEqual(range(0, 0));
    expect(parseRange('bytes=0-5', 1)).toEqual(range(0, 0));
  });
});

describe('parseRange: unsatisfiable ranges (416)', () => {
  it('refuses a first-pos at or past the end', () => {
    expect(parseRange('bytes=10000-', SIZE)).toEqual(UNSATISFIABLE);
    expect(parseRange('bytes=10000-10001', SIZE)).toEqual(UNSATISFIABLE);
    expect(parseRange('bytes=20000-30000', SIZE)).toEqual(UNSATISFIABLE);
  });

  it('refuses a zero-length suffix', () => {
    expect(parseRange('bytes=-0', SIZE)).toEqual(UNSATISFIABLE);
    expect(parseRange('bytes=-000', SIZE)).toEqual(UNSATISFIABLE);
  });

  it('refuses every int-range on a zero-length representation', () => {
    expect(parseRange('bytes=0-', 0)).toEqual(UNSATISFIABLE);
    expect(parseRange('bytes=0-0', 0)).toEqual(UNSATISFIABLE);
    expect(parseRange('bytes=-0', 0)).toEqual(UNSATISFIABLE);
  });

  it('serves a non-zero suffix of a zero-length representation whole rather than answering 416', () => {
    // Satisfiable per §14.1.2, but no Content-Range can name zero bytes: ignore it (§14.2).
    expect(parseRange('bytes=-1', 0)).toEqual(NONE);
    expect(parseRange('bytes=-500', 0)).toEqual(NONE);
  });
});

describe('parseRange: headers that are ignored (whole representation, 200)', () => {
  it('ignores a missing header', () => {
    expect(parseRange(undefined, SIZE)).toEqual(NONE);
  });

  it('ignores multi-range requests, even valid ones from §14.1.2', () => {
    for (const h of ['bytes=0-0,-1', 'bytes= 0-999, 4500-5499, -1000', 'bytes=500-600,601-999', 'bytes=500-700,601-999', 'bytes=0-1,']) {
      expect(parseRange(h, SIZE), h).toEqual(NONE);
    }
  });

  it('ignores an int-range whose last-pos is below its first-pos (invalid per §14.1.1)', () => {
    expect(parseRange('bytes=500-100', SIZE)).toEqual(NONE);
    expect(parseRange('bytes=1-0', SIZE)).toEqual(NONE);
  });

  it('ignores other range units', () => {
    for (const h of ['items=0-5', 'byte=0-5', 'bits=0-5', 'none', 'bytesx=0-1']) expect(parseRange(h, SIZE), h).toEqual(NONE);
  });

  it('ignores malformed byte ranges', () => {
    const malformed = ['', 'bytes', 'bytes=', 'bytes=-', 'bytes=abc', 'bytes=5', 'bytes=1-2-3', 'bytes=+1-2', 'bytes=0x10-20', 'bytes=1.5-2', 'bytes=-1-2', 'bytes=--1', 'bytes=1--2', 'bytes=0-1;x', '=0-1', 'bytes:0-1'];
    for (const h of malformed) expect(parseRange(h, SIZE), JSON.stringify(h)).toEqual(NONE);
  });

  it('ignores positions too large to represent exactly instead of mis-slicing', () => {
    expect(parseRange('bytes=99999999999999999999-', SIZE)).toEqual(NONE);
    expect(parseRange('bytes=0-99999999999999999999', SIZE)).toEqual(NONE);
    expect(parseRange('bytes=-99999999999999999999', SIZE)).toEqual(NONE);
  });
});

describe('contentRange', () => {
  it('formats a 206 Content-Range as "bytes first-last/complete-length" (§14.4)', () => {
    expect(contentRange(0, 499, 10_000)).toBe('bytes 0-499/10000');
    expect(contentRange(9999, 9999, 10_000)).toBe('bytes 9999-9999/10000');
  });
});
