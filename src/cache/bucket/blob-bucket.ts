/**
 * @module cache/bucket/blob-bucket
 * Blobs and manifests in an S3-compatible bucket shared by several replicas, laid out by
 * {@link BucketLayout} (content-addressed keys).
 *
 * The rule every write keeps: a reader never sees a partial or wrong object at a digest's key.
 * putVerified commits by completing a multipart upload created at the final key, and completes it only
 * after the last byte has been hashed and counted; a body that does not check out is aborted, so nothing
 * ever appears. An in-progress multipart upload is invisible to GET, HEAD and LIST, so no temp object and
 * no server-side copy are needed (a copy would rewrite every byte, and objects over 5 GiB need
 * UploadPartCopy). A body smaller than one part is verified in memory before a single PutObject.
 *
 * Swift's s3api (and other S3-compatibles) answer a conditional PUT (If-None-Match: *) with 501, so two
 * replicas filling the same digest are not excluded by the store: both may upload, the key is checked
 * again just before completing, and a later identical commit is harmless because the bytes are the same.
 * Deletes are one DeleteObject each: DeleteObjects needs a Content-MD5 header Swift insists on and the
 * SDK no longer sends.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import { RegistryError } from '../../registry/errors.ts';
import { BucketLayout } from './bucket-layout.ts';
import { fixedParts } from './fixed-parts.ts';

const MiB = 1024 * 1024;
/** 16 MiB parts: ~6 requests per 100 MiB layer; a 160 GiB blob still fits in S3's 10,000 parts. */
export const PART_SIZE = 16 * MiB;
const MAX_PARTS = 10_000;
/** Parts uploaded at once: the next part is read from the body while the previous one is sent. */
const PARTS_IN_FLIGHT = 2;
const OCTET_STREAM = 'application/octet-stream';

export interface BlobBucketOptions {
  client: S3Client;
  bucket: string;
  /** '' or a path ending in '/'. */
  prefix?: string;
  /** Injected for abortStale's cutoff. */
  now?: () => number;
}

/** An inclusive byte range, as HTTP writes it. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface PutResult {
  /** False when the digest was already committed (by this or another replica) and this body was not stored. */
  stored: boolean;
}

/** A committed blob as a listing shows it. */
export interface BucketObject {
  digest: string;
  size: number;
  /** Epoch ms the object was committed. */
  lastModified: number;
}

export interface StaleSweep {
  uploadsAborted: number;
  tmpObjectsDeleted: number;
}

