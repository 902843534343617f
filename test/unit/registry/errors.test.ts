/**
 * @module test/unit/registry/errors
 * The error table and the envelope. OCI distribution-spec v1.1 "Error Codes": a JSON error body
 * "MUST have the following format: { "errors": [ { "code", "message", "detail" } ] }"; "The
 * `code` field MUST be a unique identifier, containing only uppercase alphabetic characters and
 * underscores"; "The `detail` field is OPTIONAL". Anything that is not a RegistryError is an
 * internal fault: it is rendered as 500 UNKNOWN and its message (which may hold paths, SQL or
 * upstream URLs) never reaches the client.
 */
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, RegistryError, toErrorEnvelope, type ErrorCode } from '../../../src/registry/errors.ts';

/** The codes the distribution-spec v1.1 table lists (code-1 … code-15). */
const SPEC_CODES: ErrorCode[] = [
  'BLOB_UNKNOWN',
  'BLOB_UPLOAD_INVALID',
  'BLOB_UPLOAD_UNKNOWN',
  'DIGEST_INVALID',
  'MANIFEST_BLOB_UNKNOWN',
  'MANIFEST_INVALID',
  'MANIFEST_UNKNOWN',
  'NAME_INVALID',
  'NAME_UNKNOWN',
  'SIZE_INVALID',
  'UNAUTHORIZED',
  'DENIED',
  'UNSUPPORTED',
  'TOOMANYREQUESTS',
];

describe('ERROR_CODES', () => {
  it('holds every code of the spec table, and only spec-shaped codes', () => {
    for (const code of SPEC_CODES) expect(ERROR_CODES, code).toHaveProperty(code);
    for (const code of Object.keys(ERROR_CODES)) expect(code).toMatch(/^[A-Z_]+$/);
  });

  it('maps the codes clients act on to the statuses distribution uses', () => {
    expect(ERROR_CODES.BLOB_UNKNOWN.status).toBe(404);
    expect(ERROR_CODES.MANIFEST_UNKNOWN.status).toBe(404);
    expect(ERROR_CODES.NAME_UNKNOWN.status).toBe(404);
    expect(ERROR_CODES.NAME_INVALID.status).toBe(400);
    expect(ERROR_CODES.DIGEST_INVALID.status).toBe(400);
    expect(ERROR_CODES.UNAUTHORIZED.status).toBe(401);
    expect(ERROR_CODES.DENIED.status).toBe(403);
    expect(ERROR_CODES.TOOMANYREQUESTS.status).toBe(429);
    expect(ERROR_CODES.RANGE_INVALID.status).toBe(416);
    expect(ERROR_CODES.UNKNOWN.status).toBe(500);
  });
});

describe('RegistryError', () => {
  it('takes its status and message from the table by default', () => {
    const err = new RegistryError('BLOB_UNKNOWN');
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('RegistryError');
    expect(err.code).toBe('BLOB_UNKNOWN');
    expect(err.status).toBe(404);
    expect(err.message).toBe('blob unknown to registry');
    expect(err.detail).toBeUndefined();
    expect(err.headers).toEqual({});
    expect(err.upstreamStatus).toBeUndefined();
    expect(err.cause).toBeUndefined();
  });

  it('carries a message, detail, headers, cause and upstream status when given', () => {
    const cause = new Error('socket hang up');
    const err = new RegistryError('BAD_GATEWAY', {
      message: 'upstream dockerhub is unreachable',
      detail: { upstream: 'dockerhub' },
      headers: { 'Retry-After': '30' },
      cause,
      upstreamStatus: 503,
    });
    expect(err.message).toBe('upstream dockerhub is unreachable');
    expect(err.status).toBe(502);
    expect(err.detail).toEqual({ upstream: 'dockerhub' });
    expect(err.headers).toEqual({ 'Retry-After': '30' });
    expect(err.cause).toBe(cause);
    expect(err.upstreamStatus).toBe(503);
  });

  it('does not share or expose a mutable headers object', () => {
    const headers = { 'Retry-After': '30' };
    const err = new RegistryError('TOOMANYREQUESTS', { headers });
    headers['Retry-After'] = '9999';
    expect(err.headers['Retry-After']).toBe('30');
    expect(Object.isFrozen(err.headers)).toBe(true);
  });
});

describe('toErrorEnvelope', () => {
  it('renders a RegistryError as the spec envelope with code, message and detail', () => {
    const err = new RegistryError('MANIFEST_UNKNOWN', { detail: { tag: 'nope' } });
    expect(toErrorEnvelope(err)).toEqual({
      status: 404,
      headers: {},
      body: { errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown to registry', detail: { tag: 'nope' } }] },
    });
  });

  it('leaves detail out entirely when there is none', () => {
    const { body } = toErrorEnvelope(new RegistryError('DENIED'));
    expect(body.errors).toHaveLength(1);
    expect(body.errors[0]).not.toHaveProperty('detail');
    expect(JSON.parse(JSON.stringify(body))).toEqual({ errors: [{ code: 'DENIED', message: 'requested access to the resource is denied' }] });
  });

  it('keeps falsy details such as 0, false and empty strings', () => {
    for (const detail of [0, false, '', null]) {
      expect(toErrorEnvelope(new RegistryError('SIZE_INVALID', { detail })).body.errors[0]?.detail).toBe(detail);
    }
  });

  it('takes the status from the table and passes extra headers through', () => {
    const env = toErrorEnvelope(new RegistryError('TOOMANYREQUESTS', { headers: { 'Retry-After': '120' } }));
    expect(env.status).toBe(429);
    expect(env.headers).toEqual({ 'Retry-After': '120' });
  });

  it('hands out a copy of the headers that the caller may change', () => {
    const err = new RegistryError('TOOMANYREQUESTS', { headers: { 'Retry-After': '1' } });
    const env = toErrorEnvelope(err);
    env.headers['X-Extra'] = 'yes';
    expect(err.headers).toEqual({ 'Retry-After': '1' });
  });

  it('renders any other error as 500 UNKNOWN without leaking its message, cause or stack', () => {
    const secret = new Error('ENOENT: /var/lib/ocimirror/blobs/sha256/ab password=hunter2', { cause: new Error('sqlite: disk I/O error') });
    const env = toErrorEnvelope(secret);
    expect(env).toEqual({ status: 500, headers: {}, body: { errors: [{ code: 'UNKNOWN', message: 'unknown error' }] } });
    const text = JSON.stringify(env);
    for (const leak of ['ENOENT', 'hunter2', '/var/lib', 'sqlite', 'at ']) expect(text).not.toContain(leak);
  });

  it('renders thrown non-errors as 500 UNKNOWN too', () => {
    for (const value of ['a string', 42, null, undefined, { code: 'BLOB_UNKNOWN', status: 404, message: 'lookalike' }]) {
      const env = toErrorEnvelope(value);
      expect(env.status).toBe(500);
      expect(env.body.errors[0]?.code).toBe('UNKNOWN');
    }
  });
});
