/**
 * @module test/integration/s3-bucket
 * BlobBucket against a real S3-compatible store (Swift with s3api, test/helpers/s3-server): verified
 * commits, nothing visible after a bad body, concurrent fills of one digest, listing, stale sweeps, and
 * the client over TLS with a private CA.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { readFileSync } from 'node:fs';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import {
  CreateMultipartUploadCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BlobBucket } from '../../src/cache/bucket/blob-bucket.ts';
import { createS3Client } from '../../src/cache/bucket/s3-client.ts';
import { missingS3Packages, startS3Server, type S3Server } from '../helpers/s3-server.ts';
import { makeTestCa } from '../helpers/test-pki.ts';
import { describeIf } from '../helpers/tools.ts';

const MiB = 1024 * 1024;
const missing = missingS3Packages();

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
/** `bytes` as a stream of 1 MiB chunks, the way an upstream response arrives. */
const streamOf = (bytes: Buffer, chunk = MiB) =>
  Readable.from((function* () {
    for (let o = 0; o < bytes.length; o += chunk) yield bytes.subarray(o, o + chunk);
  })());

async function readAll(r: Readable | undefined): Promise<Buffer> {
  if (!r) throw new Error('no body');
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describeIf(missing.length === 0, `missing packages (apt-get install -y ${missing.join(' ')})`, 'a blob bucket on an S3-compatible store', () => {
  let server: S3Server;
  let client: S3Client;

  beforeAll(async () => {
    server = await startS3Server();
    client = createS3Client({
      endpoint: server.endpoint,
      bucket: server.bucket,
      region: server.region,
      prefix: '',
      forcePathStyle: true,
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    });
  }, 60_000);

  afterAll(async () => {
    client?.destroy();
    await server?.stop();
  });

  /** A bucket view under a prefix of its own, so listings see only what one test wrote. */
  const freshBucket = (now?: () => number) => new BlobBucket({ client, bucket: server.bucket, prefix: `t-${randomUUID()}/`, ...(now && { now }) });

  async function uploadsUnder(prefix: string): Promise<number> {
    const r = await client.send(new ListMultipartUploadsCommand({ Bucket: server.bucket, Prefix: prefix }));
    return r.Uploads?.length ?? 0;
  }

  it('stores a 40 MiB stream in several parts and reads it back whole and by range', async () => {
    const bucket = freshBucket();
    const bytes = randomBytes(40 * MiB);
    const digest = digestOf(bytes);
    await expect(bucket.putVerified(digest, bytes.length, streamOf(bytes))).resolves.toEqual({ stored: true });
    expect(await bucket.head(digest)).toBe(bytes.length);
    expect((await readAll(await bucket.get(digest))).equals(bytes)).toBe(true);
    const start = 16 * MiB - 5; // across the first part boundary
    const part = await readAll(await bucket.get(digest, { start, end: start + 9 }));
    expect(part.equals(bytes.subarray(start, start + 10))).toBe(true);
    expect(await uploadsUnder(bucket.layout.prefix)).toBe(0);
  }, 30_000);

  it('stores nothing when the bytes do not hash to the digest', async () => {
    const bucket = freshBucket();
    const bytes = randomBytes(20 * MiB);
    const claimed = digestOf(randomBytes(16));
    await expect(bucket.putVerified(claimed, bytes.length, streamOf(bytes))).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
    expect(await bucket.head(claimed)).toBeUndefined();
    expect(await uploadsUnder(bucket.layout.prefix)).toBe(0);
  });

  it('stores nothing when the body is shorter or longer than the declared size', async () => {
    const bucket = freshBucket();
    const bytes = randomBytes(20 * MiB);
    const digest = digestOf(bytes);
    await expect(bucket.putVerified(digest, bytes.length, streamOf(bytes.subarray(0, 18 * MiB)))).rejects.toMatchObject({ code: 'SIZE_INVALID' });
    await expect(bucket.putVerified(digest, 17 * MiB, streamOf(bytes))).rejects.toMatchObject({ code: 'SIZE_INVALID' });
    const small = randomBytes(1000);
    await expect(bucket.putVerified(digestOf(small), 2000, streamOf(small))).rejects.toMatchObject({ code: 'SIZE_INVALID' });
    expect(await bucket.head(digest)).toBeUndefined();
    expect(await bucket.head(digestOf(small))).toBeUndefined();
    expect(await uploadsUnder(bucket.layout.prefix)).toBe(0);
  });

  it('leaves one correct object when two writers fill the same digest at once', async () => {
    const bucket = freshBucket();
    const bytes = randomBytes(24 * MiB);
    const digest = digestOf(bytes);
    const results = await Promise.all([
      bucket.putVerified(digest, bytes.length, streamOf(bytes)),
      bucket.putVerified(digest, bytes.length, streamOf(bytes, 256 * 1024)),
    ]);
    expect(results.some((r) => r.stored)).toBe(true);
    const listed = await client.send(new ListObjectsV2Command({ Bucket: server.bucket, Prefix: bucket.layout.prefix }));
    expect(listed.Contents?.map((o) => o.Key)).toEqual([bucket.layout.blobKey(digest)]);
    expect((await readAll(await bucket.get(digest))).equals(bytes)).toBe(true);
    expect(await uploadsUnder(bucket.layout.prefix)).toBe(0);
    // A third fill of a committed digest stores nothing.
    await expect(bucket.putVerified(digest, bytes.length, streamOf(bytes))).resolves.toEqual({ stored: false });
  }, 30_000);

  it('lists committed digests and forgets deleted ones', async () => {
    const bucket = freshBucket();
    const blobs = [randomBytes(10), randomBytes(0), randomBytes(3 * MiB)];
    for (const b of blobs) await bucket.putVerified(digestOf(b), b.length, streamOf(b));
    const listed: string[] = [];
    for await (const d of bucket.list()) listed.push(d);
    expect(listed.sort()).toEqual(blobs.map(digestOf).sort());
    await bucket.delete(digestOf(blobs[0] as Buffer));
    await bucket.delete(digestOf(blobs[0] as Buffer));
    expect(await bucket.head(digestOf(blobs[0] as Buffer))).toBeUndefined();
    expect(await bucket.get(digestOf(blobs[0] as Buffer))).toBeUndefined();
    expect(await bucket.head(digestOf(blobs[1] as Buffer))).toBe(0);
  });

  it('aborts multipart uploads abandoned longer ago than asked, and only those', async () => {
    let now = Date.now();
    const bucket = freshBucket(() => now);
    const key = bucket.layout.blobKey(digestOf(randomBytes(8)));
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: server.bucket, Key: key }));
    await client.send(new UploadPartCommand({ Bucket: server.bucket, Key: key, UploadId, PartNumber: 1, Body: randomBytes(5 * MiB) }));
    expect(await bucket.abortStale(60 * 60_000)).toEqual({ uploadsAborted: 0, tmpObjectsDeleted: 0 });
    expect(await uploadsUnder(bucket.layout.prefix)).toBe(1);
    now += 2 * 60 * 60_000;
    expect(await bucket.abortStale(60 * 60_000)).toEqual({ uploadsAborted: 1, tmpObjectsDeleted: 0 });
    expect(await uploadsUnder(bucket.layout.prefix)).toBe(0);
  });

  it('stores manifests by digest and refuses bytes that do not match', async () => {
    const bucket = freshBucket();
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, layers: [] }));
    const digest = digestOf(manifest);
    await bucket.putManifest(digest, manifest, 'application/vnd.oci.image.manifest.v1+json');
    const stored = await bucket.getManifest(digest);
    expect(stored?.bytes.equals(manifest)).toBe(true);
    expect(stored?.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    await expect(bucket.putManifest(digestOf(randomBytes(4)), manifest)).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
    expect(await bucket.getManifest(digestOf(randomBytes(4)))).toBeUndefined();
  });

  it('reaches an https endpoint whose certificate a private CA signed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ocimirror-s3-tls-'));
    let tlsServer: TlsServer | undefined;
    let tlsClient: S3Client | undefined;
    try {
      const ca = await makeTestCa(dir);
      const { cert, key } = await ca.issue('s3', '127.0.0.1');
      const backend = Number(new URL(server.endpoint).port);
      // A TLS terminator in front of the plain-HTTP store, as a load balancer would be.
      tlsServer = createTlsServer({ cert: readFileSync(cert), key: readFileSync(key) }, (socket) => {
        const upstream = connect(backend, '127.0.0.1');
        socket.pipe(upstream).pipe(socket);
        socket.on('error', () => upstream.destroy());
        upstream.on('error', () => socket.destroy());
      });
      await new Promise<void>((resolve) => tlsServer?.listen(0, '127.0.0.1', resolve));
      const port = (tlsServer.address() as AddressInfo).port;
      const settings = {
        endpoint: `https://127.0.0.1:${port}`,
        bucket: server.bucket,
        region: server.region,
        prefix: `t-${randomUUID()}/`,
        forcePathStyle: true,
        credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
      };
      const untrusting = createS3Client(settings);
      await expect(new BlobBucket({ client: untrusting, bucket: server.bucket }).head(digestOf(Buffer.from('x')))).rejects.toMatchObject({ code: 'UNAVAILABLE' });
      untrusting.destroy();
      tlsClient = createS3Client({ ...settings, caFile: ca.ca });
      const bucket = new BlobBucket({ client: tlsClient, bucket: server.bucket, prefix: settings.prefix });
      const bytes = randomBytes(MiB);
      await bucket.putVerified(digestOf(bytes), bytes.length, streamOf(bytes));
      expect((await readAll(await bucket.get(digestOf(bytes)))).equals(bytes)).toBe(true);
    } finally {
      tlsClient?.destroy();
      await new Promise<void>((resolve) => (tlsServer ? tlsServer.close(() => resolve()) : resolve()));
      await rm(dir, { recursive: true, force: true });
    }
  });
});
