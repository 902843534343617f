/**
 * @module http/connection/host-header
 * Which Host headers a request may carry. RFC 9112 §3.2: an HTTP/1.1 request without Host, with
 * two, or with an invalid one is answered 400; HTTP/1.0 may omit it (load-balancer health checks
 * do), and is served. Checked once, before the manifest fast path and the app alike, so a request
 * gets one answer whether or not its manifest is cached.
 */
import type { IncomingMessage } from 'node:http';
import { RegistryError } from '../../registry/errors.ts';

/**
 * The Host most requests carry, taken as written without a URL parse: a lower-case name or IPv4
 * address and an optional port, the form the app's adapter (@hono/node-server) also takes unparsed.
 */
const PLAIN = /^[a-z0-9._-]+(?::(?:[1-5]\d{3,4}|[6-9]\d{3}))?$/;
/** RFC 3986 host and port without userinfo, restricted to the characters real host names use. */
const NAME = /^(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** The error a request's Host header earns, or undefined when it may be served. */
export function hostError(req: IncomingMessage): RegistryError | undefined {
  const host = req.headers.host;
  if (!host) {
    if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0) return undefined;
    return new RegistryError('BAD_REQUEST', { message: 'an HTTP/1.1 request must carry a Host header' });
  }
  // node:http keeps the first of two Host headers; a proxy in front may have routed on the other.
  const raw = req.rawHeaders;
  let seen = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 4 && name.toLowerCase() === 'host') seen++;
  }
  if (seen > 1) return new RegistryError('BAD_REQUEST', { message: 'a request must carry one Host header' });
  if (PLAIN.test(host) || (NAME.test(host) && parsesAsWritten(host))) return undefined;
  return new RegistryError('BAD_REQUEST', { message: 'the Host header is not a host name with an optional port' });
}

/**
 * True when the URL standard reads `host` as written, up to case: not `1.2.3` (read as 1.2.0.3),
 * `a.1` or bad punycode (refused). The app's adapter builds its URL from Host the same way, so a
 * Host that passes here never makes it answer with its own bare 400.
 */
function parsesAsWritten(host: string): boolean {
  try {
    const bare = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d*$/, '');
    return new URL(`http://${host}/`).hostname === bare.toLowerCase();
  } catch {
    return false;
  }
}
