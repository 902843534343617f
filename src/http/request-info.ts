/**
 * @module http/request-info
 * Per-request facts the access log wants but the response does not carry (which upstream
 * served it), attached to the node request object without widening its type.
 */
import type { IncomingMessage } from 'node:http';

const INFO = Symbol('ocimirror.request-info');

export interface RequestInfo {
  upstream?: string;
  repo?: string;
  route?: string;
}

export function requestInfo(req: IncomingMessage): RequestInfo {
  const holder = req as IncomingMessage & { [INFO]?: RequestInfo };
  return (holder[INFO] ??= {});
}
