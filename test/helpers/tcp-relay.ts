/**
 * @module test/helpers/tcp-relay
 * A TCP relay on loopback in front of a server, that a test can cut and restore: what a network
 * outage between a replica and its object store looks like to the replica (connections refused and
 * open ones reset), without touching the server behind it. Bytes pass unchanged, so signed requests
 * (S3 SigV4 signs the Host header) still verify.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface TcpRelay {
  /** http://127.0.0.1:<port> of the relay, for a target given as a URL. */
  readonly url: string;
  readonly port: number;
  /** Refuses new connections and resets the open ones. */
  cut(): Promise<void>;
  /** Accepts connections again, on the same port. */
  restore(): Promise<void>;
  stop(): Promise<void>;
}

export async function startTcpRelay(target: { host: string; port: number }): Promise<TcpRelay> {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer((client) => {
        const upstream = connect(target.port, target.host);
        for (const sock of [client, upstream]) {
          sockets.add(sock);
          sock.on('close', () => sockets.delete(sock));
          sock.on('error', () => {
            client.destroy();
            upstream.destroy();
          });
        }
        client.pipe(upstream);
        upstream.pipe(client);
      });
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        port = (s.address() as { port: number }).port;
        server = s;
        resolve();
      });
    });
  const close = async () => {
    const s = server;
    server = undefined;
    for (const sock of sockets) sock.resetAndDestroy();
    sockets.clear();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  await listen();
  return {
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    cut: close,
    restore: listen,
    stop: close,
  };
}
