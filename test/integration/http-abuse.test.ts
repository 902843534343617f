/**
 * Abuse on the client's connection, over raw TCP: a malformed request pipelined behind good ones
 * (the responses already owed go out whole, then the 400 envelope, then the close), Host headers
 * that are missing or malformed (one answer whether the manifest is cached or not, never an empty
 * 400), and headers that arrive too slowly (408 once server.headersTimeout has passed).
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { MANIFEST_ACCEPT } from '../helpers/images.ts';
import { mirrorConfig, startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { get, sha256 } from '../helpers/pull.ts';
import { waitFor } from '../helpers/wait.ts';

interface Exchange {
  data: Buffer;
  /** The mirror closed the connection (false: the wait ran out first). */
  closed: boolean;
}

/** Sends `parts` on one connection (a function part is awaited between writes) and keeps every byte until the mirror closes it or `timeoutMs` passes. */
function exchange(base: string, parts: Array<string | Buffer | (() => Promise<void>)>, timeoutMs = 15_000): Promise<Exchange> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ host: hostname, port: Number(port) });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ data: Buffer.concat(chunks), closed: false });
    }, timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => {}); // a reset still ends in 'close'
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), closed: true });
    });
    socket.once('connect', () => {
      void (async () => {
        for (const part of parts) {
          if (socket.destroyed) return;
          if (typeof part === 'function') await part();
          else socket.write(part);
        }
      })().catch(reject);
    });
  });
}

