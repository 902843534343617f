/**
 * @module http/connection/client-address
 * The client address logs report: the PROXY protocol header's address when a balancer sent one,
 * else the peer's, then X-Forwarded-For read right to left while the hop is a trusted proxy (an
 * untrusted hop could have written anything to its left).
 */
import { BlockList, isIP, type Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';

const PEER = Symbol('ocimirror.peer-address');

/** A BlockList of the schema-checked blocks ('10.0.0.0/8', '::1/128', '127.0.0.1'). */
export function cidrList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const c of cidrs) {
    const [addr = '', bits] = c.split('/');
    const family = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    list.addSubnet(addr, bits === undefined ? (family === 'ipv4' ? 32 : 128) : Number(bits), family);
  }
  return list;
}

export function inList(list: BlockList, address: string | undefined): boolean {
  if (!address) return false;
  const family = isIP(address);
  return family !== 0 && list.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

/** Records the client address a PROXY header named for this (raw) socket. */
export function setPeerAddress(socket: Socket, address: string): void {
  (socket as Socket & { [PEER]?: string })[PEER] = address;
}

/** The peer's address: a PROXY header's, else the socket's (a TLS socket's raw socket is its `_parent`). */
function peerAddress(socket: Socket): string | undefined {
  const own = (socket as Socket & { [PEER]?: string })[PEER];
  if (own !== undefined) return own;
  const parent = (socket as Socket & { _parent?: Socket & { [PEER]?: string } })._parent;
  return parent?.[PEER] ?? socket.remoteAddress;
}

/** The client's address for `req`: X-Forwarded-For is read only when the peer is in `trusted`. */
export function clientAddress(req: IncomingMessage, trusted: BlockList | undefined): string | undefined {
  const peer = peerAddress(req.socket);
  const xff = req.headers['x-forwarded-for'];
  if (!trusted || xff === undefined || !inList(trusted, peer)) return peer;
  const hops = (Array.isArray(xff) ? xff.join(',') : xff).split(',').map((h) => h.trim());
  let client = peer;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!;
    if (isIP(hop) === 0) break;
    client = hop;
    if (!inList(trusted, hop)) break;
  }
  return client;
}
