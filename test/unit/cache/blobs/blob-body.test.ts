import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUFFERED_CACHED_MAX, CommittedBody, type Written } from '../../../../src/cache/blobs/blob-body.ts';
import { sendfileAvailable, sendfileFor } from '../../../../src/cache/blobs/sendfile.ts';
import { waitFor } from '../../../helpers/wait.ts';

const SIZE = 5 * 1024 * 1024 + 123;
/** Larger than loopback's socket buffers on both ends can hold: its sender is still sending when the client leaves. */
const BIG = 64 * 1024 * 1024;
const hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Served {
  written?: Written;
  error?: NodeJS.ErrnoException;
  released: number;
}

let dir: string;
let file: string;
let big: string;
let content: Buffer;
let server: http.Server;
let base: string;
const served: Served[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-body-'));
  file = path.join(dir, 'blob');
  content = randomBytes(SIZE);
  await writeFile(file, content);
  big = path.join(dir, 'big');
  await writeFile(big, Buffer.alloc(BIG, 'ocimirror'));
  // GET /?start=&end=&chunk=&sendfile=0|fills|all (OCIMIRROR_SENDFILE) answers bytes [start, end] of the file through CommittedBody.
  server = http.createServer(async (req, res) => {
    const q = new URL(req.url!, 'http://x').searchParams;
    const start = Number(q.get('start') ?? 0);
    const which = q.get('file') === 'big' ? big : file;
    const end = Number(q.get('end') ?? (which === big ? BIG : SIZE) - 1);
    process.env.OCIMIRROR_SENDFILE = q.get('sendfile') ?? 'all';
    const record: Served = { released: 0 };
    served.push(record);
    const body = new CommittedBody(await open(which, 'r'), start, end, Number(q.get('chunk') ?? 1 << 20), () => record.released++);
    res.writeHead(200, { 'Content-Length': String(end - start + 1) });
    body.writeTo(res).then(
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
  delete process.env.OCIMIRROR_SENDFILE;
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
  { name: 'buffered copy', flag: '0', available: true },
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
    });
  });
}

describe('a committed blob body', () => {
  it('fails instead of hanging when the file is shorter than the range', async () => {
    const short = path.join(dir, 'short');
    await writeFile(short, content.subarray(0, 1000));
    const handle = await open(short, 'r');
    let released = 0;
    const body = new CommittedBody(handle, 0, 4999, 65536, () => released++);
    const sink = new PassThrough();
    sink.resume();
    process.env.OCIMIRROR_SENDFILE = '0';
    await expect(body.writeTo(sink)).rejects.toMatchObject({ code: 'ESHORT' });
    expect(released).toBe(1);
  });

  it('goes out through buffers by default: only a fill\'s followers use sendfile unless OCIMIRROR_SENDFILE=all', async () => {
    delete process.env.OCIMIRROR_SENDFILE;
    expect(sendfileFor('cached')).toBe(false);
    expect(sendfileFor('fill')).toBe(sendfileAvailable());
    const { body } = await get(`${base}/?sendfile=fills&chunk=65536`);
    expect(hex(body)).toBe(hex(content));
    await waitFor('the body to settle', () => served.at(-1)!.written, 5000);
    expect(served.at(-1)!.written).toEqual({ bytes: SIZE, sendfile: 0 });
    process.env.OCIMIRROR_SENDFILE = 'all';
    expect(sendfileFor('cached')).toBe(sendfileAvailable());
    process.env.OCIMIRROR_SENDFILE = '0';
    expect(sendfileFor('fill')).toBe(false);
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

  it('can be consumed only once', async () => {
    let released = 0;
    const body = new CommittedBody(await open(file, 'r'), 0, 9, 65536, () => released++);
    const sink = new PassThrough();
    sink.resume();
    process.env.OCIMIRROR_SENDFILE = '0';
    await body.writeTo(sink);
    await expect(body.writeTo(sink)).rejects.toThrow(/already consumed/);
    body.discard();
    expect(released).toBe(1);
  });
});
