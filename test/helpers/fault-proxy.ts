/**
 * @module test/helpers/fault-proxy
 * A streaming HTTP forwarder put between the code under test and an upstream registry, so integration
 * tests can count what reaches the upstream (proving caching) and inject faults (proving recovery).
 *
 * Host: the client's Host header is forwarded unchanged. docker-registry builds absolute URLs (upload
 * `Location`s) from Host, so they name this proxy and follow-up requests come back through it to be
 * counted; rewriting Host to the upstream would send them around it. Location is forwarded as-is.
 *
 * Faults apply to requests that arrive after they are set, until `clear()` or until `times` is used up.
 * A request gets at most one fault: the earliest-set one that matches.
 */
import { createServer, request as httpRequest, Agent, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';

export interface RequestFilter {
  method?: string;
  pathIncludes?: string;
  pathRegex?: RegExp;
}

/** Which requests a fault hits, and how many of them (default: all). */
export interface FaultMatch extends RequestFilter {
  times?: number;
}

export type FaultKind = 'cut' | 'stall' | 'corrupt' | 'down' | 'status' | 'delay' | 'throttle';

export interface ProxyRecord {
  method: string;
  /** Path with query, as the client sent it. */
  path: string;
  /** 0 until response headers are sent; 502 if the upstream could not be reached. */
  status: number;
  /** Response body bytes written to the client so far. */
  bytesOut: number;
  fault?: FaultKind;
}

export interface FaultProxy {
  url: string;
  /** `127.0.0.1:<port>` */
  host: string;
  port: number;
  readonly records: readonly ProxyRecord[];
  count(filter?: RequestFilter): number;
  bytes(filter?: RequestFilter): number;
  /** Forgets the records (faults stay). */
  reset(): void;
  /** Sends the headers and `bytes` body bytes, then closes the connection. */
  cutAfter(bytes: number, match?: FaultMatch): void;
  /** Sends the headers and `bytes` body bytes, then nothing, holding the connection open until the client gives up. */
  stallAfter(bytes: number, match?: FaultMatch): void;
  /**
   * Flips the first byte of every body chunk: same length, different digest. With `bytesPerSecond`
   * the body is also forwarded at about that rate, so clients can join the corrupt fill in progress.
   */
  corrupt(match?: FaultMatch, opts?: { bytesPerSecond?: number }): void;
  /**
   * With no match, stops listening and drops open connections, so clients get ECONNREFUSED until `up()`.
   * With a match, destroys the connection of each matching request before any response.
   */
  down(match?: FaultMatch): Promise<void>;
  up(): Promise<void>;
  /** Answers with `code`, `headers` and a registry error body, without asking the upstream. */
  status(code: number, headers?: Record<string, string>, match?: FaultMatch): void;
  /** Waits `ms` before forwarding, so the response headers come at least that late. */
  delay(ms: number, match?: FaultMatch): void;
  /** Forwards the body at about `bytesPerSecond`, so a fill stays in progress long enough to act on it. */
  throttle(bytesPerSecond: number, match?: FaultMatch): void;
  /** Removes every fault; a listener stopped by `down()` stays down until `up()`. */
  clear(): void;
  stop(): Promise<void>;
}

type FaultSpec =
  | { kind: 'cut' | 'stall'; bytes: number }
  | { kind: 'corrupt'; bytesPerSecond?: number }
  | { kind: 'down' }
  | { kind: 'status'; code: number; headers: Record<string, string> }
  | { kind: 'delay'; ms: number }
  | { kind: 'throttle'; bytesPerSecond: number };
type Fault = FaultSpec & { match: FaultMatch; left: number };

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'upgrade']);

const STATUS_CODES: Record<number, string> = { 401: 'UNAUTHORIZED', 404: 'NOT_FOUND', 429: 'TOOMANYREQUESTS', 503: 'UNAVAILABLE' };

function matches(rec: ProxyRecord, f: RequestFilter): boolean {
  return (!f.method || f.method.toUpperCase() === rec.method)
    && (!f.pathIncludes || rec.path.includes(f.pathIncludes))
    && (!f.pathRegex || f.pathRegex.test(rec.path));
}

function endToEnd(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  return Object.fromEntries(Object.entries(headers).filter(([k]) => !HOP_BY_HOP.has(k)));
}

