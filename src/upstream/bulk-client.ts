/**
 * @module upstream/bulk-client
 * GET requests for blob bodies on HTTP/1.1 connections of our own, reading into reused slabs
 * ({@link SlabReader}) instead of a fresh buffer per socket read: a cold fill's CPU per byte is
 * what bounds a cold pull on a small machine (bench/README.md "Cold pulls"). Everything else, and
 * the redirects and authentication around these GETs, stays with undici (UpstreamClient).
 *
 * Connections are kept alive per origin while idle, like undici's pool: a pull's blobs follow each
 * other. A request whose kept-alive connection turns out closed before any byte of the answer came
 * back is sent once more on a new connection (RFC 9110 §9.2.2: GET is idempotent).
 */
import net from 'node:net';
import tls from 'node:tls';
import { Readable } from 'node:stream';
import { ResponseParser, type ResponseHead } from './http1-response.ts';
import { releaseChunk, retainChunk, SlabReader } from '../util/read-slabs.ts';

export interface BulkResponse extends ResponseHead {
  /** Chunks are slab views: a consumer done with one may hand it to `releaseChunk`. */
  body: Readable;
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
}

/** Idle connections kept per origin. */
const MAX_IDLE_PER_ORIGIN = 16;
/** Body bytes a response buffers before it stops reading from the socket (the fill pauses at 4 MiB). */
const BODY_HIGH_WATER_MARK = 1 << 20;

/** The connection ended or failed before the answer's first byte. */
class NoAnswerError extends Error {
  override name = 'NoAnswerError';
}

export class BulkClient {
  readonly #idle = new Map<string, Connection[]>();
  readonly #active = new Set<Connection>();
  readonly #bodyIdleTimeout: number;
  readonly #keepAlive: number;
  #closed = false;
  #drained: (() => void) | undefined;

  constructor({ bodyIdleTimeout, keepAlive = 30_000 }: BulkClientOptions) {
    this.#bodyIdleTimeout = bodyIdleTimeout;
    this.#keepAlive = keepAlive;
  }

  async get(url: URL, headers: Record<string, string>, { signal }: BulkGetOptions = {}): Promise<BulkResponse> {
    const request = requestHead(url, headers);
    for (;;) {
      signal?.throwIfAborted();
      if (this.#closed) throw new Error('bulk client closed');
      const idle = this.#takeIdle(url.origin);
      const conn = idle ?? new Connection(url, this.#bodyIdleTimeout);
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

/** One connection; carries one exchange at a time. */
class Connection {
  readonly origin: string;
  readonly #socket: net.Socket;
  readonly #slabs = new SlabReader();
  readonly #bodyIdleTimeout: number;
  #exchange: Exchange | undefined;
  #reusable = false;
  #onIdleClose: (() => void) | undefined;

  constructor(url: URL, bodyIdleTimeout: number) {
    this.origin = url.origin;
    this.#bodyIdleTimeout = bodyIdleTimeout;
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    const onread = { buffer: () => this.#slabs.target(), callback: (n: number) => this.#onRead(n) };
    this.#socket =
      url.protocol === 'https:'
        ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host, ALPNProtocols: ['http/1.1'], onread } as tls.ConnectionOptions)
        : net.connect({ host, port, onread } as net.NetConnectOpts);
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

  #onRead(n: number): boolean {
    const view = this.#slabs.took(n);
    const exchange = this.#exchange;
    try {
      // Bytes nobody asked for (we never pipeline) make the connection unusable.
      if (!exchange) {
        this.destroy();
        return false;
      }
      return exchange.read(view);
    } finally {
      releaseChunk(view);
    }
  }

  #ended(err: Error | undefined): void {
    this.#socket.destroy();
    this.#slabs.close();
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
    this.#resolve({ ...head, body: this.#body });
  }

  #chunk(chunk: Buffer): void {
    if (chunk.length === 0) return;
    retainChunk(chunk);
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

/** The request head; refuses header text that would split it (CR, LF, NUL). */
function requestHead(url: URL, headers: Record<string, string>): string {
  let head = `GET ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (/[\r\n\0:]/.test(name) || /[\r\n\0]/.test(value)) throw new TypeError(`Expected a header without CR, LF or NUL, got '${name}'`);
    head += `${name}: ${value}\r\n`;
  }
  return `${head}\r\n`;
}
