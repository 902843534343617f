/**
 * Blob bodies written onto real loopback sockets by src/http/body/blob-writer.ts: committed file ranges
 * by sendfile and by the buffered copy (bytes, ranges, concurrency, clients leaving, the release
 * of the file, the sendfile policy of server.sendfile), and readers following a fill (bytes as
 * they arrive, an abort and never a clean end when the body turns out wrong, a relay on a full disk).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommittedBody, type BlobBody } from '../../../../src/cache/blobs/blob-body.ts';
import { BlobWriter, BUFFERED_CACHED_MAX, type Written } from '../../../../src/http/body/blob-writer.ts';
import { SendfilePolicy, type SendfileUse } from '../../../../src/http/body/sendfile.ts';
import { nativeAddon } from '../../../../src/util/native-addon.ts';
import { waitFor } from '../../../helpers/wait.ts';
import { diskFullWriter, feed, startFill, type FillUnderTest } from '../../cache/blobs/fill-fixture.ts';

const native = nativeAddon();
const sendfileAvailable = () => native !== undefined;

/** One writer per sendfile setting and read size, shared by its requests as the server's is. */
const writers = new Map<string, BlobWriter>();
function writerFor(use: SendfileUse, chunk: number): BlobWriter {
  const key = `${use}/${chunk}`;
  let writer = writers.get(key);
  if (!writer) writers.set(key, (writer = new BlobWriter({ sendfile: new SendfilePolicy(use, native), readChunk: chunk })));
  return writer;
}

const SIZE = 5 * 1024 * 1024 + 123;
/** Larger than loopback's socket buffers on both ends can hold: its sender is still sending when the client leaves. */
const BIG = 64 * 1024 * 1024;
const hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Served {
  written?: Written;
  error?: NodeJS.ErrnoException;
  released: number;
  /** Bytes sendfile reported as sent, as they went. */
  sendfileSent?: number;
}

