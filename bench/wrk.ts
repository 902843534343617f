/**
 * @module bench/wrk
 * Runs `wrk --latency` against one path, or round-robin over many paths (a Lua `request` hook), and parses
 * requests/s, p50/p99 and the failures wrk counts.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mustRun } from './proc.ts';

export interface WrkOptions {
  seconds: number;
  connections: number;
  threads: number;
  headers?: Record<string, string>;
  /** Requests cycle over these paths (absolute, on the URL's origin); a Lua script is written to `tmp`. */
  paths?: string[];
  tmp: string;
}

export interface WrkResult {
  requestsPerS: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  /** Non-2xx/3xx responses plus socket errors: any of these makes the numbers meaningless. */
  failures: number;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

function latencyMs(out: string, pct: string): number {
  const m = new RegExp(`^\\s+${pct}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
  if (!m) throw new Error(`wrk output has no ${pct}% latency:\n${out}`);
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

let scripts = 0;

export async function wrk(url: string, o: WrkOptions): Promise<WrkResult> {
  const args = ['--latency', '-t', String(o.threads), '-c', String(o.connections), '-d', `${o.seconds}s`, '--timeout', '10s'];
  for (const [k, v] of Object.entries(o.headers ?? {})) args.push('-H', `${k}: ${v}`);
  if (o.paths) {
    const script = join(o.tmp, `wrk-${scripts++}.lua`);
    await writeFile(script, `local paths = {\n${o.paths.map((p) => `  ${JSON.stringify(p)},`).join('\n')}\n}
local i = 0
request = function()
  i = i + 1
  return wrk.format(nil, paths[(i % #paths) + 1])
end
`);
    args.push('-s', script);
  }
  const { stdout } = await mustRun('wrk', [...args, url], { timeoutMs: (o.seconds + 30) * 1000 });
  const num = (re: RegExp) => Number(re.exec(stdout)?.[1] ?? NaN);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  return {
    requestsPerS: num(/Requests\/sec:\s+([\d.]+)/),
    p50Ms: latencyMs(stdout, '50'),
    p99Ms: latencyMs(stdout, '99'),
    requests: num(/(\d+) requests in/),
    failures: (Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0))
      + (socketErrors ? socketErrors.slice(1).reduce((a, b) => a + Number(b), 0) : 0),
  };
}
