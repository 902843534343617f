/**
 * @module registry/v2-path
 * Parses the raw (not percent-decoded) path of a /v2/ request into an endpoint, per the
 * OCI distribution-spec v1.1 endpoint table (end-1 … end-13). Repository names contain '/',
 * so endpoints are matched from the right rather than with router wildcards. Names are NOT
 * validated here: the router first strips an optional registry prefix (`/v2/docker.io/…`),
 * then validates what remains with {@link assertName}.
 */
import { RegistryError } from './errors.ts';

export type V2Endpoint =
  | { kind: 'base' }
  | { kind: 'catalog' }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'blob'; name: string; digest: string }
  /** `session`: the upload's id after `uploads/` (undefined for the POST that starts one). */
  | { kind: 'upload'; name: string; session: string | undefined }
  | { kind: 'tags'; name: string }
  | { kind: 'referrers'; name: string; digest: string };

const PATTERNS: Array<[RegExp, (m: RegExpExecArray) => V2Endpoint]> = [
  [/^\/v2\/?$/, () => ({ kind: 'base' })],
  [/^\/v2\/_catalog$/, () => ({ kind: 'catalog' })],
  [/^\/v2\/(.+)\/blobs\/uploads(?:\/([^/]*))?$/, (m) => ({ kind: 'upload', name: m[1] as string, session: m[2] || undefined })],
  [/^\/v2\/(.+)\/manifests\/([^/]+)$/, (m) => ({ kind: 'manifest', name: m[1] as string, reference: m[2] as string })],
  [/^\/v2\/(.+)\/blobs\/([^/]+)$/, (m) => ({ kind: 'blob', name: m[1] as string, digest: m[2] as string })],
  [/^\/v2\/(.+)\/tags\/list$/, (m) => ({ kind: 'tags', name: m[1] as string })],
  [/^\/v2\/(.+)\/referrers\/([^/]+)$/, (m) => ({ kind: 'referrers', name: m[1] as string, digest: m[2] as string })],
];

/** Longest path we look at; names are at most 255 characters, references 128 or a digest. */
const PATH_MAX = 2048;

export function parseV2Path(rawPath: string): V2Endpoint {
  if (rawPath.length <= PATH_MAX) {
    for (const [re, build] of PATTERNS) {
      const m = re.exec(rawPath);
      if (m) return build(m);
    }
  }
  throw new RegistryError('NOT_FOUND', { message: 'unknown registry API endpoint', detail: { path: rawPath.slice(0, 200) } });
}
