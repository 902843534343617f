/**
 * @module test/unit/http/log-path
 * The access log's request target: the path as sent, the query values that route or page a
 * request kept, every other value replaced (a client's token never reaches the log).
 */
import { describe, expect, it } from 'vitest';
import { logPath } from '../../../src/http/log-path.ts';

describe('logPath', () => {
  it('keeps a target without a query as it is', () => {
    expect(logPath('/v2/library/alpine/manifests/3.19')).toBe('/v2/library/alpine/manifests/3.19');
    expect(logPath(undefined)).toBeUndefined();
  });

  it('keeps ns, n, last, digest and artifactType with their values', () => {
    const target = '/v2/a/tags/list?ns=docker.io&n=10&last=v1&digest=sha256:00&artifactType=application%2Fx';
    expect(logPath(target)).toBe(target);
  });

  it('replaces the value of any other parameter, keeping its name', () => {
    expect(logPath('/v2/a/manifests/x?ns=docker.io&token=s3cret&access_token=s3cret')).toBe('/v2/a/manifests/x?ns=docker.io&token=REDACTED&access_token=REDACTED');
  });

  it('replaces a parameter without a value whole, since the name may be the secret', () => {
    expect(logPath('/v2/a/manifests/x?s3cret&n=1')).toBe('/v2/a/manifests/x?REDACTED&n=1');
  });

  it('leaves empty parameters and a bare question mark alone', () => {
    expect(logPath('/v2/?')).toBe('/v2/?');
    expect(logPath('/v2/?n=1&&last=')).toBe('/v2/?n=1&&last=');
  });
});
