/**
 * @module proxy/upstream
 * The small interface the proxy needs from an upstream registry client. The real one is
 * upstream/upstream-client.ts; depending on this shape keeps proxy policy free of HTTP details.
 */
import type { Readable } from 'node:stream';
import type { UpstreamConfig } from '../config/schema.ts';

export interface UpstreamRequest {
  method: 'GET' | 'HEAD';
  /** Repository the request is for: decides the token scope `repository:<repo>:pull`. */
  repository: string;
  /** Path after /v2/, e.g. `library/alpine/manifests/latest`. */
  path: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  timeout?: number;
}

export interface UpstreamResponse {
  status: number;
  /** Lower-case names. */
  headers: Record<string, string | undefined>;
  body: Readable;
  url: string;
}

export interface Upstream {
  readonly name: string;
  readonly config: UpstreamConfig;
  request(req: UpstreamRequest): Promise<UpstreamResponse>;
}
