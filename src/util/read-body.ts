/**
 * @module util/read-body
 * Reads a small response body (manifests, lists) into memory with a hard cap, so a hostile or
 * broken upstream cannot make the mirror buffer without bound. Blobs never go through here.
 */
import type { Readable } from 'node:stream';

export class BodyTooLargeError extends Error {
  constructor(limit: number) {
    super(`response body exceeds ${limit} bytes`);
    this.name = 'BodyTooLargeError';
  }
}

export async function readBody(body: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) {
      body.destroy();
      throw new BodyTooLargeError(limit);
    }
    chunks.push(chunk);
  }
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total);
}

/** Drops a body we do not need, without reading it. */
export function discard(body: Readable): void {
  body.resume();
  body.on('error', () => {});
}
