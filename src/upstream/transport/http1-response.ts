/**
 * @module upstream/transport/http1-response
 * A streaming parser for one HTTP/1.1 response (RFC 9112), for the bulk client's blob bodies: the
 * head is copied out (it is small), body bytes are handed on as views of the buffers fed in, never
 * copied. Framing follows RFC 9112 §6.3: no body for HEAD, 1xx, 204 and 304; chunked when the last
 * transfer coding is chunked; else Content-Length; else the body runs until the connection closes.
 */

export interface ResponseHead {
  status: number;
  /** Lower-case names; repeated fields joined with ', ' (RFC 9110 §5.3). */
  headers: Record<string, string | undefined>;
}

export interface ResponseSink {
  head(head: ResponseHead): void;
  /** A view of bytes fed in: valid until the caller of feed() reuses that buffer. */
  body(chunk: Buffer): void;
  end(): void;
}

/** The response broke HTTP/1.1's grammar or framing; the connection is unusable. */
export class ResponseSyntaxError extends Error {
  override name = 'ResponseSyntaxError';
}

/** A head larger than this is refused (undici's default max header size is 16 KiB; CDNs stay far below). */
const MAX_HEAD_BYTES = 64 << 10;
/** A chunk-size line (size plus extensions) or trailer line longer than this is refused. */
const MAX_LINE_BYTES = 4 << 10;

type State = 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'chunk-end' | 'trailers' | 'close' | 'done';

export class ResponseParser {
  readonly #sink: ResponseSink;
  readonly #method: 'GET' | 'HEAD';
  #state: State = 'head';
  /** Head bytes, or the current chunk-size / trailer line, gathered across feeds. */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** Body bytes still to come: of the Content-Length body, or of the current chunk. */
  #remaining = 0;
  #keepAlive = false;

  constructor(sink: ResponseSink, method: 'GET' | 'HEAD' = 'GET') {
    this.#sink = sink;
    this.#method = method;
  }

  /** The response is complete. */
  get done(): boolean {
    return this.#state === 'done';
  }

  /** The connection may carry another request: complete, HTTP/1.1, framed, no `Connection: close`. */
  get reusable(): boolean {
    return this.#state === 'done' && this.#keepAlive;
  }

