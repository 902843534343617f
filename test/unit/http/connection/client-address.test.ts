/**
 * The logged client address: the PROXY header's when one was read, X-Forwarded-For only from
 * trusted proxies and only as far left as the hops stay trusted.
 */
import type { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { cidrList, clientAddress, setPeerAddress } from '../../../../src/http/connection/client-address.ts';

function request(peer: string, xff?: string): IncomingMessage {
  const socket = new Socket();
  Object.defineProperty(socket, 'remoteAddress', { value: peer });
  return { socket, headers: xff === undefined ? {} : { 'x-forwarded-for': xff } } as unknown as IncomingMessage;
}

describe('clientAddress', () => {
  const trusted = cidrList(['10.0.0.0/8', '::1/128']);

  it('is the peer when no proxy is trusted or the peer is not one', () => {
    expect(clientAddress(request('10.1.1.1', '203.0.113.9'), undefined)).toBe('10.1.1.1');
    expect(clientAddress(request('192.0.2.1', '203.0.113.9'), trusted)).toBe('192.0.2.1');
  });

  it('reads X-Forwarded-For from a trusted proxy right to left, stopping at the first untrusted hop', () => {
    expect(clientAddress(request('10.1.1.1', '203.0.113.9'), trusted)).toBe('203.0.113.9');
    expect(clientAddress(request('::1', 'spoofed, 198.51.100.4, 203.0.113.9, 10.2.2.2'), trusted)).toBe('203.0.113.9');
    expect(clientAddress(request('10.1.1.1', 'not-an-ip'), trusted)).toBe('10.1.1.1');
  });

  it('is the address a PROXY header named, on the socket or the TLS socket around it', () => {
    const req = request('127.0.0.1');
    setPeerAddress(req.socket, '198.51.100.7');
    expect(clientAddress(req, undefined)).toBe('198.51.100.7');
    const raw = new Socket();
    setPeerAddress(raw, '198.51.100.8');
    const tlsLike = { socket: Object.assign(new Socket(), { _parent: raw }), headers: {} } as unknown as IncomingMessage;
    expect(clientAddress(tlsLike, undefined)).toBe('198.51.100.8');
  });
});
