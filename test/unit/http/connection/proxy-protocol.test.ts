/**
 * The PROXY protocol header parser: v1 and v2 addresses, LOCAL, incomplete prefixes and the
 * malformed headers that must close the connection.
 */
import { describe, expect, it } from 'vitest';
import { parseProxyHeader, V2_SIGNATURE } from '../../../../src/http/connection/proxy-protocol.ts';

const v2 = (verCmd: number, family: number, body: number[]): Buffer => {
  const head = Buffer.from([verCmd, family, 0, 0]);
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, head, Buffer.from(body)]);
};

describe('parseProxyHeader', () => {
  it('reads a v1 TCP4 header and its length, leaving the bytes after it', () => {
    const line = 'PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\r\n';
    expect(parseProxyHeader(Buffer.from(`${line}GET /`))).toEqual({ kind: 'proxy', length: line.length, address: '192.0.2.7', port: 51234 });
  });

  it('reads a v1 TCP6 header and treats UNKNOWN as a direct connection', () => {
    expect(parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::1 ::1 1 2\r\n'))).toMatchObject({ kind: 'proxy', address: '2001:db8::1' });
    expect(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'))).toEqual({ kind: 'local', length: 15 });
  });

  it('reads v2 IPv4 and IPv6 addresses and skips TLVs', () => {
    const ipv4 = v2(0x21, 0x11, [192, 0, 2, 7, 10, 0, 0, 1, 0xc8, 0x22, 1, 0xbb, /* a TLV */ 0x04, 0, 1, 0x61]);
    expect(parseProxyHeader(ipv4)).toEqual({ kind: 'proxy', length: 16 + 16, address: '192.0.2.7', port: 51234 });
    const ipv6 = v2(0x21, 0x21, [0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 1, ...Array(16).fill(0), 0, 80, 1, 0xbb]);
    expect(parseProxyHeader(ipv6)).toMatchObject({ kind: 'proxy', address: '2001:db8::1', port: 80 });
  });

  it('reads a v2 LOCAL command as a direct connection', () => {
    expect(parseProxyHeader(v2(0x20, 0x00, []))).toEqual({ kind: 'local', length: 16 });
  });

  it('asks for more bytes while a prefix of a header could still become valid', () => {
    const full = v2(0x21, 0x11, [192, 0, 2, 7, 10, 0, 0, 1, 0, 1, 0, 2]);
    for (let n = 0; n < full.length; n++) expect(parseProxyHeader(full.subarray(0, n)).kind, `${n} bytes`).toBe('incomplete');
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4')).kind).toBe('incomplete');
  });

  it('refuses what is not a header, or a malformed one', () => {
    const bad = [
      Buffer.from('GET / HTTP/1.1\r\n'),
      Buffer.from(`PROXY TCP4 ${'9'.repeat(110)}`),
      Buffer.from('PROXY TCP4 1.2.3.400 1.2.3.4 1 2\r\n'),
      Buffer.from('PROXY TCP4 1.2.3.4 1.2.3.4 1 65536\r\n'),
      Buffer.from('PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n'),
      v2(0x11, 0x11, Array(12).fill(1)),
      v2(0x22, 0x11, Array(12).fill(1)),
      v2(0x21, 0x11, [1, 2, 3, 4]),
      v2(0x21, 0x21, Array(12).fill(1)),
      v2(0x21, 0x51, Array(12).fill(1)),
      Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0xff, 0xff])]),
    ];
    for (const b of bad) expect(parseProxyHeader(b).kind, b.toString('latin1')).toBe('invalid');
  });
});
