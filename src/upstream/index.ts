/**
 * @module upstream
 * Clients for upstream registries: requests, bearer/basic auth with a token cache, redirects.
 */
export { UpstreamClient } from './upstream-client.ts';
export type { UpstreamClientOptions, UpstreamCounters, UpstreamRequest, UpstreamResponse, UpstreamStatus } from './upstream-client.ts';
export type { UrlState } from './url-breaker.ts';
export type { RateLimitSnapshot } from './rate-limit.ts';
export { UpstreamPool, createUpstreams } from './upstream-pool.ts';
export type { EgressConfig } from './transport/egress.ts';
export { parseWwwAuthenticate } from './auth/www-authenticate.ts';
export type { AuthChallenge } from './auth/www-authenticate.ts';
export { BUILTIN_REALM_HOSTS, checkRealm } from './auth/realm-policy.ts';
export { pullScope } from './auth/authenticator.ts';
