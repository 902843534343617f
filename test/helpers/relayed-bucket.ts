/**
 * @module test/helpers/relayed-bucket
 * A bucket on a real S3-compatible store (Swift's s3api, test/helpers/s3-server) that mirrors reach
 * through a TCP relay a test can cut (test/helpers/tcp-relay), with the config block that points
 * `storage` at it, the environment holding its keys, and a direct client to look at what it holds.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { createS3Client } from '../../src/cache/bucket/s3-client.ts';
import { startS3Server, type S3Server } from './s3-server.ts';
import { startTcpRelay, type TcpRelay } from './tcp-relay.ts';

export interface RelayedBucket {
  readonly s3: S3Server;
  /** Between the mirrors and the store: `cut()` makes the bucket unreachable, `restore()` brings it back. */
  readonly relay: TcpRelay;
  /** The variables `storage(…)` names for the keys: pass them to the mirror's environment. */
  readonly env: Record<string, string>;
  /** `storage:` for a mirror keeping its blobs under `prefix` in the bucket, through the relay. */
  storage(prefix: string, extra?: Record<string, unknown>): Record<string, unknown>;
  /** Every blob object under `prefix`: digest named by its key → the sha256 of its bytes. */
  blobs(prefix: string): Promise<Map<string, string>>;
  /** Keys of the manifest objects under `prefix`, as digests. */
  manifests(prefix: string): Promise<Set<string>>;
  stop(): Promise<void>;
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export async function startRelayedBucket(): Promise<RelayedBucket> {
  const s3 = await startS3Server();
  let relay: TcpRelay | undefined;
  let client: S3Client | undefined;
  try {
    relay = await startTcpRelay({ host: '127.0.0.1', port: Number(new URL(s3.endpoint).port) });
    client = createS3Client({ endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, prefix: '', forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });
  } catch (err) {
    await relay?.stop();
    await s3.stop();
    throw err;
  }
  const c = client;
  const r = relay;
  async function keys(prefix: string): Promise<string[]> {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await c.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix, ContinuationToken: token }));
      for (const o of page.Contents ?? []) if (o.Key) out.push(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out;
  }
  return {
    s3,
    relay: r,
    env: { TEST_S3_KEY: s3.accessKeyId, TEST_S3_SECRET: s3.secretAccessKey },
    storage: (prefix, extra = {}) => ({
      backend: 's3',
      s3: { endpoint: r.url, bucket: s3.bucket, region: s3.region, prefix, forcePathStyle: true, accessKeyIdEnv: 'TEST_S3_KEY', secretAccessKeyEnv: 'TEST_S3_SECRET' },
      ...extra,
    }),
    async blobs(prefix) {
      const out = new Map<string, string>();
      for (const key of await keys(`${prefix}blobs/`)) {
        const got = await c.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
        out.set(`sha256:${path.basename(key)}`, sha256(Buffer.from(await got.Body!.transformToByteArray())));
      }
      return out;
    },
    async manifests(prefix) {
      return new Set((await keys(`${prefix}manifests/`)).map((k) => `sha256:${path.basename(k)}`));
    },
    async stop() {
      c.destroy();
      await r.stop();
      await s3.stop();
    },
  };
}
