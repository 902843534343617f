import { describe, expect, it } from 'vitest';
import { ResponseParser, ResponseSyntaxError, type ResponseHead } from '../../../../src/upstream/transport/http1-response.ts';

interface Parsed {
  heads: ResponseHead[];
  body: string;
  ended: boolean;
  extra: number;
  parser: ResponseParser;
}

/** Feeds `pieces` one by one, each from a buffer that is overwritten right after (as a reused read slab is). */
function parse(pieces: string[], method: 'GET' | 'HEAD' = 'GET', eof = false): Parsed {
  const out: Parsed = { heads: [], body: '', ended: false, extra: 0, parser: undefined as unknown as ResponseParser };
  out.parser = new ResponseParser(
    {
      head: (h) => out.heads.push(h),
      body: (chunk) => (out.body += chunk.toString('latin1')),
      end: () => (out.ended = true),
    },
    method,
  );
  for (const piece of pieces) {
    const slab = Buffer.from(piece, 'latin1');
    out.extra += out.parser.feed(slab);
    slab.fill(0x21);
  }
  if (eof) out.parser.eof();
  return out;
}

/** Every way of cutting `text` in two. */
function splits(text: string): string[][] {
  return Array.from({ length: text.length + 1 }, (_, i) => [text.slice(0, i), text.slice(i)]);
}

const CHUNKED = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n';

describe('ResponseParser', () => {
  it('reads a Content-Length body however the bytes are split across reads', () => {
    const text = 'HTTP/1.1 200 OK\r\nContent-Length: 11\r\nDocker-Content-Digest: sha256:x\r\n\r\nhello world';
    for (const pieces of splits(text)) {
      const p = parse(pieces);
      expect(p.heads).toEqual([{ status: 200, headers: { 'content-length': '11', 'docker-content-digest': 'sha256:x' } }]);
      expect(p.body).toBe('hello world');
      expect(p.ended).toBe(true);
      expect(p.parser.reusable).toBe(true);
    }
  });

  it('decodes a chunked body with extensions and trailers however the bytes are split', () => {
    for (const pieces of splits(CHUNKED)) {
      const p = parse(pieces);
      expect(p.body).toBe('hello, world');
      expect(p.ended).toBe(true);
      expect(p.parser.reusable).toBe(true);
    }
    // One byte per read too.
    expect(parse([...CHUNKED]).body).toBe('hello, world');
  });

  it('joins repeated header fields with a comma and lower-cases their names', () => {
    const p = parse(['HTTP/1.1 200 OK\r\nWWW-Authenticate: a\r\nwww-authenticate:  b \r\nContent-Length: 0\r\n\r\n']);
    expect(p.heads[0]!.headers['www-authenticate']).toBe('a, b');
    expect(p.ended).toBe(true);
  });

  it('skips interim 1xx responses and reports the final one', () => {
    const p = parse(['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok']);
    expect(p.heads.map((h) => h.status)).toEqual([200]);
    expect(p.body).toBe('ok');
  });

  it('accepts heads ending lines with a bare LF', () => {
    const p = parse(['HTTP/1.1 404 Not Found\nContent-Length: 3\n\nnot']);
    expect(p.heads[0]!.status).toBe(404);
    expect(p.body).toBe('not');
  });

  it('has no body for HEAD, 204 and 304 whatever Content-Length says', () => {
    expect(parse(['HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n'], 'HEAD').ended).toBe(true);
    expect(parse(['HTTP/1.1 204 No Content\r\n\r\n']).ended).toBe(true);
    expect(parse(['HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n']).ended).toBe(true);
  });

  it('reads a body without length or chunking until the connection closes, and never reuses that connection', () => {
    const p = parse(['HTTP/1.1 200 OK\r\n\r\nall of ', 'it'], 'GET', true);
    expect(p.body).toBe('all of it');
    expect(p.ended).toBe(true);
    expect(p.parser.reusable).toBe(false);
  });

  it('does not reuse a connection the server said to close, or an HTTP/1.0 one', () => {
    expect(parse(['HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx']).parser.reusable).toBe(false);
    expect(parse(['HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx']).parser.reusable).toBe(false);
    expect(parse(['HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx']).parser.reusable).toBe(true);
  });

  it('returns bytes sent past the end of the response, which the caller must not trust', () => {
    expect(parse(['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA']).extra).toBe(5);
  });

  it('fails when the connection closes before the head or before the body is complete', () => {
    expect(() => parse(['HTTP/1.1 200 OK\r\nContent-'], 'GET', true)).toThrow(/before the response head/);
    expect(() => parse(['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort'], 'GET', true)).toThrow(/before the end of the response body/);
    expect(() => parse([CHUNKED.slice(0, -10)], 'GET', true)).toThrow(ResponseSyntaxError);
  });

  it.each([
    ['a status line that is not HTTP/1.x', 'HTTP/2 200\r\n\r\n'],
    ['a status code out of range', 'HTTP/1.1 99 Odd\r\n\r\n'],
    ['a header line without a colon', 'HTTP/1.1 200 OK\r\nBroken\r\n\r\n'],
    ['obsolete line folding', 'HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\n\r\n'],
    ['conflicting Content-Length values', 'HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n'],
    ['a negative Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n'],
    ['a chunk size that is not hex', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'],
    ['chunk data longer than its size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n'],
  ])('refuses %s', (_what, text) => {
    expect(() => parse([text])).toThrow(ResponseSyntaxError);
  });

  it('accepts a list of identical Content-Length values', () => {
    expect(parse(['HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok']).body).toBe('ok');
  });

  it('refuses a head larger than 64 KiB instead of gathering it forever', () => {
    const huge = `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70_000)}\r\n\r\n`;
    expect(() => parse([huge])).toThrow(/longer than/);
    expect(() => parse(huge.match(/[^]{1,1000}/g)!)).toThrow(/longer than/);
  });
});
