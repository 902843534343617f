/**
 * @module registry/errors
 * The one table of client-visible error codes and the typed error every layer throws.
 * Codes and statuses follow the OCI distribution-spec v1.1 "Error Codes" table; TAG_INVALID,
 * RANGE_INVALID, UNAVAILABLE and UNKNOWN follow distribution's errcode registry
 * (registry/api/errcode/register.go, registry/api/v2/errors.go), which clients already understand.
 * BAD_REQUEST, NOT_FOUND, REQUEST_TIMEOUT and BAD_GATEWAY are ocimirror's own, for malformed requests,
 * paths outside the registry API, request headers that come too slowly and upstream answers that
 * cannot be used. The table is the only source of statuses. A row with `wire` is a status the
 * spec asks for under a code it already lists: the envelope carries the `wire` code, since
 * clients act on the spec's codes only.
 */

export const ERROR_CODES = {
  BLOB_UNKNOWN: { status: 404, message: 'blob unknown to registry' },
  BLOB_UPLOAD_INVALID: { status: 400, message: 'blob upload invalid' },
  BLOB_UPLOAD_UNKNOWN: { status: 404, message: 'blob upload unknown to registry' },
  DIGEST_INVALID: { status: 400, message: 'provided digest did not match uploaded content' },
  MANIFEST_BLOB_UNKNOWN: { status: 404, message: 'manifest references a manifest or blob unknown to registry' },
  MANIFEST_INVALID: { status: 400, message: 'manifest invalid' },
  /** "SHOULD respond to a request to push a manifest over this limit with … 413 Payload Too Large" (Pushing Manifests). */
  MANIFEST_TOO_LARGE: { status: 413, message: 'manifest too large', wire: 'MANIFEST_INVALID' },
  MANIFEST_UNKNOWN: { status: 404, message: 'manifest unknown to registry' },
  NAME_INVALID: { status: 400, message: 'invalid repository name' },
  NAME_UNKNOWN: { status: 404, message: 'repository name not known to registry' },
  TAG_INVALID: { status: 400, message: 'manifest tag did not match URI' },
  SIZE_INVALID: { status: 400, message: 'provided length did not match content length' },
  UNAUTHORIZED: { status: 401, message: 'authentication required' },
  DENIED: { status: 403, message: 'requested access to the resource is denied' },
  /** A hosted registry's storage quota is used up: 507 Insufficient Storage (RFC 4918 §11.5). */
  QUOTA_EXCEEDED: { status: 507, message: 'the hosted registry has no room left under its quota', wire: 'DENIED' },
  UNSUPPORTED: { status: 405, message: 'the operation is unsupported' },
  PAGINATION_NUMBER_INVALID: { status: 400, message: 'invalid number of results requested' },
  BAD_REQUEST: { status: 400, message: 'the request is malformed' },
  NOT_FOUND: { status: 404, message: 'no such endpoint or resource' },
  REQUEST_TIMEOUT: { status: 408, message: 'the request headers did not arrive in time' },
  TOOMANYREQUESTS: { status: 429, message: 'too many requests' },
  RANGE_INVALID: { status: 416, message: 'requested range not satisfiable' },
  UNAVAILABLE: { status: 503, message: 'service unavailable' },
  BAD_GATEWAY: { status: 502, message: 'the upstream registry answered with an error or with content that does not check out' },
  UNKNOWN: { status: 500, message: 'unknown error' },
} as const satisfies Record<string, { status: number; message: string; wire?: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The code a client sees for `code`: the row's `wire` code, else the code itself. */
export function wireCode(code: ErrorCode): ErrorCode {
  const entry = ERROR_CODES[code];
  return 'wire' in entry ? entry.wire : code;
}

export interface RegistryErrorOptions {
  /** Overrides the table's message (keep it human, never include secrets). */
  message?: string;
  /** Structured detail rendered in the envelope's `detail` field. */
  detail?: unknown;
  cause?: unknown;
  /** Extra response headers, e.g. `Retry-After` on TOOMANYREQUESTS. */
  headers?: Record<string, string>;
  /** The upstream's status when the error came from an upstream response. */
  upstreamStatus?: number;
}

/** A client-visible registry error: one code from the table, rendered once by the HTTP layer. */
export class RegistryError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: unknown;
  readonly headers: Readonly<Record<string, string>>;
  readonly upstreamStatus: number | undefined;

  constructor(code: ErrorCode, options: RegistryErrorOptions = {}) {
    const entry = ERROR_CODES[code];
    super(options.message ?? entry.message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RegistryError';
    this.code = code;
    this.status = entry.status;
    this.detail = options.detail;
    this.headers = Object.freeze({ ...(options.headers ?? {}) });
    this.upstreamStatus = options.upstreamStatus;
  }
}

export interface ErrorEnvelope {
  errors: Array<{ code: ErrorCode; message: string; detail?: unknown }>;
}

/** The OCI error envelope for any thrown value; unknown errors become a 500 UNKNOWN without internals. */
export function toErrorEnvelope(err: unknown): { status: number; headers: Record<string, string>; body: ErrorEnvelope } {
  if (err instanceof RegistryError) {
    const item: ErrorEnvelope['errors'][number] = { code: wireCode(err.code), message: err.message };
    if (err.detail !== undefined) item.detail = err.detail;
    return { status: err.status, headers: { ...err.headers }, body: { errors: [item] } };
  }
  return { status: 500, headers: {}, body: { errors: [{ code: 'UNKNOWN', message: ERROR_CODES.UNKNOWN.message }] } };
}
