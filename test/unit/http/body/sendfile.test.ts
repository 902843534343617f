/**
 * @module test/unit/sendfile
 * The sendfile addon (native/sendfile) through its wrapper src/http/body/sendfile.ts, against a bare
 * node:http server on loopback and real HTTP clients: the bytes and the HTTP framing, a range,
 * clients that go away or stall, cancellation, a file shorter than asked, concurrency, and that
 * the addon's private fds are closed afterwards.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdtemp, open, rm, writeFile, type FileHandle } from 'node:fs/promises';
import http from 'node:http';
import { createRequire } from 'node:module';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Worker } from 'node:worker_threads';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SendfilePolicy, sendFileRange } from '../../../../src/http/body/sendfile.ts';
import { nativeAddon, nativeAddonError } from '../../../../src/util/native-addon.ts';

const native = nativeAddon();
import { sleep, waitFor } from '../../../helpers/wait.ts';

const SMALL = 5 * 1024 * 1024 + 4321;
/** Larger than loopback's socket buffers together (4 MiB send + up to 32 MiB receive), so a
 * client that stops reading really stalls the transfer. */
const LARGE = 48 * 1024 * 1024 + 17;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const fdCount = () => readdirSync('/proc/self/fd').length;

/** `promise`, or a failure naming `what` after `ms`: no test waits unbounded. */
function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** What the server did with one request. */
interface Outcome {
  sent?: number;
  error?: NodeJS.ErrnoException & { bytesSent?: number };
}

interface Route {
  file: FileHandle;
  start: number;
  length: number;
  /** Content-Length to announce; defaults to `length`. */
  contentLength?: number;
  prefix?: Buffer;
  signal?: AbortSignal;
}

let dir: string;
let small: { handle: FileHandle; content: Buffer };
let large: { handle: FileHandle; content: Buffer };
const servers: http.Server[] = [];
const clients: http.Agent[] = [];

async function tempFile(name: string, size: number) {
  const content = randomBytes(size);
  const file = path.join(dir, name);
  await writeFile(file, content);
  return { handle: await open(file, 'r'), content };
}

/**
 * A bare HTTP server whose every request is answered by `route()`: the head (flushed), an
 * optional prefix written the ordinary way, then the range by sendFileRange; `res.end()` on
 * success, `res.destroy()` on failure (the body is incomplete). Outcomes land in `outcomes`.
 */
async function serve(route: () => Route) {
  const outcomes: Promise<Outcome>[] = [];
  const server = http.createServer((req, res) => {
    const r = route();
    outcomes.push(
      (async (): Promise<Outcome> => {
        res.writeHead(200, { 'Content-Length': String(r.contentLength ?? (r.prefix?.length ?? 0) + r.length) });
        res.flushHeaders();
        if (r.prefix) res.write(r.prefix);
        try {
          const sent = await sendFileRange(native!, res.socket!, r.file.fd, r.start, r.length, r.signal);
          res.end();
          return { sent };
        } catch (err) {
          res.destroy();
          return { error: err as Outcome['error'] };
        }
      })(),
    );
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return { server, url: `http://127.0.0.1:${port}/`, outcomes };
}

/** GETs `url` and reads the whole body (bounded); `socket` identifies the connection used. */
function get(url: string, agent?: http.Agent): Promise<{ body: Buffer; socket: net.Socket }> {
  return within(
    20_000,
    `GET ${url}`,
    new Promise((resolve, reject) => {
      http
        .get(url, { agent: agent ?? false }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ body: Buffer.concat(chunks), socket: res.socket }));
          res.on('error', reject);
          res.on('aborted', () => reject(new Error('response aborted')));
        })
        .on('error', reject);
    }),
  );
}

/** A GET whose reading the test controls: `res` arrives paused; `received` counts body bytes. */
function pausedGet(url: string) {
  let received = 0;
  const chunks: Buffer[] = [];
  let res!: http.IncomingMessage;
  const request = http.get(url, { agent: false });
  const head = within(
    10_000,
    'the response head',
    new Promise<void>((resolve, reject) => {
      request.on('response', (r) => {
        res = r;
        r.pause();
        r.on('data', (c: Buffer) => {
          received += c.length;
          chunks.push(c);
        });
        resolve();
      });
      request.on('error', reject);
    }),
  );
  // Settles when the body is over, however it ended (complete, aborted, reset).
  const done = head.then(
    () =>
      new Promise<void>((resolve) => {
        res.on('end', resolve);
        res.on('close', resolve);
        res.on('error', () => resolve());
      }),
  );
  return {
    request,
    head,
    done,
    get res() {
      return res;
    },
    received: () => received,
    body: () => Buffer.concat(chunks),
  };
}

