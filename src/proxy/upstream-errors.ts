/**
 * @module proxy/upstream-errors
 * Turns an upstream's non-success answer into the client-visible error: 404 → the endpoint's
 * *_UNKNOWN code, 429 → 429 with the upstream's Retry-After, 401/403 → DENIED naming the
 * upstream (the mirror's own credentials were refused), 5xx and anything else → 502 BAD_GATEWAY that clients
 * retry. The upstream's error body is not relayed: it may describe its internals or auth setup.
 */
import { RegistryError, type ErrorCode } from '../registry/errors.ts';
import type { UpstreamResponse } from './upstream.ts';

export function upstreamError(
  res: Pick<UpstreamResponse, 'status' | 'headers'>,
  what: { upstream: string; repo: string; notFound: ErrorCode; subject: string },
): RegistryError {
  const detail = { upstream: what.upstream, repository: what.repo, subject: what.subject, upstreamStatus: res.status };
  const upstreamStatus = res.status;
  switch (res.status) {
    case 404:
      return new RegistryError(what.notFound, { detail, upstreamStatus });
    case 429: {
      const retryAfter = res.headers['retry-after'];
      return new RegistryError('TOOMANYREQUESTS', {
        message: `upstream ${what.upstream} is rate-limiting this mirror`,
        detail,
        upstreamStatus,
        headers: retryAfter ? { 'Retry-After': retryAfter } : {},
      });
    }
    case 401:
    case 403:
      return new RegistryError('DENIED', {
        message: `upstream ${what.upstream} denied access to ${what.repo} (check the upstream's credentials on this mirror, or whether the repository exists)`,
        detail,
        upstreamStatus,
      });
    default:
      return new RegistryError('BAD_GATEWAY', { message: `upstream ${what.upstream} answered ${res.status} for ${what.subject}`,
        detail,
        upstreamStatus,
      });
  }
}

/** Whether a failure means "upstream unusable right now" (serve stale) rather than an answer. */
export function isUpstreamOutage(err: unknown): boolean {
  if (!(err instanceof RegistryError)) return false;
  if (err.code === 'TOOMANYREQUESTS') return true;
  // Unreachable (UNAVAILABLE), or it answered with a 5xx. A BAD_GATEWAY of our own making (a token
  // realm this mirror refuses, a redirect loop) is a configuration problem the operator must see, not stale data.
  return err.code === 'UNAVAILABLE' || (err.code === 'BAD_GATEWAY' && (err.upstreamStatus ?? 0) >= 500);
}
