/**
 * @module http/request-info
 * Per-request facts the access log wants but the response does not carry (which upstream
 * served it), attached to the node request object without widening its type.
 */
import type { IncomingMessage } from 'node:http';
import type { CacheStatus } from '../proxy/manifest-proxy.ts';
import type { Identity } from '../auth/authenticator.ts';
import type { Located } from '../proxy/router.ts';

const INFO = Symbol('ocimirror.request-info');

export interface RequestInfo {
  upstream?: string;
  repo?: string;
  route?: string;
  /** The X-Cache answer (a response head written in one call is not readable back with getHeader). */
  cache?: CacheStatus;
  /** Body bytes the kernel sent from a file (sendfile): the socket's byte counter never sees them. */
  sendfileBytes?: number;
  /** The client's address: a PROXY header's or the peer's, then X-Forwarded-For from trusted proxies. */
  client?: string | undefined;
  /** The subject CN of the client's certificate (mutual TLS). */
  clientCN?: string | undefined;
  /** Where the request's name routes, once client auth routed it (the same router and hints the handler uses). */
  located?: Located | undefined;
  /** Who the client is, once client auth settled it (http/auth-middleware). */
  identity?: Identity | undefined;
}

export function requestInfo(req: IncomingMessage): RequestInfo {
  const holder = req as IncomingMessage & { [INFO]?: RequestInfo };
  return (holder[INFO] ??= {});
}