describe.skipIf(!native)(`sendFileRange (${nativeAddonError() ?? 'sendfile addon loaded'})`, () => {
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-sendfile-'));
    small = await tempFile('small', SMALL);
    large = await tempFile('large', LARGE);
  });

  afterEach(async () => {
    for (const agent of clients.splice(0)) agent.destroy();
    for (const server of servers.splice(0)) {
      server.closeAllConnections();
      await within(5_000, 'the server to close', new Promise((resolve) => server.close(resolve)));
    }
  });

  afterAll(async () => {
    await small?.handle.close();
    await large?.handle.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('sends the whole file with the right bytes and leaves the connection usable for the next request', async () => {
    const { server, url, outcomes } = await serve(() => ({ file: small.handle, start: 0, length: SMALL }));
    let connections = 0;
    server.on('connection', () => connections++);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    clients.push(agent);

    const first = await get(url, agent);
    expect(first.body.length).toBe(SMALL);
    expect(sha(first.body)).toBe(sha(small.content));
    const second = await get(url, agent);
    expect(sha(second.body)).toBe(sha(small.content));
    expect(second.socket).toBe(first.socket);
    expect(connections).toBe(1);
    expect(await Promise.all(outcomes)).toEqual([{ sent: SMALL }, { sent: SMALL }]);
  });

  it('sends exactly a range that starts mid-file and has an odd length', async () => {
    const start = 1_234_567;
    const length = 2_345_679;
    const { url, outcomes } = await serve(() => ({ file: small.handle, start, length }));
    const { body } = await get(url);
    expect(body.equals(small.content.subarray(start, start + length))).toBe(true);
    expect(await outcomes[0]).toEqual({ sent: length });
  });

  it('puts the file after bytes written to the socket before it, even ones still queued in Node', async () => {
    // 8 MiB cannot all fit in the socket at once: most of it waits in Node's queue when
    // sendFileRange is called, and the file's bytes must still come after it.
    const prefix = randomBytes(8 * 1024 * 1024);
    const { url } = await serve(() => ({ file: small.handle, start: 0, length: SMALL, prefix }));
    const { body } = await get(url);
    expect(body.length).toBe(prefix.length + SMALL);
    expect(sha(body)).toBe(sha(Buffer.concat([prefix, small.content])));
  });

  it('rejects with EPIPE or ECONNRESET when the client destroys its socket mid-body, and closes its fds', async () => {
    const { server, url, outcomes } = await serve(() => ({ file: large.handle, start: 0, length: LARGE }));
    const before = fdCount();
    const client = pausedGet(url);
    await client.head;
    client.res.once('data', () => client.request.destroy());
    client.res.resume();
    const outcome = await within(10_000, 'the server-side outcome', waitFor('a request', () => outcomes[0]));
    expect(['EPIPE', 'ECONNRESET']).toContain(outcome.error?.code);
    expect(outcome.error?.bytesSent).toBeGreaterThan(0);
    expect(outcome.error?.bytesSent).toBeLessThan(LARGE);
    // The process survived; the server answers the next client.
    const next = pausedGet(url);
    await next.head;
    next.request.destroy();
    await within(10_000, 'the second outcome', waitFor('a second request', () => outcomes[1]));
    server.closeAllConnections();
    // Both connections and both dups are gone: back to where we started (sockets close asynchronously).
    await waitFor(`fds back to ${before} (now ${fdCount()})`, () => fdCount() <= before, 5_000);
  });

  it('stops with ECANCELED when the signal aborts, and sends nothing after that', async () => {
    const abort = new AbortController();
    const { url, outcomes } = await serve(() => ({ file: large.handle, start: 0, length: LARGE, signal: abort.signal }));
    const client = pausedGet(url);
    await client.head;
    // The client reads nothing: the transfer fills the socket buffers and waits for writability.
    await sleep(200);
    abort.abort();
    const outcome = await within(5_000, 'the outcome', waitFor('a request', () => outcomes[0]));
    expect(outcome.error?.code).toBe('ECANCELED');
    const sent = outcome.error!.bytesSent!;
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThan(LARGE);
    // The server destroyed the response after the rejection; the client drains what was sent before it.
    client.res.resume();
    await within(10_000, 'the client to see the end', client.done);
    expect(client.received()).toBe(sent);
    expect(client.body().equals(large.content.subarray(0, sent))).toBe(true);
  });

  it('stops, and lets the connection close, when JavaScript destroys the socket mid-body (e.g. a timeout)', async () => {
    const { server, url, outcomes } = await serve(() => ({ file: large.handle, start: 0, length: LARGE }));
    server.on('connection', (socket: net.Socket) => setTimeout(() => socket.destroy(), 200));
    const client = pausedGet(url); // reads nothing: the transfer waits on a full socket
    await client.head;
    const outcome = await within(5_000, 'the outcome', waitFor('a request', () => outcomes[0]));
    expect(outcome.error?.code).toBe('ECANCELED');
    // The addon's own dup of the fd no longer holds the connection open: the client sees it end.
    client.res.resume();
    await within(10_000, 'the client to see the connection end', client.done);
    expect(client.received()).toBe(outcome.error!.bytesSent);
  });

  it('rejects with ESHORT, without hanging, when the file is shorter than the range', async () => {
    const { url, outcomes } = await serve(() => ({ file: small.handle, start: SMALL - 1000, length: 5000 }));
    const client = pausedGet(url);
    await client.head;
    client.res.resume();
    const outcome = await within(5_000, 'the outcome', waitFor('a request', () => outcomes[0]));
    expect(outcome.error?.code).toBe('ESHORT');
    expect(outcome.error?.bytesSent).toBe(1000);
    await within(5_000, 'the client to see the end', client.done);
    expect(client.received()).toBe(1000);
  });

  it('gives each of 8 concurrent clients its own correct range', async () => {
    const ranges = Array.from({ length: 8 }, (_, i) => ({ start: i * 333_333, length: SMALL - i * 333_333 - i * 7 }));
    let next = 0;
    const { url, outcomes } = await serve(() => ({ file: small.handle, ...ranges[next++]! }));
    const bodies = await Promise.all(ranges.map(() => get(url)));
    // Requests reach the server in some order; every body must be one of the ranges, each once.
    const expected = new Set(ranges.map((r) => sha(small.content.subarray(r.start, r.start + r.length))));
    const got = new Set(bodies.map((b) => sha(b.body)));
    expect(got).toEqual(expected);
    expect((await Promise.all(outcomes)).every((o) => o.sent !== undefined)).toBe(true);
  });

  it('waits for a client that stops reading for a while and then delivers every byte', async () => {
    const { url, outcomes } = await serve(() => ({ file: large.handle, start: 0, length: LARGE }));
    const client = pausedGet(url);
    await client.head;
    client.res.resume();
    await waitFor('the first bytes', () => client.received() > 0, 5_000);
    client.res.pause();
    await sleep(300);
    // Still waiting on the socket, not done and not failed: the transfer took the EAGAIN path.
    const settled = await Promise.race([outcomes[0]!.then(() => true), sleep(0).then(() => false)]);
    expect(settled).toBe(false);
    client.res.resume();
    await within(20_000, 'the whole body', client.done);
    expect(client.received()).toBe(LARGE);
    expect(sha(client.body())).toBe(sha(large.content));
    expect(await outcomes[0]).toEqual({ sent: LARGE });
  });

  it('refuses a socket without a file descriptor with ENOTSOCK, so the caller can stream instead', async () => {
    const socket = new net.Socket();
    await expect(sendFileRange(native!, socket, small.handle.fd, 0, 10)).rejects.toMatchObject({ code: 'ENOTSOCK' });
  });

  describe('the native handle', () => {
    const addonPath = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../../../native/sendfile/build/Release/sendfile.node');
    const addon = createRequire(import.meta.url)(addonPath) as {
      start(s: number, f: number, o: number, l: number, cb: (err: Error | null, sent: number) => void): object;
      cancel(h: object): void;
    };

    /** A connected loopback pair: `server` is the accepted socket sendfile writes to. */
    async function pair() {
      const listener = net.createServer();
      await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
      const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve));
      const client = net.connect((listener.address() as AddressInfo).port, '127.0.0.1');
      const server = await within(5_000, 'the connection', accepted);
      listener.close();
      const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
      return { client, server, fd };
    }

    it('keeps running and calls back after JS drops the handle and the GC runs, and cancel afterwards does nothing', async () => {
      v8.setFlagsFromString('--expose-gc');
      const gc = vm.runInNewContext('gc') as () => void;
      const { client, server, fd } = await pair();
      try {
        const chunks: Buffer[] = [];
        client.on('data', (c: Buffer) => chunks.push(c));
        let kept: object | undefined;
        const done = new Promise<[Error | null, number]>((resolve) => {
          // Only one of the two handles is kept; the other is garbage as soon as start returns.
          addon.start(fd, large.handle.fd, 0, LARGE, (err, sent) => resolve([err, sent]));
          kept = addon.start(fd, small.handle.fd, 0, 0, () => {});
        });
        for (let i = 0; i < 5; i++) {
          gc();
          await sleep(10);
        }
        const [err, sent] = await within(20_000, 'the callback', done);
        expect(err).toBeNull();
        expect(sent).toBe(LARGE);
        await waitFor('every byte at the client', () => chunks.reduce((n, c) => n + c.length, 0) >= LARGE, 10_000);
        expect(sha(Buffer.concat(chunks))).toBe(sha(large.content));
        expect(() => addon.cancel(kept!)).not.toThrow();
      } finally {
        client.destroy();
        server.destroy();
      }
    });

    it('ends a transfer whose worker thread exits mid-way without taking the process down', async () => {
      // Node aborts the whole process if a worker's loop still has the addon's poll handle open
      // when the worker exits; the addon's environment cleanup hook must close it first.
      const listener = net.createServer((socket) => socket.pause()); // never reads: the transfer stays in flight
      await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
      try {
        const worker = new Worker(
          `const net = require('node:net');
           const { parentPort, workerData } = require('node:worker_threads');
           const addon = require(workerData.addon);
           const socket = net.connect(workerData.port, '127.0.0.1', () => {
             addon.start(socket._handle.fd, workerData.fd, 0, workerData.length, () => parentPort.postMessage('called back'));
             parentPort.postMessage('started');
           });`,
          { eval: true, workerData: { addon: addonPath, port: (listener.address() as AddressInfo).port, fd: large.handle.fd, length: LARGE } },
        );
        const messages: unknown[] = [];
        worker.on('message', (m) => messages.push(m));
        await waitFor('the worker to start the transfer', () => messages.includes('started'), 10_000);
        await sleep(100);
        expect(await within(10_000, 'the worker to exit', worker.terminate())).toBe(1);
        expect(messages).toEqual(['started']);
      } finally {
        listener.close();
      }
    });

    it('calls back once, asynchronously, and refuses objects that are not its handles', async () => {
      const { client, server, fd } = await pair();
      try {
        let calls = 0;
        let sync = true;
        const handle = addon.start(fd, small.handle.fd, 0, 10, () => {
          calls++;
          expect(sync).toBe(false);
        });
        sync = false;
        addon.cancel(handle);
        addon.cancel(handle);
        await waitFor('the callback', () => calls > 0, 5_000);
        await sleep(50);
        expect(calls).toBe(1);
        expect(() => addon.cancel({})).toThrow(TypeError);
        expect(() => addon.cancel(null as unknown as object)).toThrow(TypeError);
        expect(() => addon.start(fd, small.handle.fd, -1, 10, () => {})).toThrow(TypeError);
        expect(() => addon.start(small.handle.fd, small.handle.fd, 0, 10, () => {})).toThrow(expect.objectContaining({ code: 'ENOTSOCK' }));
      } finally {
        client.destroy();
        server.destroy();
      }
    });
  });
});

describe('SendfilePolicy (server.sendfile)', () => {
  // A stand-in: the policy only decides, it never calls the addon.
  const addon = {} as NonNullable<typeof native>;

  it("by default ('fills') sends only fills' followers by sendfile, and a cached blob once enough others are buffered", () => {
    const policy = new SendfilePolicy('fills', addon);
    expect(policy.available).toBe(true);
    expect(policy.allows('fill')).toBe(true);
    expect(policy.allows('cached')).toBe(false);
    expect(policy.allows('cached', true)).toBe(true);
  });

  it("with 'all' sends every body by sendfile", () => {
    const policy = new SendfilePolicy('all', addon);
    expect(policy.allows('cached')).toBe(true);
    expect(policy.allows('fill')).toBe(true);
  });

  it("with 'off', or without the addon (missing, or server.nativeAddon: false), sends nothing by sendfile", () => {
    for (const policy of [new SendfilePolicy('off', addon), new SendfilePolicy('all', undefined), new SendfilePolicy('fills', undefined)]) {
      expect(policy.available).toBe(false);
      expect(policy.addon).toBeUndefined();
      expect(policy.allows('fill')).toBe(false);
      expect(policy.allows('cached', true)).toBe(false);
    }
  });
});
