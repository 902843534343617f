/**
 * @module bench/nginx
 * nginx with sendfile serving the fixture blob files under registry paths: the ceiling for cache-hit reads.
 * `GET /v2/<repo>/blobs/sha256:<hex>` → `<blobDir>/<hex>`.
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from '../test/helpers/ports.ts';
import { answers, startDaemon, waitFor, type Cleanup, type Daemon } from './proc.ts';

export interface Nginx {
  url: string;
  daemon: Daemon;
}

function config(dir: string, port: number, blobDir: string): string {
  return `daemon off;
worker_processes auto;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  default_type application/octet-stream;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port};
    location = /v2/ { default_type application/json; return 200 '{}'; }
    location ~ "^/v2/.+/blobs/sha256:([a-f0-9]{64})$" { alias ${blobDir}/$1; }
  }
}
`;
}

export async function startNginx(blobDir: string, workDir: string, cleanup: Cleanup): Promise<Nginx> {
  const dir = join(workDir, 'nginx');
  await mkdir(dir, { recursive: true });
  await chmod(workDir, 0o755); // run as root, nginx's workers drop to an unprivileged user
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    await writeFile(join(dir, 'nginx.conf'), config(dir, port, blobDir));
    const daemon = startDaemon('nginx', ['-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf')], join(dir, 'stdout.log'));
    cleanup.defer('nginx', () => daemon.stop());
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitFor('nginx', daemon, () => answers(`${url}/v2/`), 10_000, 20);
      return { url, daemon };
    } catch (err) {
      await daemon.stop();
      if (attempt >= 3) throw err;
    }
  }
}
