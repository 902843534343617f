/**
 * @module cache/bucket/fixed-parts
 * Cuts a byte stream into parts of exactly `partSize` bytes (the last may be shorter), the shape a
 * multipart upload wants: S3 refuses parts under 5 MiB except the last, and equal parts keep the part
 * count predictable against the 10,000-part limit. Every chunk is handed to `onChunk` as it arrives, so
 * a hash runs while the stream is read rather than in a burst per part.
 */
export async function* fixedParts(
  body: AsyncIterable<Uint8Array>,
  partSize: number,
  onChunk: (chunk: Buffer) => void,
): AsyncGenerator<Buffer> {
  let held: Buffer[] = [];
  let heldBytes = 0;
  for await (const raw of body) {
    let chunk = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    onChunk(chunk);
    while (heldBytes + chunk.length >= partSize) {
      const take = partSize - heldBytes;
      held.push(chunk.subarray(0, take));
      yield Buffer.concat(held, partSize);
      chunk = chunk.subarray(take);
      held = [];
      heldBytes = 0;
    }
    if (chunk.length > 0) {
      held.push(chunk);
      heldBytes += chunk.length;
    }
  }
  if (heldBytes > 0) yield Buffer.concat(held, heldBytes);
}
