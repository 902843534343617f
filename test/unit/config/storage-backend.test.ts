/**
 * @module test/unit/config/storage-backend
 * storage.backend and storage.s3: the s3 section's defaults and where its keys come from, and a
 * backend of s3 refused by key path until the mirror can serve from a bucket.
 */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.ts';
import { configIssues } from '../../helpers/thrown.ts';

const parse = (storage: unknown, env: Record<string, string> = {}) => parseConfig({ storage }, { env });

const issuesOf = configIssues;

describe('storage.backend and storage.s3', () => {
  it('takes backend s3 with its section, and asks for the s3 section it needs by key path', () => {
    expect(parse({ backend: 's3', s3: { bucket: 'b' }, localCache: { maxSize: '2GiB' } }).storage).toMatchObject({ backend: 's3', s3: { bucket: 'b' }, localCache: { maxSize: 2 * 1024 ** 3 } });
    expect(issuesOf(() => parse({ backend: 's3' }))).toEqual(['storage.s3 is required when backend is s3']);
  });

  it('fills the s3 section\'s defaults and takes keys from AWS\'s variables when they are set', () => {
    const s3 = parse({ s3: { bucket: 'b' } }, { AWS_ACCESS_KEY_ID: 'id', AWS_SECRET_ACCESS_KEY: 'secret' }).storage.s3;
    expect(s3).toEqual({ bucket: 'b', region: 'us-east-1', prefix: '', forcePathStyle: true, credentials: { accessKeyId: 'id', secretAccessKey: 'secret' } });
    expect(parse({ s3: { bucket: 'b' } }).storage.s3?.credentials).toBeUndefined();
  });

  it('refuses a named key variable that is set but empty, as a Secret not filled in yet leaves it', () => {
    expect(issuesOf(() => parse({ s3: { bucket: 'b', accessKeyIdEnv: 'S3_ID', secretAccessKeyEnv: 'S3_SECRET' } }, { S3_ID: 'x', S3_SECRET: '' }))).toEqual([
      'storage.s3.secretAccessKeyEnv: environment variable S3_SECRET is empty',
    ]);
  });

  it('requires the variables it is told to read, and refuses them together with a credentials file', () => {
    expect(issuesOf(() => parse({ s3: { bucket: 'b', accessKeyIdEnv: 'S3_ID', secretAccessKeyEnv: 'S3_SECRET' } }, { S3_ID: 'x' }))).toEqual([
      'storage.s3.secretAccessKeyEnv: environment variable S3_SECRET is not set',
    ]);
    expect(issuesOf(() => parse({ s3: { bucket: 'b', accessKeyIdEnv: 'S3_ID', credentialsFile: '/c' } }, { S3_ID: 'x' }))).toEqual([
      'storage.s3.credentialsFile: expected accessKeyIdEnv/secretAccessKeyEnv or credentialsFile, not both',
    ]);
  });

  it('refuses a prefix that does not end in a slash', () => {
    expect(issuesOf(() => parse({ s3: { bucket: 'b', prefix: 'mirror' } }))).toEqual(["storage.s3.prefix: expected '' or a path ending in '/'"]);
  });
});
