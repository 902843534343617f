/**
 * @module http/body/sendfile
 * Sends a range of a file straight from the page cache to a client's TCP socket with Linux
 * sendfile(2), through the small native addon in native/sendfile (util/native-addon). Node's
 * stream path copies every byte through JavaScript buffers and tops out well below what the kernel can do (nginx serves
 * static files this way); the addon runs the copy non-blocking on the main event loop, a few MiB
 * per turn, so other sockets are still served.
 *
 * Where the addon is missing (not Linux, no compiler at install) or switched off
 * (server.nativeAddon: false, server.sendfile: off) the policy is unavailable and bodies are
 * copied through buffers instead (http/body/blob-writer).
 *
 * Which bodies use it ({@link SendfilePolicy.allows}, set by server.sendfile): by default ('fills') only clients
 * following a fill. A cached blob goes through buffers: measured here, Go clients (skopeo, like
 * containerd and CRI-O's containers/image) pulled a cached 512 MiB layer 9 % slower from sendfile
 * than from buffered writes (2.83 s against 2.57 s, 5 interleaved runs; straight from the upstream
 * 2.48 s), their own CPU up by ~0.3 s, while buffered reads still beat nginx's sendfile 1.65x. A
 * fill's followers keep sendfile: there it was no slower for skopeo, and a herd of 32 peaked at
 * 131-136 MiB RSS against 156 MiB with two read buffers per client. Past a few concurrent buffered
 * cached reads (http/body/blob-writer's BUFFERED_CACHED_MAX) the next goes by sendfile as well: 32 warm
 * readers of one blob, all buffered, took peak RSS from 119 to 164 MiB; by sendfile to 131.
 */
import type { Socket } from 'node:net';
import { abortable } from '../../util/abortable.ts';
import type { NativeAddon } from '../../util/native-addon.ts';

/** The bodies that may use sendfile (server.sendfile). */
export type SendfileUse = 'fills' | 'all' | 'off';

/** Which bodies go out by sendfile, and the addon that sends them. */
export class SendfilePolicy {
  /** The addon, when sendfile may be used at all. */
  readonly addon: NativeAddon | undefined;
  readonly #use: SendfileUse;

  /** `addon`: the loaded native addon, undefined where it is missing or switched off (server.nativeAddon). */
  constructor(use: SendfileUse, addon: NativeAddon | undefined) {
    this.#use = use;
    this.addon = use === 'off' ? undefined : addon;
  }

  /** Whether any body may go out by sendfile. */
  get available(): boolean {
    return this.addon !== undefined;
  }

  /**
   * Whether a body of this kind should go out by sendfile (and can). `busy`: enough cached blobs
   * are already being copied through buffers that another would cost more memory (two buffers per
   * response) than a Go client gains from it; under 'fills' it then goes by sendfile too.
   */
  allows(kind: 'fill' | 'cached', busy = false): boolean {
    return this.addon !== undefined && (this.#use === 'all' || kind === 'fill' || busy);
  }
}

function codeError(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

/**
 * Resolves once everything already written to `socket` (e.g. the HTTP head ServerResponse wrote on
 * `flushHeaders()`) is in the kernel. Writable runs writes and their callbacks in order, and net
 * calls a write's callback only when libuv has handed its bytes to the kernel, so an empty write's
 * callback comes after every earlier write's bytes. Bytes sendfile puts on the socket after that
 * cannot overtake them.
 */
function drained(socket: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.write('', (err) => (err ? reject(err) : resolve()));
  });
}

/**
 * Sends bytes [start, start + length) of the file open as `fd` on `socket` through the addon `native`, and resolves with the
 * bytes sent (always `length`) once the kernel has them all. The caller writes nothing else to
 * the socket until then; headers must already be written (`res.flushHeaders()`).
 *
 * Rejects with:
 * - code 'ENOTSOCK' when the socket is not one sendfile can write to (TLS, no fd, already
 *   destroyed): nothing was sent and the caller can stream instead;
 * - the socket's errno ('EPIPE', 'ECONNRESET', ...) when the client goes away;
 * - 'ECANCELED' when `signal` aborts, or the socket is closed from JavaScript (e.g. a timeout);
 * - 'ESHORT' when the file ends before the range does.
 * After any rejection but 'ENOTSOCK' some bytes may be on the wire (`err.bytesSent`): the response
 * is broken and the socket should be destroyed.
 */
export async function sendFileRange(native: NativeAddon, socket: Socket, fd: number, start: number, length: number, signal?: AbortSignal): Promise<number> {
  // A TLS socket's fd carries ciphertext: sendfile would write plaintext around the TLS layer.
  if ((socket as { encrypted?: boolean }).encrypted) throw codeError('ENOTSOCK', 'sendfile cannot write to a TLS socket');
  if (socket.destroyed || !socket.writable || socketFd(socket) === undefined) throw codeError('ENOTSOCK', 'the socket has no file descriptor to sendfile to');
  if (signal?.aborted) throw codeError('ECANCELED', 'sendfile aborted before it started');

  await abortable(drained(socket), signal, () => codeError('ECANCELED', 'sendfile aborted before it started'));
  const socketFdNow = socketFd(socket);
  if (socket.destroyed || socketFdNow === undefined) throw codeError('ECONNRESET', 'the socket closed before sendfile started');
  // Someone wrote after the head: sendfile's bytes would overtake theirs.
  if (socket.writableLength > 0) throw codeError('ENOTSOCK', 'the socket has writes queued; sendfile would reorder bytes');
  if (length === 0) return 0;

  return new Promise<number>((resolve, reject) => {
    let closedByPeer: Error | undefined;
    const cancel = () => native.cancel(handle);
    // The addon holds its own dup of the socket's fd, which keeps the connection open even after
    // net closes the original: when the socket closes (a timeout, a read error), stop too.
    const onClose = () => {
      const errored = socket.errored as NodeJS.ErrnoException | null;
      if (errored?.code) closedByPeer = codeError(errored.code, `the socket closed during sendfile: ${errored.message}`);
      cancel();
    };
    const handle = native.start(socketFdNow, fd, start, length, (err, sent) => {
      socket.off('close', onClose);
      signal?.removeEventListener('abort', cancel);
      if (!err) return resolve(sent);
      // Cancelled because the socket failed (reset by the client): report the socket's error.
      const reported = (err as NodeJS.ErrnoException).code === 'ECANCELED' && closedByPeer ? closedByPeer : err;
      reject(Object.assign(reported, { bytesSent: sent }));
    });
    socket.once('close', onClose);
    signal?.addEventListener('abort', cancel, { once: true });
  });
}

/** The socket's fd (a TCP or pipe handle on Unix), or undefined when it has none. */
function socketFd(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : undefined;
}
