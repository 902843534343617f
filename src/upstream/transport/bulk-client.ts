/**
 * @module upstream/transport/bulk-client
 * GET requests for blob bodies on HTTP/1.1 connections of our own, reading into reused slabs
 * ({@link SlabReader}) instead of a fresh buffer per socket read: a cold fill's CPU per byte is
 * what bounds a cold pull on a small machine (bench/README.md "Cold pulls"). Everything else, and
 * the redirects and authentication around these GETs, stays with undici (UpstreamClient).
 *
 * Connections are kept alive per origin while idle, like undici's pool: a pull's blobs follow each
 * other. A request whose kept-alive connection turns out closed before any byte of the answer came
 * back is sent once more on a new connection (RFC 9110 §9.2.2: GET is idempotent).
 *
 * Through an egress proxy ({@link ProxyHop}), an http target is asked for in absolute form on a
 * connection to the proxy (still read into slabs), an https one through a CONNECT tunnel. Node's TLS
 * cannot read a tunnelled socket into our buffers (`onread` is ignored with `socket`), so a tunnel's
 * body arrives in Node's own buffers: correct, only without the slab saving.
 */
import net from 'node:net';
import tls from 'node:tls';
import { Readable } from 'node:stream';
import type { ProxyHop } from './egress.ts';
import { ResponseParser, type ResponseHead } from './http1-response.ts';
import { ProxyRefusedError } from './transport-error.ts';
import { SlabPool, type SlabReader } from '../../util/read-slabs.ts';

export interface BulkResponse extends ResponseHead {
  /** Chunks are slab views: a consumer done with one may hand it to `release`. */
  body: Readable;
  /** Gives a body chunk back to the read slabs once its bytes are stored (never one still in use). */
  release: (chunk: Buffer) => void;
}

export interface BulkGetOptions {
  /**
   * Aborts the request, including a body still streaming. It is also the only bound on connecting and
   * waiting for the head: UpstreamClient's per-hop timer aborts it, as it does undici's requests.
   */
  signal?: AbortSignal;
}

export interface BulkClientOptions {
  /** The longest pause between two body reads before the body fails. */
  bodyIdleTimeout: number;
  /** How long an idle connection is kept for the next request. */
  keepAlive?: number;
  /** The egress proxy for a request to a URL; undefined (or no function) = direct. */
  proxyFor?: (url: URL) => ProxyHop | undefined;
  /** Where bodies are read into (shared by every client of the process). */
  slabs?: SlabPool;
}

/** Idle connections kept per origin. */
const MAX_IDLE_PER_ORIGIN = 16;
/** Body bytes a response buffers before it stops reading from the socket (the fill pauses at 4 MiB). */
const BODY_HIGH_WATER_MARK = 1 << 20;
/** A proxy's answer to CONNECT is a status line and a few headers; more than this is not one. */
const MAX_CONNECT_ANSWER = 16 * 1024;

/** The connection ended or failed before the answer's first byte. */
class NoAnswerError extends Error {
  override name = 'NoAnswerError';
}

export class BulkClient {
  readonly #idle = new Map<string, Connection[]>();
  readonly #active = new Set<Connection>();
  readonly #bodyIdleTimeout: number;
  readonly #keepAlive: number;
  readonly #proxyFor: (url: URL) => ProxyHop | undefined;
  readonly #slabs: SlabPool;
  #closed = false;
  #drained: (() => void) | undefined;

  constructor({ bodyIdleTimeout, keepAlive = 30_000, proxyFor = () => undefined, slabs = new SlabPool() }: BulkClientOptions) {
    this.#bodyIdleTimeout = bodyIdleTimeout;
    this.#slabs = slabs;
    this.#keepAlive = keepAlive;
    this.#proxyFor = proxyFor;
  }

