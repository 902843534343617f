/**
 * @module proxy/upstream
 * The small interface the proxy needs from an upstream registry client (upstream/upstream-client.ts
 * implements it). Proxy policy depends on this shape only, so tests can stand in for a registry.
 */
import type { UpstreamConfig } from '../config/schema.ts';
import type { UpstreamRequest, UpstreamResponse } from '../upstream/upstream-client.ts';

export type { UpstreamRequest, UpstreamResponse };

export interface Upstream {
  readonly name: string;
  readonly config: UpstreamConfig;
  request(req: UpstreamRequest): Promise<UpstreamResponse>;
}
