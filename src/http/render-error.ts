/**
 * @module http/render-error
 * The one place errors become responses: every client-visible error is the OCI envelope
 * `{"errors":[{"code","message","detail"}]}` with the table's status. Anything that is not a
 * RegistryError is logged with its stack and rendered as a bare 500 UNKNOWN. A HEAD gets the
 * headers its GET would have, Content-Length included (RFC 9110 §9.3.2, §8.6), and no content.
 */
import type { ServerResponse } from 'node:http';
import type { Context } from 'hono';
import { RegistryError, toErrorEnvelope } from '../registry/errors.ts';
import type { Logger } from '../util/logger.ts';
import { API_VERSION_HEADER } from './headers.ts';

export interface ErrorResponse {
  status: number;
  headers: Record<string, string>;
  /** The envelope's JSON; undefined for a HEAD. */
  body: string | undefined;
}

/** Status, headers and body of the envelope for `err`, for whichever writer sends it (hono, node:http, a raw socket). */
export function errorResponse(err: unknown, method: string | undefined): ErrorResponse {
  const { status, headers, body } = toErrorEnvelope(err);
  const json = JSON.stringify(body);
  const all = { ...API_VERSION_HEADER, 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(json)), ...headers };
  return { status, headers: all, body: method === 'HEAD' ? undefined : json };
}

/** Writes the envelope on a node:http response that hono never saw (see server's Host check). */
export function writeError(err: RegistryError, method: string | undefined, res: ServerResponse): void {
  const { status, headers, body } = errorResponse(err, method);
  res.writeHead(status, headers);
  res.end(body);
}

export function createErrorRenderer(log: Logger) {
  return (err: Error, c: Context): Response => {
    if (!(err instanceof RegistryError)) {
      log.error({ err, method: c.req.method, path: c.req.path }, 'unhandled error');
    } else if (err.status >= 500) {
      // The error goes under `err`, as everywhere else: pino owns `msg`.
      log.warn({ code: err.code, status: err.status, err: err.message, cause: (err.cause as Error | undefined)?.message, path: c.req.path }, 'request failed');
    }
    const { status, headers, body } = errorResponse(err, c.req.method);
    return body === undefined ? c.body(null, status as 500, headers) : c.body(body, status as 500, headers);
  };
}
