/**
 * @module cache/uploads/upload-id
 * Upload session ids: server-generated random UUIDs. The id is the only client-sent text a path
 * is ever built from (`<data>/uploads/<id>/`), so it is matched against the exact shape
 * crypto.randomUUID produces before anything else looks at it.
 */
import { randomUUID } from 'node:crypto';

/** Lower-case RFC 9562 version 4, as randomUUID writes it: 36 characters, no dots or slashes. */
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

export function newUploadId(): string {
  return randomUUID();
}

export function isUploadId(text: string): boolean {
  return text.length === 36 && UUID_V4.test(text);
}
