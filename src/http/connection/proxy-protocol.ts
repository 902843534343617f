/**
 * @module http/connection/proxy-protocol
 * Parses the PROXY protocol header (v1 text, v2 binary) an L4 balancer puts before the client's
 * bytes: the client's address, or LOCAL for the balancer's own connections (health checks).
 */

/** The v2 header's first 12 bytes. */
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ');
/** v1's longest header, CRLF included (the spec's bound). */
const V1_MAX = 107;
/** TLVs (AWS NLB's VPC endpoint id, SSL facts) are small; a longer header is treated as hostile. */
const V2_MAX_PAYLOAD = 4096;

export type ProxyHeader =
  | { kind: 'incomplete' }
  | { kind: 'invalid'; reason: string }
  /** The balancer's own connection, or a v1 UNKNOWN: served as a direct connection. */
  | { kind: 'local'; length: number }
  | { kind: 'proxy'; length: number; address: string; port: number };

const invalid = (reason: string): ProxyHeader => ({ kind: 'invalid', reason });

/** Whether `buf` starts like a PROXY header (v1 or v2), or is too short to tell. */
export function mayBeProxyHeader(buf: Buffer): boolean {
  const n = Math.min(buf.length, V2_SIGNATURE.length);
  const m = Math.min(buf.length, V1_PREFIX.length);
  return buf.length === 0 || buf.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n)) || buf.subarray(0, m).equals(V1_PREFIX.subarray(0, m));
}

/** Reads a header at the start of `buf`; 'incomplete' while a prefix of one could still become valid. */
export function parseProxyHeader(buf: Buffer): ProxyHeader {
  const n = Math.min(buf.length, V2_SIGNATURE.length);
  if (n > 0 && buf.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))) return n < V2_SIGNATURE.length ? { kind: 'incomplete' } : parseV2(buf);
  const m = Math.min(buf.length, V1_PREFIX.length);
  if (m > 0 && buf.subarray(0, m).equals(V1_PREFIX.subarray(0, m))) return parseV1(buf);
  return buf.length === 0 ? { kind: 'incomplete' } : invalid('no PROXY protocol signature');
}

function parseV1(buf: Buffer): ProxyHeader {
  const end = buf.subarray(0, V1_MAX).indexOf('\r\n');
  if (end < 0) return buf.length >= V1_MAX ? invalid('v1 header longer than 107 bytes') : { kind: 'incomplete' };
  const line = buf.subarray(0, end).toString('latin1');
  const length = end + 2;
  const parts = line.split(' ');
  if (parts[1] === 'UNKNOWN') return { kind: 'local', length };
  if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6')) return invalid('malformed v1 header');
  const [, proto, src, dst, sport, dport] = parts as [string, string, string, string, string, string];
  const ipv4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
  const ipv6 = /^[0-9a-fA-F:.]{2,45}$/;
  const okAddr = (a: string) => (proto === 'TCP4' ? ipv4.test(a) : ipv6.test(a) && a.includes(':'));
  const okPort = (p: string) => /^(0|[1-9]\d{0,4})$/.test(p) && Number(p) <= 65535;
  if (!okAddr(src) || !okAddr(dst) || !okPort(sport) || !okPort(dport)) return invalid('malformed v1 address or port');
  return { kind: 'proxy', length, address: src, port: Number(sport) };
}

function parseV2(buf: Buffer): ProxyHeader {
  if (buf.length < 16) return { kind: 'incomplete' };
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return invalid('v2 header with an unknown version');
  const command = verCmd & 0x0f;
  if (command > 1) return invalid('v2 header with an unknown command');
  const payload = buf.readUInt16BE(14);
  if (payload > V2_MAX_PAYLOAD) return invalid('v2 header too long');
  const length = 16 + payload;
  if (buf.length < length) return { kind: 'incomplete' };
  if (command === 0) return { kind: 'local', length };
  const family = buf[13]! >> 4;
  const body = buf.subarray(16, length);
  if (family === 0x1) {
    if (payload < 12) return invalid('v2 IPv4 header shorter than its addresses');
    return { kind: 'proxy', length, address: `${body[0]}.${body[1]}.${body[2]}.${body[3]}`, port: body.readUInt16BE(8) };
  }
  if (family === 0x2) {
    if (payload < 36) return invalid('v2 IPv6 header shorter than its addresses');
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(body.readUInt16BE(i).toString(16));
    return { kind: 'proxy', length, address: compressIpv6(groups), port: body.readUInt16BE(32) };
  }
  // AF_UNSPEC or AF_UNIX: the spec says to use the connection's own addresses.
  if (family === 0x0 || family === 0x3) return { kind: 'local', length };
  return invalid('v2 header with an unknown address family');
}

/** The usual short form (longest run of zero groups as '::'), so logs match what clients print. */
function compressIpv6(groups: string[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}
