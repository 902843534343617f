/**
 * How fast one Node process serves a large cached blob over loopback HTTP: piped through
 * fs.createReadStream (1 MiB reads) versus the sendfile addon (src/http/body/sendfile.ts), and, when
 * nginx is installed, nginx with `sendfile on` (one process) as the ceiling. Readers run in a
 * separate process (raw sockets, data counted and dropped), 1 and 8 at a time; best of `runs`.
 *   node --import tsx scripts/measure-sendfile.ts [sizeMiB=512] [runs=3] [modes=stream,sendfile,nginx]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { chmod, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { sendFileRange } from '../src/http/body/sendfile.ts';
import { nativeAddon, nativeAddonError } from '../src/util/native-addon.ts';

const sizeMiB = Number(process.argv[2] ?? 512);
const runs = Number(process.argv[3] ?? 3);
const modes = (process.argv[4] ?? 'stream,sendfile,nginx').split(',');
const size = sizeMiB * 1024 * 1024;
const NGINX = '/usr/sbin/nginx';

/**
 * The reader: `concurrency` GETs at once over raw loopback sockets, each reading into one reused
 * 1 MiB buffer (net's `onread`) and counting body bytes; prints bytes and ms. A node http.get
 * reader tops out at ~500-800 MiB/s here (a fresh 64 KiB Buffer and a parser call per read), which
 * would hide the server's differences; this one reads about as fast as curl.
 */
const READER = `
const net = require('node:net');
const [url, concurrency] = [new URL(process.argv[1]), Number(process.argv[2])];
const started = process.hrtime.bigint();
let bytes = 0;
const one = () => new Promise((resolve, reject) => {
  let head = '', body = -1, length = 0;
  const socket = net.connect({ port: Number(url.port), host: url.hostname, onread: { buffer: Buffer.allocUnsafe(1 << 20), callback(n, buf) {
    if (body < 0) {
      head += buf.latin1Slice(0, n);
      const end = head.indexOf('\\r\\n\\r\\n');
      if (end < 0) return;
      if (!/^HTTP\\/1\\.1 200 /.test(head)) return reject(new Error(head.split('\\r\\n')[0]));
      length = Number(/content-length: *(\\d+)/i.exec(head)[1]);
      body = head.length - end - 4;
    } else body += n;
    if (body >= length) { bytes += body; socket.destroy(); resolve(); }
  } } }, () => socket.write('GET ' + url.pathname + ' HTTP/1.1\\r\\nHost: ' + url.host + '\\r\\nConnection: close\\r\\n\\r\\n'));
  socket.on('error', reject);
  socket.on('close', () => reject(new Error('closed after ' + body + ' body bytes')));
});
Promise.all(Array.from({ length: concurrency }, one)).then(() => {
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  console.log(JSON.stringify({ bytes, ms }));
}, (err) => { console.error(err); process.exit(1); });
`;

function read(url: string, concurrency: number): Promise<{ bytes: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', READER, url, String(concurrency)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`reader exited with ${code}`));
      resolve(JSON.parse(out) as { bytes: number; ms: number });
    });
  });
}

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

async function startNginx(dir: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  // One process, like the Node server; sendfile on; nothing logged per request.
  await writeFile(
    conf,
    `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  server { listen 127.0.0.1:${port}; root ${dir}; }
}
`,
  );
  const child: ChildProcess = spawn(NGINX, ['-p', dir, '-c', conf], { stdio: 'inherit' });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(true)).on('error', () => resolve(false));
      s.once('connect', () => s.destroy());
    });
    if (up) break;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('nginx did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `http://127.0.0.1:${port}/blob`,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

const dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-measure-sendfile-'));
await chmod(dir, 0o755);
const file = path.join(dir, 'blob');
const cleanups: (() => Promise<void>)[] = [];
try {
  {
    const block = randomBytes(1 << 20);
    const out = await open(file, 'w');
    for (let i = 0; i < sizeMiB; i++) await out.write(block);
    await out.close();
  }
  const blob = await open(file, 'r');
  cleanups.push(() => blob.close());
  const fd = blob.fd;
  const head = { 'Content-Length': String(size), 'Content-Type': 'application/octet-stream' };

  const targets: { name: string; url: string }[] = [];
  if (modes.includes('stream')) {
    const server = http.createServer((req, res) => {
      res.writeHead(200, head);
      createReadStream(file, { highWaterMark: 1 << 20 }).pipe(res);
    });
    targets.push({ name: 'createReadStream → res', url: await listen(server) });
    cleanups.push(async () => void server.close());
  }
  if (modes.includes('sendfile')) {
    const native = nativeAddon();
    if (!native) console.log(`sendfile: skipped (${nativeAddonError()})`);
    else {
      const server = http.createServer((req, res) => {
        res.writeHead(200, head);
        res.flushHeaders();
        sendFileRange(native, res.socket!, fd, 0, size).then(
          () => res.end(),
          () => res.destroy(),
        );
      });
      targets.push({ name: 'sendFileRange', url: await listen(server) });
      cleanups.push(async () => void server.close());
    }
  }
  if (modes.includes('nginx')) {
    if (!existsSync(NGINX)) console.log(`nginx: skipped (no ${NGINX})`);
    else {
      const nginx = await startNginx(dir);
      cleanups.push(nginx.stop);
      targets.push({ name: 'nginx sendfile on (1 process)', url: nginx.url });
    }
  }

  await read(targets[0]!.url, 1); // page cache warm before anything is timed
  console.log(`${sizeMiB} MiB file, best of ${runs}, MiB/s (all readers together)`);
  // The loop delay column: the worst event-loop stall this (Node) server had while serving 8 readers.
  console.log(`${'server'.padEnd(32)} ${'1 reader'.padStart(10)} ${'8 readers'.padStart(10)} ${'loop delay max'.padStart(15)}`);
  for (const t of targets) {
    const cells: string[] = [];
    const delay = monitorEventLoopDelay({ resolution: 1 });
    for (const concurrency of [1, 8]) {
      let best = 0;
      for (let i = 0; i < runs; i++) {
        if (concurrency === 8) delay.enable();
        const r = await read(t.url, concurrency);
        delay.disable();
        if (r.bytes !== size * concurrency) throw new Error(`${t.name}: got ${r.bytes} bytes, expected ${size * concurrency}`);
        best = Math.max(best, r.bytes / (1024 * 1024) / (r.ms / 1000));
      }
      cells.push(best.toFixed(0).padStart(10));
    }
    const stall = t.name.startsWith('nginx') ? '-' : `${(delay.max / 1e6).toFixed(1)} ms`;
    console.log(`${t.name.padEnd(32)} ${cells.join(' ')} ${stall.padStart(15)}`);
  }
} finally {
  for (const c of cleanups) await c();
  await rm(dir, { recursive: true, force: true });
}
process.exit(0);