interface ParsedResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** Splits bytes into HTTP/1.1 responses framed by Content-Length; fails on anything else, including trailing bytes. */
function parseResponses(data: Buffer): ParsedResponse[] {
  const out: ParsedResponse[] = [];
  let at = 0;
  while (at < data.length) {
    const end = data.indexOf('\r\n\r\n', at);
    if (end === -1) throw new Error(`an incomplete response head: ${JSON.stringify(data.subarray(at, at + 200).toString())}`);
    const [statusLine, ...lines] = data.subarray(at, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(statusLine ?? '');
    if (!m) throw new Error(`not a status line: ${JSON.stringify(statusLine)}`);
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = Number(headers['content-length']);
    if (!Number.isInteger(length)) throw new Error(`a response without Content-Length: ${statusLine}`);
    const body = data.subarray(end + 4, end + 4 + length);
    if (body.length !== length) throw new Error(`a body cut short: ${body.length} of ${length} bytes`);
    out.push({ status: Number(m[1]), headers, body });
    at = end + 4 + length;
  }
  return out;
}

function envelopeCode(res: ParsedResponse): string {
  expect(res.headers['content-type']).toBe('application/json');
  return (JSON.parse(res.body.toString()) as { errors: Array<{ code: string }> }).errors[0]!.code;
}

/** A request line and headers as a client would send them (HTTP/1.1 unless the line says otherwise). */
function request(target: string, headers: Record<string, string>, version = 'HTTP/1.1'): string {
  return `GET ${target} ${version}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
}

/** A header line without a colon: llhttp refuses the request. */
const MALFORMED = 'GET /v2/ HTTP/1.1\r\nHost: localhost\r\nthis is not a header\r\n\r\n';

describeWithTools(['docker-registry'], 'abuse on the client connection', () => {
  let upstream: Upstream;
  let m: TestMirror;
  let host: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    m = await startTestMirror(mirrorConfig(upstream.url));
    host = new URL(m.url).host;
  });
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
  });

  describe('a malformed request pipelined behind good ones', () => {
    it('leaves a blob body in flight whole, then answers the malformed request with the 400 envelope and closes', async () => {
      const layer = upstream.fixtures.image('large').manifest.layers[0]!;
      const target = `/v2/large/blobs/${layer.digest}`;
      // Cached first, so the body goes out from disk at full speed while the bad request is parsed.
      const warm = await get(`${m.url}${target}`);
      expect(warm.res.status).toBe(200);
      await waitFor('the blob to be committed', () => m.mirror.storage.metadata.getBlob(layer.digest));

      const { data, closed } = await exchange(m.url, [request(target, { Host: host }) + MALFORMED]);
      expect(closed).toBe(true);
      const responses = parseResponses(data);
      expect(responses.map((r) => r.status)).toEqual([200, 400]);
      expect(responses[0]!.body.length).toBe(layer.size);
      expect(sha256(responses[0]!.body)).toBe(layer.digest);
      expect(envelopeCode(responses[1]!)).toBe('BAD_REQUEST');
      expect(responses[1]!.headers.connection).toBe('close');
    });

    it('answers three good requests in full before the 400 envelope for the fourth, then closes', async () => {
      const small = upstream.fixtures.image('small:v1').manifest;
      const layer = small.layers[0]!;
      const good = [
        request('/v2/', { Host: host }),
        request('/v2/small/manifests/v1', { Host: host, Accept: MANIFEST_ACCEPT }),
        request(`/v2/small/blobs/${layer.digest}`, { Host: host }),
      ];
      const { data, closed } = await exchange(m.url, [good.join('') + MALFORMED]);
      expect(closed).toBe(true);
      const responses = parseResponses(data);
      expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 400]);
      expect(responses[1]!.headers['docker-content-digest']).toBe(small.digest);
      expect(sha256(responses[2]!.body)).toBe(layer.digest);
      expect(envelopeCode(responses[3]!)).toBe('BAD_REQUEST');
    });

    it('answers garbage on an idle connection with the 400 envelope', async () => {
      const { data, closed } = await exchange(m.url, [Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03])]);
      expect(closed).toBe(true);
      const responses = parseResponses(data);
      expect(responses.map((r) => r.status)).toEqual([400]);
      expect(envelopeCode(responses[0]!)).toBe('BAD_REQUEST');
    });
  });

  describe('the Host header', () => {
    /** One manifest request with `headers` (or none) on `version`, parsed. */
    async function manifestVia(ref: string, headers: Record<string, string>, version: string): Promise<ParsedResponse> {
      const { data } = await exchange(m.url, [request(`/v2/${ref}`, { Accept: MANIFEST_ACCEPT, Connection: 'close', ...headers }, version)]);
      const responses = parseResponses(data);
      expect(responses).toHaveLength(1);
      return responses[0]!;
    }

    /** The answer for a manifest already cached (the fast path) and for one the mirror has not seen (the full path). */
    async function bothPaths(cold: string, headers: Record<string, string>, version = 'HTTP/1.1') {
      const cachedRef = 'small/manifests/v2';
      const warm = await get(`${m.url}/v2/${cachedRef}`, { accept: MANIFEST_ACCEPT });
      expect(warm.res.status).toBe(200);
      return { cached: await manifestVia(cachedRef, headers, version), cold: await manifestVia(cold, headers, version) };
    }

    it('serves an HTTP/1.0 request without Host, cached or not', async () => {
      const { cached, cold } = await bothPaths('medium/manifests/latest', {}, 'HTTP/1.0');
      expect([cached.status, cold.status]).toEqual([200, 200]);
      expect(cached.headers['x-cache']).toBe('HIT');
      expect(cold.headers['docker-content-digest']).toBe(upstream.fixtures.image('medium').manifest.digest);
    });

    it('answers an HTTP/1.1 request without Host with the 400 envelope, cached or not', async () => {
      const { cached, cold } = await bothPaths('many/manifests/latest', {});
      expect([cached.status, cold.status]).toEqual([400, 400]);
      expect([envelopeCode(cached), envelopeCode(cold)]).toEqual(['BAD_REQUEST', 'BAD_REQUEST']);
    });

    it.each([['a@b'], ['a/b'], ['localhost:5000, evil'], ['exa%41mple']])('answers Host: %s with the 400 envelope, cached or not', async (value) => {
      const { cached, cold } = await bothPaths('multi/manifests/latest', { Host: value });
      expect([cached.status, cold.status]).toEqual([400, 400]);
      expect([envelopeCode(cached), envelopeCode(cold)]).toEqual(['BAD_REQUEST', 'BAD_REQUEST']);
    });

    it('answers two Host headers with the 400 envelope, cached or not', async () => {
      const { data } = await exchange(m.url, [`GET /v2/small/manifests/v2 HTTP/1.1\r\nHost: ${host}\r\nHost: other.example\r\nConnection: close\r\n\r\n`]);
      const [res] = parseResponses(data);
      expect(res!.status).toBe(400);
      expect(envelopeCode(res!)).toBe('BAD_REQUEST');
    });
  });
});

describeWithTools(['docker-registry'], 'a client that sends its headers slowly', () => {
  let upstream: Upstream;
  let m: TestMirror;

  beforeAll(async () => {
    upstream = await startUpstream();
    m = await startTestMirror(mirrorConfig(upstream.url, { server: { headersTimeout: '1s' } }));
  });
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
  });

  it('gets the 408 envelope once server.headersTimeout has passed, and the connection closes', async () => {
    const host = new URL(m.url).host;
    // One header line every 100 ms for up to 4 s, so the connection never goes quiet; the wait
    // ends at 3 s, which a 1 s timeout checked every 500 ms meets with room to spare.
    const drip: Array<string | (() => Promise<void>)> = [`GET /v2/ HTTP/1.1\r\nHost: ${host}\r\n`];
    for (let i = 0; i < 40; i++) drip.push(() => new Promise((r) => setTimeout(r, 100)), `X-Slow-${i}: a\r\n`);
    const { data, closed } = await exchange(m.url, drip, 3000);
    expect(closed).toBe(true);
    const responses = parseResponses(data);
    expect(responses.map((r) => r.status)).toEqual([408]);
    expect(envelopeCode(responses[0]!)).toBe('REQUEST_TIMEOUT');
  });
});
