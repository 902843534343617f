/**
 * The PROXY protocol front end with cluster replicas beside the balancer: a member's address may
 * connect without the header (its own address is the client's) or with one only when trusted; an
 * address that is neither a member nor trusted is cut, and a trusted balancer must still send it.
 * Real sockets on loopback, a real http.Server behind the front.
 */
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { cidrList, clientAddress } from '../../../../src/http/connection/client-address.ts';
import { createProxyFront } from '../../../../src/http/connection/proxy-front.ts';
import { silentLogger } from '../../../../src/util/logger.ts';

const open: net.Server[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await new Promise<void>((r) => s.close(() => r()));
});

/** A front whose target answers each request with the client address it saw. */
async function front(opts: { trusted: string[]; members: string[] }): Promise<number> {
  const target = http.createServer((req, res) => res.end(clientAddress(req, undefined) ?? 'none'));
  const f = createProxyFront({
    trusted: cidrList(opts.trusted),
    timeoutMs: 2000,
    target,
    log: silentLogger,
    direct: (address) => opts.members.includes(address ?? ''),
  });
  await new Promise<void>((resolve) => f.listen(0, '127.0.0.1', resolve));
  open.push(f);
  return (f.address() as AddressInfo).port;
}

/** Sends `bytes` from 127.0.0.1 and resolves with the whole answer ('' when the connection was cut). */
function exchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (d) => (answer += d.toString()));
    socket.on('error', () => resolve(answer));
    socket.on('close', () => resolve(answer));
    socket.write(bytes);
  });
}

const REQUEST = 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
const POST = 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n';

describe('the PROXY protocol front end with cluster members', () => {
  it('serves a member that connects without a header as a direct client, whatever its method', async () => {
    const port = await front({ trusted: ['10.0.0.0/8'], members: ['127.0.0.1'] });
    expect(await exchange(port, REQUEST)).toMatch(/200 OK[\s\S]*127\.0\.0\.1$/);
    expect(await exchange(port, POST)).toMatch(/200 OK[\s\S]*127\.0\.0\.1$/);
  });

  it('reads the header of a trusted balancer on a member address, and still requires it from a trusted one that is not', async () => {
    const both = await front({ trusted: ['127.0.0.0/8'], members: ['127.0.0.1'] });
    expect(await exchange(both, `PROXY TCP4 192.0.2.7 127.0.0.1 4000 5000\r\n${REQUEST}`)).toMatch(/192\.0\.2\.7$/);
    const balancerOnly = await front({ trusted: ['127.0.0.0/8'], members: [] });
    expect(await exchange(balancerOnly, REQUEST)).toBe('');
  });

  it('cuts a member that sends a header it is not trusted to send, and an address that is neither', async () => {
    const memberOnly = await front({ trusted: ['10.0.0.0/8'], members: ['127.0.0.1'] });
    expect(await exchange(memberOnly, `PROXY TCP4 192.0.2.7 127.0.0.1 4000 5000\r\n${REQUEST}`)).toBe('');
    const stranger = await front({ trusted: ['10.0.0.0/8'], members: ['127.0.0.2'] });
    expect(await exchange(stranger, REQUEST)).toBe('');
  });
});