  async get(url: URL, headers: Record<string, string>, { signal }: BulkGetOptions = {}): Promise<BulkResponse> {
    const hop = this.#proxyFor(url);
    // An http target through a proxy: absolute form, and the proxy's credentials on every request.
    const viaProxy = hop !== undefined && url.protocol === 'http:';
    const request = requestHead(url, headers, viaProxy ? hop : undefined);
    // Connections are to a proxy for one target origin, or straight to the origin.
    const key = hop ? `${hop.url.href} ${url.origin}` : url.origin;
    for (;;) {
      signal?.throwIfAborted();
      if (this.#closed) throw new Error('bulk client closed');
      const idle = this.#takeIdle(key);
      let conn: Connection;
      if (idle) conn = idle;
      else if (hop === undefined) conn = new Connection(key, { url }, this.#bodyIdleTimeout, this.#slabs);
      else if (viaProxy) conn = new Connection(key, { url: hop.url }, this.#bodyIdleTimeout, this.#slabs);
      else conn = new Connection(key, { socket: await openTunnel(hop, url, signal) }, this.#bodyIdleTimeout, this.#slabs);
      if (this.#closed) {
        conn.destroy();
        throw new Error('bulk client closed');
      }
      this.#active.add(conn);
      try {
        // A failed exchange has already handed its connection back through #done.
        return await conn.exchange(request, signal, () => this.#done(conn));
      } catch (err) {
        // A kept-alive connection the server closed meanwhile: retry on a fresh one.
        if (idle && err instanceof NoAnswerError && !signal?.aborted) continue;
        throw err instanceof NoAnswerError ? (err.cause ?? err) : err;
      }
    }
  }

  /** Closes idle connections; resolves once the responses in flight are done. */
  close(): Promise<void> {
    this.#closed = true;
    for (const list of this.#idle.values()) for (const conn of list) conn.destroy();
    this.#idle.clear();
    if (this.#active.size === 0) return Promise.resolve();
    return new Promise((resolve) => (this.#drained = resolve));
  }

  /** Destroys every connection, ending bodies in flight with an error. */
  destroy(): void {
    this.#closed = true;
    for (const conn of this.#active) conn.destroy(new Error('upstream client closed'));
    void this.close();
  }

  /** A response ended: keep its connection for the next request, if it may carry one. */
  #done(conn: Connection): void {
    this.#active.delete(conn);
    if (!this.#closed && conn.reusable) {
      const list = this.#idle.get(conn.origin) ?? [];
      if (list.length < MAX_IDLE_PER_ORIGIN) {
        list.push(conn);
        this.#idle.set(conn.origin, list);
        conn.idle(this.#keepAlive, () => this.#forget(conn));
      } else conn.destroy();
    } else conn.destroy();
    this.#checkDrained();
  }

  #takeIdle(origin: string): Connection | undefined {
    const list = this.#idle.get(origin);
    while (list && list.length > 0) {
      const conn = list.pop()!;
      if (conn.usable) return conn;
    }
    return undefined;
  }

  #forget(conn: Connection): void {
    this.#active.delete(conn);
    const list = this.#idle.get(conn.origin);
    const i = list?.indexOf(conn) ?? -1;
    if (i >= 0) list!.splice(i, 1);
    conn.destroy();
    this.#checkDrained();
  }

  #checkDrained(): void {
    if (this.#closed && this.#active.size === 0) this.#drained?.();
  }
}

/**
 * One connection; carries one exchange at a time. Opened to `url` (read into slabs), or on a socket
 * that is already open (a CONNECT tunnel, read through 'data' events).
 */
class Connection {
  /** The idle pool's key. */
  readonly origin: string;
  readonly #socket: net.Socket;
  /** Read slabs, for a socket opened here (a tunnel's TLS socket cannot read into them). */
  readonly #slabs: SlabReader | undefined;
  /** The pool the reads' slabs come from, to retain and release body chunks. */
  readonly pool: SlabPool;
  readonly #bodyIdleTimeout: number;
  #exchange: Exchange | undefined;
  #reusable = false;
  #onIdleClose: (() => void) | undefined;

  constructor(key: string, to: { url: URL } | { socket: net.Socket }, bodyIdleTimeout: number, pool: SlabPool) {
    this.origin = key;
    this.pool = pool;
    this.#bodyIdleTimeout = bodyIdleTimeout;
    if ('socket' in to) {
      this.#socket = to.socket;
      this.#socket.on('data', (chunk: Buffer) => {
        if (!this.#onChunk(chunk)) this.#socket.pause();
      });
    } else {
      const slabs = pool.reader();
      this.#slabs = slabs;
      this.#socket = connect(to.url, { buffer: () => slabs.target(), callback: (n: number) => this.#onRead(slabs, n) });
    }
    this.#socket.setNoDelay(true);
    this.#socket.on('error', (err) => this.#ended(err));
    this.#socket.on('close', () => this.#ended(undefined));
    // Only ever armed while idle (keep-alive) or during a body (its idle timeout).
    this.#socket.on('timeout', () => this.#socket.destroy(new Error(`no bytes for ${this.#socket.timeout} ms`)));
  }

  get reusable(): boolean {
    return this.#reusable && !this.#socket.destroyed;
  }

  /** Idle and open. */
  get usable(): boolean {
    return this.#exchange === undefined && !this.#socket.destroyed;
  }

  exchange(head: string, signal: AbortSignal | undefined, done: () => void): Promise<BulkResponse> {
    this.#reusable = false;
    this.#onIdleClose = undefined;
    this.#socket.setTimeout(0);
    return new Promise<BulkResponse>((resolve, reject) => {
      this.#exchange = new Exchange(this, resolve, reject, done, signal);
      this.#socket.write(head);
      this.resume();
    });
  }

  /** The body may take more: read on. */
  resume(): void {
    if (!this.#socket.destroyed) this.#socket.resume();
  }

  /** Keeps the connection for the next request; `onClose` when it closes or times out meanwhile. */
  idle(keepAlive: number, onClose: () => void): void {
    this.#onIdleClose = onClose;
    this.#socket.setTimeout(keepAlive);
  }

  /** The head arrived: from now on the body's own idle timeout applies. */
  bodyStarted(): void {
    this.#socket.setTimeout(this.#bodyIdleTimeout);
  }

  /** The response ended on a parser that allows another request. */
  finished(reusable: boolean): void {
    this.#reusable = reusable;
    this.#exchange = undefined;
    this.#socket.setTimeout(0);
  }

  destroy(err?: Error): void {
    this.#socket.destroy(err);
  }

  #onRead(slabs: SlabReader, n: number): boolean {
    const view = slabs.took(n);
    try {
      return this.#onChunk(view);
    } finally {
      this.pool.release(view);
    }
  }

  #onChunk(chunk: Buffer): boolean {
    const exchange = this.#exchange;
    // Bytes nobody asked for (we never pipeline) make the connection unusable.
    if (!exchange) {
      this.destroy();
      return false;
    }
    return exchange.read(chunk);
  }

  #ended(err: Error | undefined): void {
    this.#socket.destroy();
    this.#slabs?.close();
    this.#exchange?.closed(err);
    this.#exchange = undefined;
    const onIdleClose = this.#onIdleClose;
    this.#onIdleClose = undefined;
    onIdleClose?.();
  }
}

/** One request and its response on a connection. */
class Exchange {
  readonly #conn: Connection;
  readonly #parser: ResponseParser;
  readonly #resolve: (res: BulkResponse) => void;
  readonly #reject: (err: unknown) => void;
  readonly #done: () => void;
  readonly #signal: AbortSignal | undefined;
  /** Set once the head arrived (the request's promise is then resolved). */
  #body: BulkBody | undefined;
  #answered = false;
  #over = false;
  #wantMore = true;

  constructor(conn: Connection, resolve: (res: BulkResponse) => void, reject: (err: unknown) => void, done: () => void, signal: AbortSignal | undefined) {
    this.#conn = conn;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#done = done;
    this.#signal = signal;
    this.#parser = new ResponseParser({
      head: (head) => this.#head(head),
      body: (chunk) => this.#chunk(chunk),
      end: () => this.#end(),
    });
    signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** Bytes from the socket; returns false to stop reading until the body wants more. */
  read(view: Buffer): boolean {
    this.#answered = true;
    this.#wantMore = true;
    try {
      const extra = this.#parser.feed(view);
      if (extra > 0) this.#conn.destroy();
    } catch (err) {
      this.fail(err);
      return false;
    }
    return this.#wantMore;
  }

  /** The connection closed or failed. */
  closed(err: Error | undefined): void {
    if (this.#over) return;
    if (err === undefined) {
      try {
        this.#parser.eof();
        return;
      } catch (eof) {
        err = eof as Error;
      }
    }
    this.fail(this.#answered ? err : new NoAnswerError(err.message, { cause: err }));
  }

  fail(err: unknown): void {
    if (!this.#stop()) return;
    if (this.#body) this.#body.destroy(err as Error);
    else this.#reject(err);
  }

  /** The consumer destroyed the body before its end: the rest of it is not wanted. */
  abandon(): void {
    this.#stop();
  }

  /** Ends the exchange without its response's end: the connection is closed. False if already over. */
  #stop(): boolean {
    if (this.#over) return false;
    this.#over = true;
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#conn.destroy();
    this.#done();
    return true;
  }

  #head(head: ResponseHead): void {
    this.#body = new BulkBody(this);
    this.#conn.bodyStarted();
    const pool = this.#conn.pool;
    this.#resolve({ ...head, body: this.#body, release: (chunk) => pool.release(chunk) });
  }

  #chunk(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#conn.pool.retain(chunk);
    if (!this.#body!.push(chunk)) this.#wantMore = false;
  }

  #end(): void {
    if (this.#over) return;
    this.#over = true;
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#conn.finished(this.#parser.reusable);
    this.#body!.push(null);
    this.#done();
  }

  readonly #onAbort = (): void => {
    this.fail(this.#signal?.reason ?? new Error('aborted'));
  };

  /** The body wants more bytes. */
  resume(): void {
    if (!this.#over) this.#conn.resume();
  }
}

class BulkBody extends Readable {
  readonly #exchange: Exchange;

  constructor(exchange: Exchange) {
    super({ highWaterMark: BODY_HIGH_WATER_MARK });
    this.#exchange = exchange;
  }

  override _read(): void {
    this.#exchange.resume();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#exchange.abandon();
    callback(err);
  }
}

/** A socket to `url`'s host (TLS for https, with SNI and HTTP/1.1 by ALPN), reading through `onread`. */
function connect(url: URL, onread?: unknown): net.Socket {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  return url.protocol === 'https:'
    ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host, ALPNProtocols: ['http/1.1'], ...(onread ? { onread } : {}) } as tls.ConnectionOptions)
    : net.connect({ host, port, ...(onread ? { onread } : {}) } as net.NetConnectOpts);
}

/**
 * A TLS connection to `target` through `hop`'s CONNECT tunnel (RFC 9110 §9.3.6). Rejects with
 * ProxyRefusedError when the proxy answers anything but 2xx, and with the signal's reason on abort
 * (the caller's per-hop timer bounds the whole setup).
 */
function openTunnel(hop: ProxyHop, target: URL, signal: AbortSignal | undefined): Promise<tls.TLSSocket> {
  signal?.throwIfAborted();
  const authority = `${target.hostname}:${target.port || 443}`;
  const host = target.hostname.replace(/^\[(.*)\]$/, '$1');
  return new Promise((resolve, reject) => {
    const raw = connect(hop.url);
    let answer = Buffer.alloc(0);
    const done = () => {
      raw.off('data', onData);
      raw.off('error', fail);
      raw.off('close', onClose);
      signal?.removeEventListener('abort', onAbort);
    };
    const fail = (err: unknown) => {
      done();
      raw.destroy();
      reject(err);
    };
    const onClose = () => fail(new Error('the egress proxy closed the connection before answering CONNECT'));
    const onAbort = () => fail(signal?.reason);
    const onData = (chunk: Buffer) => {
      answer = Buffer.concat([answer, chunk]);
      const end = answer.indexOf('\r\n\r\n');
      if (end < 0) {
        if (answer.length > MAX_CONNECT_ANSWER) fail(new Error('the egress proxy sent an oversized answer to CONNECT'));
        return;
      }
      const status = /^HTTP\/1\.[01] (\d{3})[ \r]/.exec(answer.subarray(0, end + 2).toString('latin1'))?.[1];
      if (status === undefined) return fail(new Error('the egress proxy sent an invalid answer to CONNECT'));
      if (!status.startsWith('2')) return fail(new ProxyRefusedError(Number(status)));
      // The target speaks only after our TLS hello: bytes already here are not from it.
      if (answer.length > end + 4) return fail(new Error('the egress proxy sent bytes after its answer to CONNECT'));
      done();
      // From here the TLS socket on top reports the connection's failures.
      raw.on('error', () => {});
      resolve(tls.connect({ socket: raw, servername: net.isIP(host) ? undefined : host, ALPNProtocols: ['http/1.1'] }));
    };
    raw.on('data', onData);
    raw.on('error', fail);
    raw.on('close', onClose);
    signal?.addEventListener('abort', onAbort, { once: true });
    const auth = hop.authorization !== undefined ? `proxy-authorization: ${hop.authorization}\r\n` : '';
    raw.write(`CONNECT ${authority} HTTP/1.1\r\nhost: ${authority}\r\n${auth}\r\n`);
  });
}

/**
 * The request head; refuses header text that would split it (CR, LF, NUL). Through a proxy (`hop`),
 * the target is in absolute form and the proxy's credentials go along.
 */
function requestHead(url: URL, headers: Record<string, string>, hop?: ProxyHop): string {
  const target = hop ? `${url.origin}${url.pathname}${url.search}` : `${url.pathname}${url.search}`;
  let head = `GET ${target} HTTP/1.1\r\nhost: ${url.host}\r\n`;
  if (hop?.authorization !== undefined) head += `proxy-authorization: ${hop.authorization}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (/[\r\n\0:]/.test(name) || /[\r\n\0]/.test(value)) throw new TypeError(`Expected a header without CR, LF or NUL, got '${name}'`);
    head += `${name}: ${value}\r\n`;
  }
  return `${head}\r\n`;
}