let dir: string;
let file: string;
let big: string;
let content: Buffer;
let server: http.Server;
let base: string;
const served: Served[] = [];
let nextFillBody: (() => { body: BlobBody; length: number }) | undefined;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-body-'));
  file = path.join(dir, 'blob');
  content = randomBytes(SIZE);
  await writeFile(file, content);
  big = path.join(dir, 'big');
  await writeFile(big, Buffer.alloc(BIG, 'ocimirror'));
  // GET /?start=&end=&chunk=&sendfile=off|fills|all answers bytes [start, end] of the file as a
  // CommittedBody; GET /fill answers with the body `nextFillBody` gives.
  server = http.createServer(async (req, res) => {
    const q = new URL(req.url!, 'http://x').searchParams;
    const record: Served = { released: 0 };
    served.push(record);
    let body: BlobBody;
    let length: number;
    const writer = writerFor((q.get('sendfile') ?? 'all') as SendfileUse, Number(q.get('chunk') ?? 1 << 20));
    if (req.url!.startsWith('/fill')) {
      ({ body, length } = nextFillBody!());
    } else {
      const start = Number(q.get('start') ?? 0);
      const which = q.get('file') === 'big' ? big : file;
      const end = Number(q.get('end') ?? (which === big ? BIG : SIZE) - 1);
      body = new CommittedBody(await open(which, 'r'), start, end, () => record.released++);
      length = end - start + 1;
    }
    res.writeHead(200, { 'Content-Length': String(length) });
    writer.write(body, res, (sent) => (record.sendfileSent = (record.sendfileSent ?? 0) + sent)).then(
      (w) => {
        record.written = w;
        res.end();
      },
      (err: NodeJS.ErrnoException) => {
        record.error = err;
        res.destroy();
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

function get(url: string, agent?: http.Agent): Promise<{ body: Buffer; socket: unknown }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ body: Buffer.concat(chunks), socket: res.socket }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

const modes = [
  { name: 'sendfile', flag: 'all', available: sendfileAvailable() },
  { name: 'buffered copy', flag: 'off', available: true },
];

for (const mode of modes) {
  describe.skipIf(!mode.available)(`a committed blob body written by ${mode.name}`, () => {
    it('delivers every byte, releases the file once, and leaves the connection usable', async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const first = await get(`${base}/?sendfile=${mode.flag}&chunk=65536`, agent);
        expect(hex(first.body)).toBe(hex(content));
        const second = await get(`${base}/?sendfile=${mode.flag}&start=10&end=19`, agent);
        expect(second.body.equals(content.subarray(10, 20))).toBe(true);
        expect(second.socket).toBe(first.socket);
      } finally {
        agent.destroy();
      }
      const [a, b] = served.slice(-2);
      // The client can have every byte before the server's write callbacks have run.
      await waitFor('both bodies to settle', () => a!.written && b!.written, 5000);
      expect(a!.released).toBe(1);
      expect(a!.written).toEqual({ bytes: SIZE, sendfile: mode.flag === 'all' ? SIZE : 0 });
      // A range this small is cheaper to read and write than to set sendfile up for.
      expect(b!.written).toEqual({ bytes: 10, sendfile: 0 });
    });

    it('delivers an odd range from the middle exactly', async () => {
      const { body } = await get(`${base}/?sendfile=${mode.flag}&start=1000001&end=3999998&chunk=65536`);
      expect(body.equals(content.subarray(1000001, 3999999))).toBe(true);
    });

    it('keeps 8 concurrent readers apart (no buffer reused while a socket still holds it)', async () => {
      const ranges = Array.from({ length: 8 }, (_, i) => [i * 4096, SIZE - 1 - i * 7] as const);
      const bodies = await Promise.all(ranges.map(([s, e]) => get(`${base}/?sendfile=${mode.flag}&start=${s}&end=${e}&chunk=32768`)));
      bodies.forEach(({ body }, i) => expect(hex(body)).toBe(hex(content.subarray(ranges[i]![0], ranges[i]![1] + 1))));
    });

    it('rejects and releases the file when the client goes away mid-body', async () => {
      const before = served.length;
      await new Promise<void>((resolve, reject) => {
        const req = http.get(`${base}/?sendfile=${mode.flag}&file=big&chunk=65536`, (res) => {
          // Stop reading so the server's sends back up, then leave with most of the body unsent.
          res.once('data', () => {
            res.pause();
            setTimeout(() => {
              req.destroy();
              resolve();
            }, 100);
          });
        });
        req.on('error', () => {});
        setTimeout(() => reject(new Error('no data')), 5000).unref();
      });
      const record = served[before]!;
      await waitFor('the body to settle', () => record.released === 1 && (record.error !== undefined || record.written !== undefined), 5000);
      expect(record.written).toBeUndefined();
      expect(record.error?.code).toMatch(/EPIPE|ECONNRESET|ERR_STREAM_DESTROYED|ECANCELED/);
      // What sendfile put on the wire before the cut is still reported (the access log counts it).
      if (mode.flag === 'all') expect(record.sendfileSent).toBeGreaterThan(0);
    });
  });
}

describe('a committed blob body', () => {
  it('fails instead of hanging when the file is shorter than the range, and releases the file', async () => {
    const short = path.join(dir, 'short');
    await writeFile(short, content.subarray(0, 1000));
    let released = 0;
    const body = new CommittedBody(await open(short, 'r'), 0, 4999, () => released++);
    const sink = new PassThrough();
    sink.resume();
    await expect(writerFor('off', 65536).write(body, sink)).rejects.toMatchObject({ code: 'ESHORT' });
    expect(released).toBe(1);
  });

  it("goes out through buffers under server.sendfile 'fills' (the default), and by sendfile under 'all'", async () => {
    const { body } = await get(`${base}/?sendfile=fills&chunk=65536`);
    expect(hex(body)).toBe(hex(content));
    await waitFor('the body to settle', () => served.at(-1)!.written, 5000);
    expect(served.at(-1)!.written).toEqual({ bytes: SIZE, sendfile: 0 });
    expect(writerFor('fills', 65536).sendfileBytes).toBe(0);
    if (sendfileAvailable()) {
      const before = writerFor('all', 65536).sendfileBytes;
      await get(`${base}/?sendfile=all&chunk=65536`);
      await waitFor('the body to settle', () => served.at(-1)!.written, 5000);
      expect(writerFor('all', 65536).sendfileBytes - before).toBe(SIZE);
    }
  });

  it('goes out through buffers without the native addon whatever server.sendfile says', async () => {
    const writer = new BlobWriter({ sendfile: new SendfilePolicy('all', undefined) });
    const chunks: Buffer[] = [];
    const sink = new PassThrough();
    sink.on('data', (c: Buffer) => chunks.push(Buffer.from(c))); // the writer reuses its buffers once a write is done
    const written = await writer.write(new CommittedBody(await open(file, 'r'), 0, SIZE - 1, () => {}), sink);
    expect(written).toEqual({ bytes: SIZE, sendfile: 0 });
    expect(hex(Buffer.concat(chunks))).toBe(hex(content));
    expect(writer.sendfileBytes).toBe(0);
  });

  it.skipIf(!sendfileAvailable())('sends a cached blob by sendfile once BUFFERED_CACHED_MAX others are being copied through buffers, and buffers again after', async () => {
    const before = served.length;
    const held: http.ClientRequest[] = [];
    try {
      // Clients that take a first chunk and stop reading keep their buffered responses in flight.
      await Promise.all(
        Array.from({ length: BUFFERED_CACHED_MAX }, () =>
          new Promise<void>((resolve, reject) => {
            const req = http.get(`${base}/?sendfile=fills&file=big`, (res) => res.once('data', () => (res.pause(), resolve())));
            req.on('error', () => {});
            held.push(req);
            setTimeout(() => reject(new Error('no data')), 5000).unref();
          }),
        ),
      );
      const { body } = await get(`${base}/?sendfile=fills`);
      expect(hex(body)).toBe(hex(content));
      const busy = served[before + BUFFERED_CACHED_MAX]!;
      await waitFor('the body to settle', () => busy.written, 5000);
      expect(busy.written).toEqual({ bytes: SIZE, sendfile: SIZE });
    } finally {
      for (const req of held) req.destroy();
    }
    await waitFor('the held bodies to end', () => served.slice(before, before + BUFFERED_CACHED_MAX).every((r) => r.released === 1), 5000);
    await get(`${base}/?sendfile=fills`);
    const after = served.at(-1)!;
    await waitFor('the body to settle', () => after.written, 5000);
    expect(after.written).toEqual({ bytes: SIZE, sendfile: 0 });
  });

  it('reuses its read buffers across responses and drops them on trim()', async () => {
    const writer = new BlobWriter({ sendfile: new SendfilePolicy('off', undefined), readChunk: 256 << 10 });
    const sink = new PassThrough();
    sink.resume();
    await writer.write(new CommittedBody(await open(file, 'r'), 0, SIZE - 1, () => {}), sink);
    expect(writer.pooledBuffers).toBe(2);
    await writer.write(new CommittedBody(await open(file, 'r'), 0, SIZE - 1, () => {}), sink);
    expect(writer.pooledBuffers).toBe(2);
    writer.trim();
    expect(writer.pooledBuffers).toBe(0);
  });
});

/** A GET whose body is collected: `done` settles however the response ended; `received` counts as it goes. */
function fillGet(url: string) {
  let received = 0;
  const chunks: Buffer[] = [];
  const done = new Promise<{ body: Buffer; complete: boolean }>((resolve) => {
    const settle = (complete: boolean) => resolve({ body: Buffer.concat(chunks), complete });
    const req = http.get(url, (res) => {
      res.on('data', (c: Buffer) => {
        received += c.length;
        chunks.push(c);
      });
      res.on('end', () => settle(res.complete));
      res.on('error', () => settle(false));
      res.on('aborted', () => settle(false));
    });
    req.on('error', () => settle(false));
  });
  return { done, received: () => received };
}

describe('a reader following a fill', () => {
  let fills: FillUnderTest[] = [];
  // The reader is created at once: the client's request may reach the server after the bytes.
  const serveFill = (t: FillUnderTest, start?: number, end?: number) => {
    const body = t.fill.createReader(start, end);
    const length = (end ?? t.fill.expectedSize! - 1) - (start ?? 0) + 1;
    nextFillBody = () => ({ body, length });
  };
  const finish = async () => {
    for (const t of fills) {
      t.fill.retire();
      await t.fill.closed;
    }
    fills = [];
  };

  for (const mode of modes) {
    it.skipIf(!mode.available)(`delivers the body as it arrives by ${mode.name}, whole and right once verified`, async () => {
      const blob = randomBytes(3 * 1024 * 1024 + 7);
      const t = startFill(dir, blob);
      fills.push(t);
      serveFill(t);
      const client = fillGet(`${base}/fill?sendfile=${mode.flag}`);
      await feed(t, blob.subarray(0, 1 << 20));
      // The first bytes go out at once, long before the fill is done.
      await waitFor('the first bytes', () => client.received() > 0, 5000);
      expect(t.fill.state).toBe('running');
      await feed(t, blob.subarray(1 << 20));
      t.upstream.end();
      const got = await client.done;
      expect(got.complete).toBe(true);
      expect(hex(got.body)).toBe(hex(blob));
      const record = served.at(-1)!;
      await waitFor('the body to settle', () => record.written, 5000);
      expect(record.written!.bytes).toBe(blob.length);
      expect(record.written!.sendfile > 0).toBe(mode.flag === 'all');
      await finish();
    });
  }

  it('aborts the response, never ending it cleanly, when the body turns out wrong', async () => {
    const blob = randomBytes(2 * 1024 * 1024);
    const wrong = Buffer.from(blob);
    wrong[wrong.length - 1] = wrong.at(-1)! ^ 1;
    const t = startFill(dir, blob);
    fills.push(t);
    serveFill(t);
    const client = fillGet(`${base}/fill?sendfile=fills`);
    await feed(t, wrong);
    t.upstream.end();
    const got = await client.done;
    expect(got.complete).toBe(false);
    expect(got.body.length).toBeLessThan(blob.length);
    const record = served.at(-1)!;
    await waitFor('the body to settle', () => record.error, 5000);
    expect(record.error).toMatchObject({ code: 'BAD_GATEWAY' });
    await finish();
  });

  it('aborts a Range response that has all but its last byte when the body turns out wrong', async () => {
    const blob = randomBytes(1024 * 1024);
    const wrong = Buffer.from(blob);
    wrong[900_000] = wrong[900_000]! ^ 1;
    const t = startFill(dir, blob);
    fills.push(t);
    serveFill(t, 1000, 1999);
    const client = fillGet(`${base}/fill?sendfile=off`);
    await feed(t, wrong);
    t.upstream.end();
    const got = await client.done;
    expect(got.complete).toBe(false);
    // What arrived before the abort is the range's start; its last byte never left.
    expect(got.body.length).toBeLessThan(1000);
    expect(got.body.equals(blob.subarray(1000, 1000 + got.body.length))).toBe(true);
    const record = served.at(-1)!;
    await waitFor('the body to settle', () => record.error, 5000);
    expect(record.error).toMatchObject({ code: 'BAD_GATEWAY' });
    await finish();
  });

  it('relays the whole, verified body when the disk fills up mid-fill', async () => {
    const blob = randomBytes(3 * 1024 * 1024);
    const t = startFill(dir, blob, { writer: diskFullWriter(1024 * 1024) });
    fills.push(t);
    serveFill(t);
    const client = fillGet(`${base}/fill?sendfile=fills`);
    await feed(t, blob.subarray(0, 512 * 1024));
    await feed(t, blob.subarray(512 * 1024));
    t.upstream.end();
    expect(await t.result).toEqual({ size: blob.length, committable: false });
    const got = await client.done;
    expect(got.complete).toBe(true);
    expect(hex(got.body)).toBe(hex(blob));
    await finish();
  });
});
