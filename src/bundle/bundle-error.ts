/**
 * @module bundle/bundle-error
 * Why a bundle cannot be written or read: one sentence naming what is wrong (the offending
 * digest, entry name or file), so an operator at an air-gapped site knows which bundle to
 * fetch again without reading a stack trace.
 */

export type BundleErrorCode =
  /** The bundle is malformed or does not verify: bad entry, digest mismatch, truncated. */
  | 'BUNDLE_INVALID'
  /** Content the bundle needs is neither in it nor already stored (a differential bundle imported too early). */
  | 'BUNDLE_INCOMPLETE'
  /** The bundle names an image the destination cannot hold (registry not served, quota). */
  | 'BUNDLE_REFUSED'
  /** A tool or option is missing or wrong (zstd not installed, bad --max-size). */
  | 'BUNDLE_USAGE';

export class BundleError extends Error {
  readonly code: BundleErrorCode;
  /** Digests the message is about, for callers that report them (jobs, tests). */
  readonly digests: readonly string[];

  constructor(code: BundleErrorCode, message: string, options: { digests?: readonly string[]; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BundleError';
    this.code = code;
    this.digests = options.digests ?? [];
  }
}
