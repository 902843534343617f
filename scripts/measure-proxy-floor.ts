/**
 * The floor under a cold pull through any mirror on this machine: the bench's pull set copied by
 * skopeo straight from the upstream, through two bare Node.js pass-throughs (node:http piping each
 * upstream response to the client, and undici's pool writing each chunk to the response: no cache,
 * no hash, no disk), through nginx `proxy_pass` (no cache), through nginx `proxy_cache` with an
 * empty cache (stores every body as it relays it, hashes nothing), and through a freshly started, empty
 * ocimirror, in alternating rounds; medians and their
 * ratios to the direct pull. A mirror must do at least what the pass-throughs do (one more process
 * and one more loopback hop for every byte), so their ratio is what no caching work can get under.
 *   node --import tsx scripts/measure-proxy-floor.ts [layerMiB=512] [rounds=3]
 */
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { startOcimirror } from '../bench/ocimirror.ts';
import { startNginxWith } from '../bench/nginx.ts';
import { answers, Cleanup, log, startDaemon, waitFor } from '../bench/proc.ts';
import { medianBy } from '../bench/median.ts';
import { pullSet, type PullResult } from '../bench/pull.ts';
import { PULL_SET, startUpstream } from '../bench/upstream.ts';
import { freePort } from '../test/helpers/ports.ts';

/** Child mode: the bare pass-through, on `port`, to `upstream`; `--undici` fetches with undici instead of node:http. */
if (process.argv[2] === '--pass-through' && process.argv[5] === '--undici') {
  const [upstream, port] = [process.argv[3]!, Number(process.argv[4])];
  const pool = new Pool(upstream, { connections: 16 });
  http
    .createServer((req, res) => {
      const headers = { ...req.headers };
      delete headers.host;
      delete headers.connection;
      pool.request({ path: req.url ?? '/', method: (req.method ?? 'GET') as 'GET', headers: headers as Record<string, string> }).then(
        (upRes) => {
          res.writeHead(upRes.statusCode, upRes.headers as http.OutgoingHttpHeaders);
          upRes.body.on('data', (chunk: Buffer) => {
            if (!res.write(chunk)) {
              upRes.body.pause();
              res.once('drain', () => upRes.body.resume());
            }
          });
          upRes.body.on('end', () => res.end());
          upRes.body.on('error', () => res.destroy());
        },
        () => res.destroy(),
      );
    })
    .listen(port, '127.0.0.1');
} else if (process.argv[2] === '--pass-through') {
  const [upstream, port] = [new URL(process.argv[3]!), Number(process.argv[4])];
  const agent = new http.Agent({ keepAlive: true });
  http
    .createServer((req, res) => {
      const headers = { ...req.headers, host: upstream.host };
      const up = http.request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers, agent }, (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    })
    .listen(port, '127.0.0.1');
} else {
  const layerMiB = Number(process.argv[2] ?? 512);
  const rounds = Number(process.argv[3] ?? 3);
  const cleanup = new Cleanup();
  try {
    const work = await mkdtemp(join(tmpdir(), 'ocimirror-floor-'));
    cleanup.defer('work dir', () => rm(work, { recursive: true, force: true }));
    const up = await startUpstream(layerMiB, cleanup);
    const upstreamUrl = up.log.url;

    /** A pass-through (this script in child mode) on a free port, once it answers. */
    const passThrough = async (name: string, extra: string[]) => {
      const port = await freePort();
      const daemon = startDaemon(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--pass-through', upstreamUrl, String(port), ...extra], join(work, `${name}.log`));
      cleanup.defer(name, () => daemon.stop());
      const host = `127.0.0.1:${port}`;
      await waitFor(name, daemon, () => answers(`http://${host}/v2/`), 20_000, 50);
      return host;
    };
    const nodeHost = await passThrough('node-pass-through', []);
    const undiciHost = await passThrough('undici-pass-through', ['--undici']);

    const upstreamHost = new URL(upstreamUrl).host;
    /** nginx proxying to the upstream, with `extra` directives in its location (and `http` block). */
    const nginxProxy = (name: string, extra: string, httpExtra = '') =>
      startNginxWith(name, (port) => `  upstream registry { server ${upstreamHost}; keepalive 16; }
${httpExtra}
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://registry;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
${extra}
    }
  }`, work, cleanup);
    const nginx = await nginxProxy('nginx-proxy', '      proxy_max_temp_file_size 0;');
    const nginxHost = new URL(nginx.url).host;

    /**
     * nginx as the caching proxies sites run: stores every response in its cache (temp file, then
     * rename) as it relays it, but verifies no digest. A fresh cache directory and nginx per round,
     * so every round is cold.
     */
    const nginxCache = (round: number) =>
      nginxProxy(
        `nginx-cache-${round}`,
        `      proxy_cache blobs;
      proxy_cache_key $request_method$uri;
      proxy_cache_convert_head off;
      proxy_cache_valid 200 7d;
      proxy_cache_lock on;
      proxy_ignore_headers Cache-Control Expires Set-Cookie;`,
        `  proxy_cache_path ${work}/nginx-cache-${round}/cache levels=1:2 keys_zone=blobs:10m max_size=10g inactive=7d use_temp_path=off;`,
      );

    const pull = (host: string, what: string) => (log(`pull: ${what}`), pullSet(host, PULL_SET, up.log, work, 600_000));
    const runs: Record<string, PullResult[]> = { direct: [], 'node pass-through': [], 'undici pass-through': [], 'nginx proxy_pass': [], 'nginx proxy_cache, cold': [], 'ocimirror, cold': [] };
    for (let r = 1; r <= rounds; r++) {
      runs.direct!.push(await pull(up.log.host, 'direct'));
      runs['node pass-through']!.push(await pull(nodeHost, 'node pass-through'));
      runs['undici pass-through']!.push(await pull(undiciHost, 'undici pass-through'));
      runs['nginx proxy_pass']!.push(await pull(nginxHost, 'nginx proxy_pass'));
      const cache = await nginxCache(r);
      runs['nginx proxy_cache, cold']!.push(await pull(new URL(cache.url).host, 'nginx proxy_cache cold'));
      await cache.daemon.stop();
      await rm(join(work, `nginx-cache-${r}`), { recursive: true, force: true });
      const om = await startOcimirror({ name: `ocimirror-${r}`, upstreamUrl, dataDir: join(work, `ocimirror-${r}-data`), workDir: work }, cleanup);
      runs['ocimirror, cold']!.push(await pull(om.host, 'ocimirror cold'));
      await om.daemon.stop();
      await rm(join(work, `ocimirror-${r}-data`), { recursive: true, force: true });
    }
    const direct = medianBy(runs.direct!, (p) => p.wallS).wallS;
    for (const [what, rs] of Object.entries(runs)) {
      const median = medianBy(rs, (p) => p.wallS).wallS;
      process.stdout.write(`${what.padEnd(20)} ${rs.map((x) => x.wallS.toFixed(2)).join(' ')}  median ${median.toFixed(2)} s  ${(median / direct).toFixed(2)}× direct\n`);
    }
  } finally {
    await cleanup.run();
  }
}