  /**
   * Parses `data`. Returns the bytes fed past the end of the response (0 normally); a server must
   * not send them (we never pipeline), so the caller closes the connection when there are any.
   */
  feed(data: Buffer): number {
    let at = 0;
    while (at < data.length) {
      switch (this.#state) {
        case 'head':
          at = this.#headBytes(data, at);
          break;
        case 'length':
        case 'chunk-data': {
          const n = Math.min(this.#remaining, data.length - at);
          this.#remaining -= n;
          this.#sink.body(data.subarray(at, at + n));
          at += n;
          if (this.#remaining > 0) break;
          if (this.#state === 'length') this.#finish();
          else this.#state = 'chunk-end';
          break;
        }
        case 'chunk-size':
        case 'chunk-end':
        case 'trailers':
          at = this.#lineBytes(data, at);
          break;
        case 'close':
          this.#sink.body(at === 0 ? data : data.subarray(at));
          at = data.length;
          break;
        case 'done':
          return data.length - at;
      }
    }
    return 0;
  }

  /** The connection closed: ends a close-delimited body; anything else unfinished is an error. */
  eof(): void {
    if (this.#state === 'done') return;
    if (this.#state === 'close') {
      this.#finish();
      return;
    }
    throw new ResponseSyntaxError(this.#state === 'head' ? 'connection closed before the response head' : 'connection closed before the end of the response body');
  }

  #finish(): void {
    this.#state = 'done';
    this.#sink.end();
  }

  /** Gathers head bytes up to the blank line; returns where the body starts, or the end of `data`. */
  #headBytes(data: Buffer, at: number): number {
    // The terminator may straddle two feeds: search from a little before the new bytes.
    const carry = Math.min(this.#pendingBytes, 3);
    const window = carry > 0 ? Buffer.concat([this.#tail(carry), data.subarray(at)]) : data.subarray(at);
    const end = headEnd(window);
    if (end < 0) {
      this.#gather(data.subarray(at), MAX_HEAD_BYTES, 'response head');
      return data.length;
    }
    const consumed = end - carry;
    this.#gather(data.subarray(at, at + consumed), MAX_HEAD_BYTES, 'response head');
    const text = this.#take().toString('latin1');
    this.#startBody(parseHead(text));
    return at + consumed;
  }

  #startBody({ status, headers, http11 }: ResponseHead & { http11: boolean }): void {
    // 1xx (RFC 9110 §15.2) are interim: the real response follows.
    if (status >= 100 && status < 200) return;
    this.#sink.head({ status, headers });
    const connection = (headers.connection ?? '').toLowerCase().split(',').map((t) => t.trim());
    this.#keepAlive = http11 ? !connection.includes('close') : connection.includes('keep-alive');
    if (this.#method === 'HEAD' || status === 204 || status === 304) return this.#finish();
    const te = headers['transfer-encoding'];
    if (te !== undefined) {
      const codings = te.toLowerCase().split(',').map((t) => t.trim());
      if (codings[codings.length - 1] === 'chunked') {
        this.#state = 'chunk-size';
        return;
      }
      this.#keepAlive = false;
      this.#state = 'close';
      return;
    }
    const cl = headers['content-length'];
    if (cl !== undefined) {
      this.#remaining = contentLength(cl);
      if (this.#remaining === 0) return this.#finish();
      this.#state = 'length';
      return;
    }
    this.#keepAlive = false;
    this.#state = 'close';
  }

  /** A chunk-size line, the CRLF after a chunk's data, or a trailer line (RFC 9112 §7.1). */
  #lineBytes(data: Buffer, at: number): number {
    const nl = data.indexOf(0x0a, at);
    if (nl < 0) {
      this.#gather(data.subarray(at), MAX_LINE_BYTES, 'chunk line');
      return data.length;
    }
    this.#gather(data.subarray(at, nl), MAX_LINE_BYTES, 'chunk line');
    let line = this.#take().toString('latin1');
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (this.#state === 'chunk-end') {
      if (line !== '') throw new ResponseSyntaxError('chunk data longer than its size');
      this.#state = 'chunk-size';
    } else if (this.#state === 'chunk-size') {
      const size = /^([0-9a-fA-F]{1,12})[ \t]*(?:;.*)?$/.exec(line);
      if (!size) throw new ResponseSyntaxError(`invalid chunk size line '${line.slice(0, 40)}'`);
      this.#remaining = Number.parseInt(size[1]!, 16);
      this.#state = this.#remaining === 0 ? 'trailers' : 'chunk-data';
    } else if (line === '') {
      this.#finish();
    }
    return nl + 1;
  }

  #gather(bytes: Buffer, max: number, what: string): void {
    if (bytes.length === 0) return;
    this.#pendingBytes += bytes.length;
    if (this.#pendingBytes > max) throw new ResponseSyntaxError(`${what} longer than ${max} bytes`);
    // Copied: the caller reuses the buffers it feeds.
    this.#pending.push(Buffer.from(bytes));
  }

  #take(): Buffer {
    const all = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending);
    this.#pending = [];
    this.#pendingBytes = 0;
    return all;
  }

  /** The last `n` gathered bytes (n ≤ 3, for a terminator split across feeds). */
  #tail(n: number): Buffer {
    const all = Buffer.concat(this.#pending);
    return all.subarray(all.length - n);
  }
}

/** Index just past the blank line ending a head (CRLFCRLF, or bare LFs, RFC 9112 §2.2), or -1. */
function headEnd(bytes: Buffer): number {
  for (let i = bytes.indexOf(0x0a); i >= 0; i = bytes.indexOf(0x0a, i + 1)) {
    if (bytes[i + 1] === 0x0a) return i + 2;
    if (bytes[i + 1] === 0x0d && bytes[i + 2] === 0x0a) return i + 3;
  }
  return -1;
}

function parseHead(text: string): ResponseHead & { http11: boolean } {
  const lines = text.split(/\r?\n/);
  const status = /^HTTP\/1\.([01]) ([1-9][0-9]{2})(?: .*)?$/.exec(lines[0] ?? '');
  if (!status) throw new ResponseSyntaxError(`invalid status line '${(lines[0] ?? '').slice(0, 40)}'`);
  const headers: Record<string, string | undefined> = {};
  for (const line of lines.slice(1)) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    // Obsolete line folding (a line starting with whitespace) is refused, as RFC 9112 §5.2 allows.
    if (colon <= 0 || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(line.slice(0, colon))) {
      throw new ResponseSyntaxError(`invalid header line '${line.slice(0, 40)}'`);
    }
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    const prior = headers[name];
    headers[name] = prior === undefined ? value : `${prior}, ${value}`;
  }
  return { status: Number(status[2]), headers, http11: status[1] === '1' };
}

/** Content-Length, allowing a list of identical values (RFC 9110 §8.6); anything else is refused. */
function contentLength(value: string): number {
  const values = new Set(value.split(',').map((v) => v.trim()));
  const [only] = values;
  if (values.size !== 1 || only === undefined || !/^[0-9]{1,15}$/.test(only)) {
    throw new ResponseSyntaxError(`invalid Content-Length '${value.slice(0, 40)}'`);
  }
  return Number(only);
}
