/**
 * @module http/connection/proxy-front
 * The listener behind an L4 balancer: a net.Server that reads the PROXY protocol header from
 * trusted peers, then hands the socket (the bytes read past the header put back) to the HTTP or
 * TLS server, so that layer never sees a connection that did not pass here.
 *
 * The other cluster replicas reach this listener directly, not through the balancer: their
 * connections carry no PROXY header. A connection from a member's address whose first bytes are not
 * a PROXY signature is served as a direct one (its own address is the client's); everyone else
 * must send the header as before, so no client can pass by claiming nothing.
 */
import net, { type BlockList } from 'node:net';
import tls from 'node:tls';
import type { Logger } from '../../util/logger.ts';
import { inList, setPeerAddress } from './client-address.ts';
import { mayBeProxyHeader, parseProxyHeader } from './proxy-protocol.ts';

export interface ProxyFrontOptions {
  trusted: BlockList;
  /** How long a peer may take to complete the header (ms). */
  timeoutMs: number;
  /** The server that takes the connection once the header is read (http.Server, https.Server). */
  target: net.Server;
  log: Logger;
  /** Whether `address` is another cluster replica's, which may connect without a header. */
  direct?: ((address: string | undefined) => boolean) | undefined;
}

export function createProxyFront(opts: ProxyFrontOptions): net.Server {
  return net.createServer((socket) => {
    const peer = socket.remoteAddress;
    const refuse = (reason: string): void => {
      opts.log.warn({ peer, reason }, 'connection refused by the PROXY protocol front end');
      socket.destroy();
    };
    socket.on('error', () => socket.destroy());
    const member = opts.direct?.(peer) === true;
    if (!member && !inList(opts.trusted, peer)) return refuse('peer not in server.proxyProtocol.trustedCidrs');
    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.off('data', onData);
      refuse('PROXY protocol header not complete in time');
    }, opts.timeoutMs);
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const header = member && !mayBeProxyHeader(buf) ? ({ kind: 'local', length: 0 } as const) : parseProxyHeader(buf);
      if (header.kind === 'incomplete') return;
      clearTimeout(timer);
      socket.off('data', onData);
      if (header.kind === 'invalid') return refuse(header.reason);
      if (header.kind === 'proxy' && !inList(opts.trusted, peer)) return refuse('PROXY header from a peer not in server.proxyProtocol.trustedCidrs');
      if (header.kind === 'proxy') setPeerAddress(socket, header.address);
      const rest = buf.subarray(header.length);
      // Paused while the bytes past the header wait: a flowing socket with no data listener would
      // drop them before a TLS server reads its buffer (a balancer's health check sends the header
      // and the ClientHello in one packet). The HTTP server reads through its data listener, so it resumes.
      socket.pause();
      if (rest.length > 0) socket.unshift(rest);
      socket.removeAllListeners('error');
      opts.target.emit('connection', socket);
      if (!(opts.target instanceof tls.Server)) socket.resume();
    };
    socket.on('data', onData);
    socket.once('close', () => clearTimeout(timer));
  });
}
