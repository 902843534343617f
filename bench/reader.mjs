#!/usr/bin/env node
/**
 * A lean HTTP/1.1 GET for read throughput: the body lands in one reused 4 MiB buffer (net `onread`) and goes
 * nowhere, so a client costs far less CPU per byte than curl does — on 2 cores the readers share the CPU with
 * the server they measure. Plain JavaScript so it starts in milliseconds without a loader.
 *
 * usage: node bench/reader.mjs URL [CA_FILE]
 * An https URL is read over TLS, trusting the PEM file CA_FILE. Connects (and completes the handshake), writes `ready` to stderr, waits for a line on stdin (the bench's start barrier), sends the request,
 * and prints one JSON line: {"status","bytes","startMs","endMs","cpuS"} (epoch ms with sub-ms precision).
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

const url = new URL(process.argv[2] ?? '');
const now = () => performance.timeOrigin + performance.now();
const buffer = Buffer.alloc(4 << 20);
let head = '';
let status = 0;
let length = Infinity;
let bytes = -1; // body bytes once the headers are in
let startMs = 0;
let cpu0 = process.cpuUsage();

const finish = () => {
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write(`${JSON.stringify({ status, bytes: Math.max(bytes, 0), startMs, endMs: now(), cpuS: (cpu.user + cpu.system) / 1e6 })}\n`);
  socket.destroy();
};

const secure = url.protocol === 'https:';
const connect = secure ? tls.connect : net.connect;
const socket = connect({
  host: url.hostname,
  port: Number(url.port || (secure ? 443 : 80)),
  ...(secure ? { ca: process.argv[3] ? [readFileSync(process.argv[3])] : undefined, servername: net.isIP(url.hostname) ? undefined : url.hostname } : {}),
  onread: {
    buffer,
    callback(n) {
      if (bytes < 0) {
        head += buffer.toString('latin1', 0, n);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        status = Number(head.slice(9, 12));
        const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head.slice(0, end));
        if (cl) length = Number(cl[1]);
        bytes = head.length - end - 4;
      } else {
        bytes += n;
      }
      if (bytes >= length) finish();
    },
  },
});
socket.on('end', () => (bytes >= length ? undefined : finish()));
socket.on('error', (err) => {
  process.stderr.write(`reader: ${err.message}\n`);
  process.exit(1);
});
socket.on(secure ? 'secureConnect' : 'connect', () => {
  process.stderr.write('ready\n');
  process.stdin.once('data', () => {
    process.stdin.destroy();
    cpu0 = process.cpuUsage();
    startMs = now();
    socket.write(`GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\n\r\n`);
  });
});
