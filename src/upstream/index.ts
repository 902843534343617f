/**
 * @module upstream
 * Clients for upstream registries: requests, bearer/basic auth with a token cache, redirects.
 */
export { UpstreamClient } from './upstream-client.ts';
export type { UpstreamClientOptions, UpstreamCounters, UpstreamRequest, UpstreamResponse, UpstreamStatus } from './upstream-client.ts';
export type { UrlState } from './url-breaker.ts';
export type { RateLimitSnapshot } from './rate-limit.ts';
export { UpstreamPool, createUpstreams } from './upstream-pool.ts';
export type { EgressConfig } from './egress.ts';
export { parseWwwAuthenticate } from './www-authenticate.ts';
export type { AuthChallenge } from './www-authenticate.ts';
export { BUILTIN_REALM_HOSTS, checkRealm } from './realm-policy.ts';
export { pullScope } from './authenticator.ts';
