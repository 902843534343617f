/**
 * @module http/registry-responses
 * Writing registry content to clients, shared by the pull-through and hosted routes: manifests
 * and blob bodies go straight onto the node:http response, lists through hono.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context } from 'hono';
import type { HttpBindings } from '@hono/node-server';
import { RegistryError } from '../registry/errors.ts';
import { contentRange } from '../registry/range.ts';
import type { BlobResult } from '../proxy/blob-proxy.ts';
import type { CacheStatus } from '../proxy/manifest-proxy.ts';
import type { BlobWriter } from './body/blob-writer.ts';
import { API_VERSION_HEADER, contentHeaders } from './headers.ts';
import { requestInfo } from './request-info.ts';

type Ctx = Context<{ Bindings: HttpBindings }>;

/**
 * Writes a manifest straight to the socket, skipping the Response/Headers objects a fetch-style
 * return would build and then copy out again. Stored bytes go out untouched: re-serialising
 * would change the digest.
 */
export function sendManifest(incoming: IncomingMessage, outgoing: ServerResponse, result: { digest: string; mediaType: string; bytes: Buffer; cache: CacheStatus }): void {
  const headers = contentHeaders({ digest: result.digest, contentType: result.mediaType, length: result.bytes.length, cache: result.cache });
  requestInfo(incoming).cache = result.cache;
  outgoing.writeHead(200, headers);
  outgoing.end(incoming.method === 'HEAD' ? undefined : result.bytes);
}

/** A blob answer: whole (200), a range (206), HEAD, or 416 for a range past the end. */
export function sendBlob(incoming: IncomingMessage, outgoing: ServerResponse, writer: BlobWriter, result: BlobResult): void {
  const base = contentHeaders({ digest: result.digest, contentType: 'application/octet-stream', length: result.size, cache: result.cache });
  base['Accept-Ranges'] = 'bytes';
  if (result.range === 'unsatisfiable') {
    throw new RegistryError('RANGE_INVALID', {
      detail: { size: result.size },
      headers: { 'Content-Range': `bytes */${result.size}`, 'X-Cache': result.cache },
    });
  }
  let status: 200 | 206 = 200;
  if (result.range && result.size !== undefined) {
    status = 206;
    base['Content-Range'] = contentRange(result.range.start, result.range.end, result.size);
    base['Content-Length'] = String(result.range.end - result.range.start + 1);
  }
  const info = requestInfo(incoming);
  info.cache = result.cache;
  outgoing.writeHead(status, base);
  if (!result.body) {
    outgoing.end(); // HEAD
    return;
  }
  // Straight onto the socket (sendfile where it can): no stream hop on the hottest path, and a
  // failed fill destroys the connection (the client sees an abort, never a clean end to a wrong body).
  // Bytes sendfile moved bypass the socket's counters: the access log adds them, cut responses included.
  info.sendfileBytes = 0;
  writer.write(result.body, outgoing, (sent) => (info.sendfileBytes = (info.sendfileBytes ?? 0) + sent)).then(
    () => outgoing.end(),
    () => outgoing.destroy(),
  );
}

export function listResponse(c: Ctx, list: { contentType: string; link: string | undefined; body: Buffer; cache: string; headers?: Record<string, string> }): Response {
  const headers: Record<string, string> = { ...API_VERSION_HEADER, 'Content-Type': list.contentType, 'X-Cache': list.cache, ...list.headers };
  if (list.link) headers.Link = list.link;
  return c.body(asBody(list.body), 200, headers);
}

/** A Buffer is the Uint8Array hono sends as is; only its ArrayBuffer typing differs. */
function asBody(buf: Buffer): Uint8Array<ArrayBuffer> {
  return buf as Uint8Array<ArrayBuffer>;
}
