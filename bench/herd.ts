/**
 * @module bench/herd
 * Phase 5: N clients ask for one uncached blob at the same instant (bench/together.ts releases them). Each
 * client is `curl URL | sha256sum`: curl reports its own time to first byte, sha256sum proves the bytes.
 * The clients run under `nice -n 10`: they stand for N nodes, each with its own CPU, not for 2N busy processes
 * taking the 2 cores from the server under test (a one-threaded server got ~1/65 of the CPU and its fill of
 * the blob took 36 s instead of ~2 s). Both mirrors are measured the same way.
 */
import type { UpstreamLog } from './access-log.ts';
import { runTogether } from './together.ts';
import { settled } from './upstream.ts';

export interface HerdResult {
  clients: number;
  /** GETs of the blob that reached the upstream. */
  upstreamGets: number;
  upstreamBytes: number;
  ttfbMedianS: number;
  ttfbMaxS: number;
  /** Release → last client done. */
  wallS: number;
  sha256Ok: number;
  /** One line per client that failed (HTTP status, curl error, wrong digest). */
  failures: string[];
}

/**
 * curl is already running when the herd is released: it reads its URL as config from stdin (`-K -`), so the
 * release starts requests, not 32 process start-ups (which on 2 cores spread the requests over most of a
 * second, and counted towards nothing the server did).
 */
const CLIENT = 'echo ready >&2; set -o pipefail; curl -sS --fail -w "%{stderr}ttfb=%{time_starttransfer} code=%{http_code}\\n" -K - | sha256sum';
/**
 * `--norc`: Node gives a child's stdin as a socketpair, and bash, seeing a socket, takes itself for a remote
 * shell and sources ~/.bashrc even with -c. Here that ran `pyenv init`, whose rehash lock serialised 32 shells
 * with sleeps: the herd's requests arrived over 38 s and the release went out on the 15 s barrier timeout.
 */
const SHELL_ARGS = ['--norc', '--noprofile', '-c'];
/** Time for the last announced curl to load and block on stdin before the release. */
const CURL_SETTLE_MS = 1000;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

export async function herd(url: string, digest: string, clients: number, upstream: UpstreamLog, timeoutMs: number): Promise<HerdResult> {
  upstream.reset();
  const { results, releasedAt } = await runTogether(clients, 'nice', ['-n', '10', 'bash', ...SHELL_ARGS, CLIENT], timeoutMs, {
    release: `url = "${url}"\n`,
    settleMs: CURL_SETTLE_MS,
  });
  const wallS = (performance.now() - releasedAt) / 1000;
  await settled(upstream);

  const ttfb: number[] = [];
  const failures: string[] = [];
  let sha256Ok = 0;
  results.forEach((r, i) => {
    const t = /ttfb=([\d.]+) code=(\d+)/.exec(r.stderr);
    if (t) ttfb.push(Number(t[1]));
    const hash = `sha256:${r.stdout.split(' ')[0]}`;
    if (r.code === 0 && t?.[2] === '200' && hash === digest) sha256Ok++;
    else failures.push(`client ${i}: exit ${r.code}, HTTP ${t?.[2]}, ${hash.slice(0, 19)}…: ${r.stderr.trim().slice(-200)}`);
  });
  const gets = { method: 'GET', pathIncludes: digest };
  return {
    clients,
    upstreamGets: upstream.count(gets),
    upstreamBytes: upstream.bytes(gets),
    ttfbMedianS: ttfb.length ? median(ttfb) : NaN,
    ttfbMaxS: ttfb.length ? Math.max(...ttfb) : NaN,
    wallS,
    sha256Ok,
    failures,
  };
}