const statusOf = (err: unknown): number | undefined => (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;

function storeError(op: string, key: string, err: unknown): RegistryError {
  if (err instanceof RegistryError) return err;
  const status = statusOf(err);
  return new RegistryError('UNAVAILABLE', {
    message: `object store: ${op} ${key} failed${status ? ` (HTTP ${status})` : ''}: ${(err as Error)?.message ?? err}`,
    cause: err,
  });
}

/** The part size for a blob of `size` bytes: PART_SIZE, or larger (whole MiB) when that would need more than MAX_PARTS. */
export function partSizeFor(size: number): number {
  return Math.max(PART_SIZE, Math.ceil(size / MAX_PARTS / MiB) * MiB);
}

export class BlobBucket {
  readonly layout: BucketLayout;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly now: () => number;

  constructor(opts: BlobBucketOptions) {
    this.client = opts.client;
    this.bucket = opts.bucket;
    this.layout = new BucketLayout(opts.prefix ?? '');
    this.now = opts.now ?? Date.now;
  }

  /** The committed blob's size, or undefined when there is none. */
  async head(digest: string): Promise<number | undefined> {
    const key = this.layout.blobKey(digest);
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return r.ContentLength;
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw storeError('HEAD', key, err);
    }
  }

  /** The blob's bytes (or `range` of them), or undefined when there is no such blob. */
  async get(digest: string, range?: ByteRange): Promise<Readable | undefined> {
    const key = this.layout.blobKey(digest);
    try {
      const r = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: key, ...(range && { Range: `bytes=${range.start}-${range.end}` }) }),
      );
      return r.Body as Readable;
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      if (statusOf(err) === 416) throw new RegistryError('RANGE_INVALID', { message: `bytes ${range?.start}-${range?.end} are outside ${digest}`, cause: err });
      throw storeError('GET', key, err);
    }
  }

  /**
   * The whole blob with its size, for a fill (the fill's signal cuts the GET), or undefined when
   * there is no such blob.
   */
  async open(digest: string, signal?: AbortSignal): Promise<{ size: number; body: Readable } | undefined> {
    const key = this.layout.blobKey(digest);
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), signal ? { abortSignal: signal } : {});
      return { size: r.ContentLength as number, body: r.Body as Readable };
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw storeError('GET', key, err);
    }
  }

  /**
   * Stores `body` as `digest` if its bytes hash to it and number exactly `size`; otherwise nothing is
   * stored and DIGEST_INVALID or SIZE_INVALID is thrown. `body` is consumed (or destroyed when the blob
   * is already there or the bytes run past `size`).
   */
  async putVerified(digest: string, size: number, body: Readable): Promise<PutResult> {
    const key = this.layout.blobKey(digest);
    const hex = BucketLayout.hex(digest);
    if (!Number.isSafeInteger(size) || size < 0) throw new RegistryError('SIZE_INVALID', { message: `size ${size} is not a byte count` });
    if ((await this.head(digest)) === size) {
      body.destroy();
      return { stored: false };
    }
    const hash = createHash('sha256');
    let received = 0;
    const onChunk = (chunk: Buffer) => {
      received += chunk.length;
      // Stop reading as soon as the body runs long: the rest could be unbounded.
      if (received > size) throw new RegistryError('SIZE_INVALID', { message: `${digest}: the body is longer than the declared ${size} bytes` });
      hash.update(chunk);
    };
    const verify = () => {
      if (received !== size) throw new RegistryError('SIZE_INVALID', { message: `${digest}: the body ended after ${received} of ${size} bytes` });
      const actual = hash.digest('hex');
      if (actual !== hex) throw new RegistryError('DIGEST_INVALID', { message: `the body hashes to sha256:${actual}, not ${digest}` });
    };

    const parts = fixedParts(body, partSizeFor(size), onChunk)[Symbol.asyncIterator]();
    try {
      const first = await parts.next();
      const second = first.done ? first : await parts.next();
      if (second.done) {
        // Everything fits in one part and is in memory: verify, then one atomic PUT.
        verify();
        const bytes = first.done ? Buffer.alloc(0) : first.value;
        await this.client
          .send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: bytes, ContentLength: bytes.length, ContentType: OCTET_STREAM }))
          .catch((err: unknown) => Promise.reject(storeError('PUT', key, err)));
        return { stored: true };
      }
      return await this.multipart(digest, size, key, [first.value as Buffer, second.value], parts, verify);
    } finally {
      if (!body.readableEnded) body.destroy();
      await parts.return?.(undefined).catch(() => undefined);
    }
  }

  private async multipart(digest: string, size: number, key: string, firstParts: Buffer[], rest: AsyncIterator<Buffer>, verify: () => void): Promise<PutResult> {
    const created = await this.client
      .send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ContentType: OCTET_STREAM }))
      .catch((err: unknown) => Promise.reject(storeError('CreateMultipartUpload', key, err)));
    const uploadId = created.UploadId as string;
    const inFlight: Promise<CompletedPart>[] = [];
    const done: CompletedPart[] = [];
    let partNumber = 0;
    let readingBody = false;
    const read = async () => {
      readingBody = true;
      const next = await rest.next();
      readingBody = false;
      return next;
    };
    const upload = (bytes: Buffer) => {
      const n = ++partNumber;
      const p = this.client
        .send(new UploadPartCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: n, Body: bytes, ContentLength: bytes.length }))
        .then((r) => ({ PartNumber: n, ETag: r.ETag }));
      p.catch(() => undefined); // awaited below; this only keeps an early failure from being reported as unhandled
      inFlight.push(p);
    };
    const settle = async (keep: number) => {
      while (inFlight.length > keep) done.push(await (inFlight.shift() as Promise<CompletedPart>));
    };
    try {
      for (const bytes of firstParts) {
        upload(bytes);
        await settle(PARTS_IN_FLIGHT - 1);
      }
      for (let next = await read(); !next.done; next = await read()) {
        upload(next.value);
        await settle(PARTS_IN_FLIGHT - 1);
      }
      await settle(0);
      verify();
      // Another replica may have committed the same digest meanwhile: keep its object rather than replace one being read.
      if ((await this.head(digest)) === size) {
        await this.abort(key, uploadId);
        return { stored: false };
      }
      await this.client.send(
        new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: done } }),
      );
      return { stored: true };
    } catch (err) {
      await Promise.allSettled(inFlight);
      await this.abort(key, uploadId);
      // The body's own failure (a broken upstream, a size or digest mismatch) is the caller's to map.
      throw readingBody ? err : storeError('multipart upload of', key, err);
    }
  }

  /** Best effort: an upload left behind is swept by abortStale. */
  private async abort(key: string, uploadId: string): Promise<void> {
    await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId })).catch(() => undefined);
  }

  /** Removes the blob; removing one that is not there is not an error. */
  async delete(digest: string): Promise<void> {
    const key = this.layout.blobKey(digest);
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })).catch((err: unknown) => {
      if (statusOf(err) !== 404) throw storeError('DELETE', key, err);
    });
  }

  /** Every committed blob's digest, page by page (for rebuilding an index); stray keys are skipped. */
  async *list(): AsyncGenerator<string> {
    for await (const o of this.listObjects()) yield o.digest;
  }

  /** Every committed blob with its size and when it was committed, page by page; stray keys are skipped. */
  async *listObjects(): AsyncGenerator<BucketObject> {
    let token: string | undefined;
    do {
      const page = await this.client
        .send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.layout.blobsPrefix, ContinuationToken: token }))
        .catch((err: unknown) => Promise.reject(storeError('LIST', this.layout.blobsPrefix, err)));
      for (const o of page.Contents ?? []) {
        const digest = o.Key === undefined ? undefined : this.layout.digestOfBlobKey(o.Key);
        if (digest) yield { digest, size: o.Size ?? 0, lastModified: o.LastModified?.getTime() ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /**
   * Aborts multipart uploads under the prefix started more than `olderThanMs` ago and deletes temp
   * objects as old: what a crashed replica leaves behind. `olderThanMs` must exceed the longest fill.
   */
  async abortStale(olderThanMs: number): Promise<StaleSweep> {
    const cutoff = this.now() - olderThanMs;
    const sweep: StaleSweep = { uploadsAborted: 0, tmpObjectsDeleted: 0 };
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const page = await this.client.send(
        new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.layout.prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
      );
      for (const u of page.Uploads ?? []) {
        if (u.Key === undefined || u.UploadId === undefined || (u.Initiated?.getTime() ?? 0) >= cutoff) continue;
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId })).then(
          () => sweep.uploadsAborted++,
          (err: unknown) => {
            if (statusOf(err) !== 404) throw storeError('AbortMultipartUpload', u.Key as string, err);
          },
        );
      }
      [keyMarker, uploadIdMarker] = page.IsTruncated ? [page.NextKeyMarker, page.NextUploadIdMarker] : [undefined, undefined];
    } while (keyMarker !== undefined);
    let token: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.layout.tmpPrefix, ContinuationToken: token }));
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined || (o.LastModified?.getTime() ?? 0) >= cutoff) continue;
        await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: o.Key }));
        sweep.tmpObjectsDeleted++;
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return sweep;
  }

  /** Stores a manifest's exact bytes under its digest, after checking they hash to it; its media type is the object's Content-Type. */
  async putManifest(digest: string, bytes: Uint8Array, mediaType = OCTET_STREAM): Promise<void> {
    const key = this.layout.manifestKey(digest);
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (`sha256:${actual}` !== digest) throw new RegistryError('DIGEST_INVALID', { message: `the manifest hashes to sha256:${actual}, not ${digest}` });
    const md5 = createHash('md5').update(bytes).digest('base64');
    await this.client
      .send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: bytes, ContentLength: bytes.length, ContentMD5: md5, ContentType: mediaType }))
      .catch((err: unknown) => Promise.reject(storeError('PUT', key, err)));
  }

  /** A manifest's bytes and media type, or undefined when there is none (bytes that do not hash to `digest` are refused). */
  async getManifest(digest: string): Promise<{ bytes: Buffer; mediaType: string } | undefined> {
    const key = this.layout.manifestKey(digest);
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const bytes = Buffer.from(await (r.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
      const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      if (actual !== digest) throw new RegistryError('DIGEST_INVALID', { message: `the object at ${key} hashes to ${actual}` });
      return { bytes, mediaType: r.ContentType ?? OCTET_STREAM };
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw storeError('GET', key, err);
    }
  }
}
