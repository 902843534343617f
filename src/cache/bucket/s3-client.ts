/**
 * @module cache/bucket/s3-client
 * Builds the S3 client for the shared blob bucket from the resolved `storage.s3` config section.
 *
 * The settings are the ones S3-compatible servers other than AWS accept: path-style buckets, and
 * checksums only where an operation requires them (the SDK's default aws-chunked CRC bodies are
 * answered with 501 by Swift's s3api, Ceph and others). Credentials come, in order, from explicit keys
 * (resolved from the environment by the config loader), a shared-credentials file re-read as it
 * rotates, or the SDK's default chain (instance role, web identity).
 */
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { S3Client } from '@aws-sdk/client-s3';

export interface S3Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string | undefined;
}

/** The resolved `storage.s3` section. */
export interface S3Settings {
  /** Unset = AWS's own endpoint for the region. */
  readonly endpoint?: string | undefined;
  readonly bucket: string;
  readonly region: string;
  /** Prepended to every key ('' or ending in '/'), so several deployments can share a bucket. */
  readonly prefix: string;
  readonly forcePathStyle: boolean;
  readonly credentials?: S3Credentials | undefined;
  /** An AWS shared-credentials file (`[default]` aws_access_key_id / aws_secret_access_key). */
  readonly credentialsFile?: string | undefined;
  /** PEM bundle trusted for the endpoint's TLS certificate (a private CA). */
  readonly caFile?: string | undefined;
}

/** Keep-alive connections: a blob is many part requests, each a new TLS handshake without it. */
const MAX_SOCKETS = 64;
/** How long a credentials file's keys are used before the file is read again. */
const CREDENTIALS_FILE_TTL_MS = 5 * 60_000;

/** Reads one profile of a shared-credentials file (ini: `[profile]` then `key = value` lines). */
export function parseCredentialsFile(text: string, profile = 'default'): S3Credentials | undefined {
  let section = '';
  const values: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header?.[1]) {
      section = header[1].trim();
      continue;
    }
    const eq = line.indexOf('=');
    if (section === profile && eq > 0) values[line.slice(0, eq).trim().toLowerCase()] = line.slice(eq + 1).trim();
  }
  const accessKeyId = values.aws_access_key_id;
  const secretAccessKey = values.aws_secret_access_key;
  if (!accessKeyId || !secretAccessKey) return undefined;
  return { accessKeyId, secretAccessKey, sessionToken: values.aws_session_token };
}

function fileCredentials(file: string) {
  return async () => {
    const creds = parseCredentialsFile(await readFile(file, 'utf8'));
    if (!creds) throw new Error(`${file} has no [default] aws_access_key_id and aws_secret_access_key`);
    return { ...creds, expiration: new Date(Date.now() + CREDENTIALS_FILE_TTL_MS) };
  };
}

export function createS3Client(settings: S3Settings): S3Client {
  const ca = settings.caFile === undefined ? undefined : readFileSync(settings.caFile);
  return new S3Client({
    ...(settings.endpoint !== undefined && { endpoint: settings.endpoint }),
    region: settings.region,
    forcePathStyle: settings.forcePathStyle,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...(settings.credentials
      ? // A copy: the SDK marks the object it is given ($source), and the loaded config is frozen.
        { credentials: { ...settings.credentials } }
      : settings.credentialsFile !== undefined && { credentials: fileCredentials(settings.credentialsFile) }),
    requestHandler: {
      httpAgent: new HttpAgent({ keepAlive: true, maxSockets: MAX_SOCKETS }),
      httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets: MAX_SOCKETS, ...(ca && { ca }) }),
      connectionTimeout: 10_000,
      requestTimeout: 120_000,
    },
  });
}
