/**
 * @module test/helpers/ports
 * A free loopback port for programs that cannot listen on port 0 and report back (docker-registry).
 * There is a window between closing our probe and the program binding; callers that spawn a process
 * retry with a new port when it reports "address already in use".
 */
import { createServer } from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('could not read the bound port'))));
    });
  });
}