export async function startFaultProxy(upstreamUrl: string): Promise<FaultProxy> {
  const upstream = new URL(upstreamUrl);
  const agent = new Agent({ keepAlive: true });
  let records: ProxyRecord[] = [];
  let faults: Fault[] = [];

  const take = (rec: ProxyRecord): Fault | undefined => {
    const fault = faults.find((f) => f.left > 0 && matches(rec, f.match));
    if (fault) {
      fault.left--;
      rec.fault = fault.kind;
    }
    return fault;
  };

  const forward = (req: IncomingMessage, res: ServerResponse, rec: ProxyRecord, fault: Fault | undefined) => {
    const upReq = httpRequest({
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: endToEnd(req.headers),
      agent,
    });
    upReq.on('response', (upRes) => {
      rec.status = upRes.statusCode ?? 0;
      res.writeHead(rec.status, endToEnd(upRes.headers));
      const cut = fault?.kind === 'cut' || fault?.kind === 'stall' ? fault.bytes : Infinity;
      const rate = fault?.kind === 'throttle' || fault?.kind === 'corrupt' ? fault.bytesPerSecond : undefined;
      if (cut === 0) {
        upRes.destroy();
        res.flushHeaders();
        // A stall leaves the connection open and silent; a cut sends FIN, not RST, so the client
        // reads what was sent before it sees the close.
        if (fault?.kind !== 'stall') res.socket?.end();
        return;
      }
      upRes.on('data', (chunk: Buffer) => {
        const out = chunk.subarray(0, Math.min(chunk.length, cut - rec.bytesOut));
        if (fault?.kind === 'corrupt' && out.length > 0) out[0] = out[0]! ^ 0xff;
        rec.bytesOut += out.length;
        if (rec.bytesOut >= cut) {
          upRes.destroy();
          const socket = res.socket;
          if (fault?.kind === 'stall') res.write(out);
          else res.write(out, () => socket?.destroy());
        } else if (rate !== undefined) {
          upRes.pause();
          res.write(out);
          setTimeout(() => upRes.resume(), (out.length / rate) * 1000);
        } else if (!res.write(out)) {
          upRes.pause();
        }
      });
      if (rate === undefined) res.on('drain', () => upRes.resume());
      upRes.on('end', () => res.end());
      upRes.on('error', () => res.destroy());
    });
    upReq.on('error', (err) => {
      if (res.headersSent) return void res.destroy();
      rec.status = 502;
      res.writeHead(502, { 'content-type': 'text/plain' }).end(`fault proxy: upstream failed: ${err.message}`);
    });
    res.on('close', () => {
      if (!res.writableFinished) upReq.destroy();
    });
    req.pipe(upReq);
  };

  const server = createServer((req, res) => {
    const rec: ProxyRecord = { method: req.method ?? 'GET', path: req.url ?? '/', status: 0, bytesOut: 0 };
    records.push(rec);
    const fault = take(rec);
    switch (fault?.kind) {
      case 'down':
        return void req.socket.destroy();
      case 'status': {
        const body = JSON.stringify({ errors: [{ code: STATUS_CODES[fault.code] ?? 'UNKNOWN', message: 'injected by fault proxy' }] });
        req.resume();
        rec.status = fault.code;
        rec.bytesOut = req.method === 'HEAD' ? 0 : Buffer.byteLength(body);
        return void res.writeHead(fault.code, { 'content-type': 'application/json', ...fault.headers }).end(body);
      }
      case 'delay': {
        const timer = setTimeout(() => forward(req, res, rec, fault), fault.ms);
        return void res.on('close', () => clearTimeout(timer));
      }
      default:
        forward(req, res, rec, fault);
    }
  });

  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject).listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        const addr = server.address();
        resolve(typeof addr === 'object' && addr ? addr.port : port);
      });
    });
  const close = () => {
    if (!server.listening) return Promise.resolve();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    return closed;
  };
  const port = await listen(0);
  const add = (spec: FaultSpec, match: FaultMatch = {}) => void faults.push({ ...spec, match, left: match.times ?? Infinity });

  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    get records() {
      return records;
    },
    count: (filter = {}) => records.filter((r) => matches(r, filter)).length,
    bytes: (filter = {}) => records.filter((r) => matches(r, filter)).reduce((n, r) => n + r.bytesOut, 0),
    reset: () => void (records = []),
    cutAfter: (bytes, match) => add({ kind: 'cut', bytes }, match),
    stallAfter: (bytes, match) => add({ kind: 'stall', bytes }, match),
    corrupt: (match, opts = {}) => add({ kind: 'corrupt', ...opts }, match),
    down: async (match) => (match ? add({ kind: 'down' }, match) : close()),
    up: async () => {
      if (!server.listening) await listen(port);
    },
    status: (code, headers = {}, match) => add({ kind: 'status', code, headers }, match),
    delay: (ms, match) => add({ kind: 'delay', ms }, match),
    throttle: (bytesPerSecond, match) => add({ kind: 'throttle', bytesPerSecond }, match),
    clear: () => void (faults = []),
    async stop() {
      await close();
      agent.destroy();
    },
  };
}
