/**
 * @module bench/access-log
 * Upstream requests and bytes as the upstream itself logged them: docker-registry writes one access line
 * per response (combined log format, `"GET /v2/... HTTP/1.1" 200 <body bytes>`) when the response ends.
 * The bench reads the lines appended since the last `reset()`, so nothing sits between a mirror and the
 * upstream: a counting forwarder in the path cost ~8 ms of CPU per MB here and slowed every phase it carried.
 */
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import type { RegistryServer } from '../test/helpers/registry-server.ts';

export interface RequestFilter {
  method?: string;
  pathIncludes?: string;
}

export interface AccessRecord {
  method: string;
  path: string;
  status: number;
  bytes: number;
}

const ACCESS_LINE = /^\S+ \S+ \S+ \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-)/;

export class UpstreamLog {
  readonly url: string;
  readonly host: string;
  readonly #file: string;
  #offset = 0;

  constructor(registry: RegistryServer) {
    this.url = registry.url;
    this.host = registry.host;
    this.#file = registry.logFile;
    this.reset();
  }

  /** Forgets what was logged so far. */
  reset(): void {
    this.#offset = statSync(this.#file).size;
  }

  /** Access lines logged since the last reset. */
  records(): AccessRecord[] {
    const fd = openSync(this.#file, 'r');
    try {
      const end = fstatSync(fd).size;
      const buf = Buffer.alloc(Math.max(0, end - this.#offset));
      let got = 0;
      while (got < buf.length) {
        const n = readSync(fd, buf, got, buf.length - got, this.#offset + got);
        if (n === 0) break;
        got += n;
      }
      const text = buf.subarray(0, got).toString('utf8');
      // A line still being written has no newline yet: it belongs to the next read.
      const complete = text.slice(0, text.lastIndexOf('\n') + 1);
      const out: AccessRecord[] = [];
      for (const line of complete.split('\n')) {
        const m = ACCESS_LINE.exec(line);
        if (m) out.push({ method: m[1]!, path: m[2]!, status: Number(m[3]), bytes: m[4] === '-' ? 0 : Number(m[4]) });
      }
      return out;
    } finally {
      closeSync(fd);
    }
  }

  count(filter: RequestFilter = {}): number {
    return this.records().filter((r) => matches(r, filter)).length;
  }

  bytes(filter: RequestFilter = {}): number {
    return this.records().filter((r) => matches(r, filter)).reduce((n, r) => n + r.bytes, 0);
  }

}

function matches(r: AccessRecord, f: RequestFilter): boolean {
  return (!f.method || f.method.toUpperCase() === r.method) && (!f.pathIncludes || r.path.includes(f.pathIncludes));
}
