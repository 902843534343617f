/**
 * @module bench/nginx
 * nginx with sendfile serving the fixture blob files under registry paths: the ceiling for cache-hit reads.
 * `GET /v2/<repo>/blobs/sha256:<hex>` → `<blobDir>/<hex>`.
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from '../test/helpers/ports.ts';
import { answers, startDaemon, waitFor, type Cleanup, type Daemon } from './proc.ts';
import type { BenchCert } from './tls-cert.ts';

export interface Nginx {
  url: string;
  daemon: Daemon;
}

/** An nginx config for `dir` (pid, logs, temp paths) whose `http` block holds `body`. */
function config(dir: string, body: string): string {
  return `daemon off;
worker_processes auto;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${body}
}
`;
}

/**
 * The read ceiling: the fixture blob files under registry paths, by sendfile. With `tls`, the same files over
 * HTTPS with the certificate ocimirror serves in the same phase.
 */
const blobServer = (blobDir: string, tls?: BenchCert) => (port: number) => `  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:${port}${tls ? ` ssl;
    ssl_certificate ${tls.cert};
    ssl_certificate_key ${tls.key}` : ''};
    location = /v2/ { default_type application/json; return 200 '{}'; }
    location ~ "^/v2/.+/blobs/sha256:([a-f0-9]{64})$" { alias ${blobDir}/$1; }
  }`;

export function startNginx(blobDir: string, workDir: string, cleanup: Cleanup): Promise<Nginx> {
  return startNginxWith('nginx', blobServer(blobDir), workDir, cleanup);
}

/** The same blob server over HTTPS with `tls`'s certificate. */
export function startNginxTls(blobDir: string, tls: BenchCert, workDir: string, cleanup: Cleanup): Promise<Nginx> {
  return startNginxWith('nginx-tls', blobServer(blobDir, tls), workDir, cleanup, tls);
}

/**
 * nginx in `workDir/name` with the `http` block `body(port)` on a free loopback port, once it
 * answers `GET /v2/` (over HTTPS, trusting `tls.ca`, when `tls` is given).
 */
export async function startNginxWith(name: string, body: (port: number) => string, workDir: string, cleanup: Cleanup, tls?: BenchCert): Promise<Nginx> {
  const dir = join(workDir, name);
  await mkdir(dir, { recursive: true });
  await chmod(workDir, 0o755); // run as root, nginx's workers drop to an unprivileged user
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    await writeFile(join(dir, 'nginx.conf'), config(dir, body(port)));
    const daemon = startDaemon('nginx', ['-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf')], join(dir, 'stdout.log'));
    cleanup.defer(name, () => daemon.stop());
    const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
    try {
      await waitFor(name, daemon, () => answers(`${url}/v2/`, tls?.ca), 10_000, 20);
      return { url, daemon };
    } catch (err) {
      await daemon.stop();
      if (attempt >= 3) throw err;
    }
  }
}
