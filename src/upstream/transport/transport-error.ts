/**
 * @module upstream/transport/transport-error
 * Turns a failure to talk to an upstream (refused, reset, DNS, TLS, timeouts) into the one
 * client-visible error for it: 503 UNAVAILABLE, which registry clients retry
 * (distribution registry/api/errcode/register.go: "ErrorCodeUnavailable … service unavailable").
 */
import { RegistryError } from '../../registry/errors.ts';

/** Node and undici codes worth naming in the message; anything else keeps its own message. */
const DESCRIPTIONS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed while sending',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'DNS lookup failed temporarily',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
  UND_ERR_HEADERS_TIMEOUT: 'no response headers in time',
  UND_ERR_BODY_TIMEOUT: 'response body stalled',
  UND_ERR_SOCKET: 'connection closed by the other side',
  UND_ERR_CLOSED: 'client closed',
};

/** Errors that are our own bugs (bad arguments to undici), not the network's: they stay as they are. */
const PROGRAMMING_ERRORS = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED', 'ERR_INVALID_URL']);

/**
 * RegistryError UNAVAILABLE (503) naming the upstream and the host that failed, with the original as
 * `cause`. RegistryErrors and programming errors pass through unchanged.
 */
export function toUnavailable(err: unknown, upstreamName: string, url: URL): unknown {
  if (err instanceof RegistryError) return err;
  const refused = proxyRefusal(err);
  if (refused !== undefined) return unavailable(upstreamName, url, refused, err);
  const code = errorCode(err);
  if (code !== undefined && PROGRAMMING_ERRORS.has(code)) return err;
  return new RegistryError('UNAVAILABLE', {
    message: `upstream ${upstreamName} (${url.host}) is unreachable: ${describe(err)}`,
    cause: err,
  });
}

/**
 * The upstream answered, but not in a way we can use (redirect loops, refused token realms, broken
 * token responses, token service 5xx): 502 BAD_GATEWAY, which clients retry (proxy/upstream-errors.ts
 * decides when the proxy may serve stale instead).
 */
export function badGateway(message: string, options: { cause?: unknown; upstreamStatus?: number } = {}): RegistryError {
  return new RegistryError('BAD_GATEWAY', { message, ...options });
}

export function unavailable(upstreamName: string, url: URL, reason: string, cause?: unknown): RegistryError {
  return new RegistryError('UNAVAILABLE', { message: `upstream ${upstreamName} (${url.host}) is unreachable: ${reason}`, cause });
}

/** An egress proxy answered CONNECT (or a request through it) with `status` instead of letting it through. */
export class ProxyRefusedError extends Error {
  override name = 'ProxyRefusedError';
  constructor(readonly status: number) {
    super(`the egress proxy answered ${status}`);
  }
}

/**
 * undici reports an egress proxy's refusal as an error whose message carries the proxy's status:
 * "Proxy Authentication Required (407)" for a plain-http request, "Proxy response (N) !== 200 when
 * HTTP Tunneling" for a CONNECT. Said in the operator's terms; undefined for any other error.
 */
function proxyRefusal(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  const m = /^Proxy Authentication Required \((\d{3})\)$|^Proxy response \((\d{3})\) !== 200 when HTTP Tunneling$/.exec(err.message);
  if (m === null && !(err instanceof ProxyRefusedError)) return undefined;
  const status = err instanceof ProxyRefusedError ? err.status : Number(m![1] ?? m![2]);
  return status === 407
    ? 'the egress proxy wants credentials (407 Proxy Authentication Required): check the proxy username and password'
    : `the egress proxy refused the connection (${status})`;
}

function describe(err: unknown): string {
  // Node 20's happy-eyeballs connect reports every address tried in an AggregateError.
  const first = err instanceof AggregateError && err.errors.length > 0 ? err.errors[0] : err;
  const code = errorCode(first) ?? errorCode(err);
  // The address says which hop failed when an egress proxy is in between (the proxy's or the registry's).
  const address = (first as { address?: unknown; port?: unknown } | null)?.address;
  const port = (first as { port?: unknown } | null)?.port;
  const at = typeof address === 'string' ? ` at ${address}${typeof port === 'number' ? `:${port}` : ''}` : '';
  if (code !== undefined && DESCRIPTIONS[code] !== undefined) return `${DESCRIPTIONS[code]}${at} (${code})`;
  if (first instanceof Error && first.message !== '') return code ? `${first.message} (${code})` : first.message;
  return code ?? 'unknown network error';
}

function errorCode(err: unknown): string | undefined {
  if (err === null || typeof err !== 'object') return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}
