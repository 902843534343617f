/**
 * @module test/unit/http/connection/host-header
 * RFC 9112 §3.2: an HTTP/1.1 request without Host, with two, or with an invalid one gets 400;
 * HTTP/1.0 may leave Host out. An accepted Host is one the URL standard reads as written (a
 * numeric shorthand such as 1.2.3:80 or bad punycode is not), so the app's adapter, which builds
 * its URL from Host, never refuses it on its own.
 */
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { hostError } from '../../../../src/http/connection/host-header.ts';

/** The parts of a node request hostError reads. */
function req(hosts: string[], version = '1.1'): IncomingMessage {
  const [major, minor] = version.split('.').map(Number);
  return {
    httpVersionMajor: major,
    httpVersionMinor: minor,
    headers: hosts.length > 0 ? { host: hosts[0] } : {},
    rawHeaders: [...hosts.flatMap((h, i) => [i === 0 ? 'Host' : 'host', h]), 'Accept', '*/*'],
  } as unknown as IncomingMessage;
}

describe('hostError', () => {
  it.each(['localhost:5000', 'mirror.example.com', '10.0.0.1:8080', 'Mirror.Example:443', 'registry:80', 'my_registry', '[::1]:5000', '[2001:db8::1]'])(
    'accepts Host: %s',
    (host) => {
      expect(hostError(req([host]))).toBeUndefined();
    },
  );

  it('accepts an HTTP/1.0 request without Host, as load-balancer health checks send', () => {
    expect(hostError(req([], '1.0'))).toBeUndefined();
  });

  it('refuses an HTTP/1.1 request without Host, or with an empty one', () => {
    expect(hostError(req([]))?.code).toBe('BAD_REQUEST');
    expect(hostError(req(['']))?.code).toBe('BAD_REQUEST');
  });

  it('refuses two Host headers, even equal ones', () => {
    expect(hostError(req(['localhost:5000', 'localhost:5000']))?.code).toBe('BAD_REQUEST');
  });

  it.each(['a@b', 'user:pw@mirror', 'a/b', 'a?b', 'a#b', 'a b', 'exa%41mple', 'a,b', 'localhost:', 'localhost:99999', '[::1', 'A.1', '1.2.3:80', 'XN--A', '[::0001]'])(
    'refuses Host: %s',
    (host) => {
      const err = hostError(req([host]));
      expect(err?.code).toBe('BAD_REQUEST');
      expect(err?.status).toBe(400);
    },
  );
});
