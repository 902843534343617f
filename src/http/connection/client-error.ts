/**
 * @module http/connection/client-error
 * The answer to bytes node:http could not make a request of (a malformed request, a TLS
 * ClientHello on the plain-HTTP port, headers slower than server.headersTimeout): the OCI
 * envelope, 400 BAD_REQUEST or 408 REQUEST_TIMEOUT, then the connection closes. Responses still
 * owed on that connection (pipelined requests parsed before the bad one) go out whole first:
 * writing at once would land the error inside a body in flight.
 */
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { RegistryError } from '../../registry/errors.ts';
import type { Logger } from '../../util/logger.ts';
import { errorResponse } from '../render-error.ts';

const STATE = Symbol('ocimirror.connection-state');

interface ConnectionState {
  /** Responses started on this connection whose 'close' has not come yet. */
  open: number;
  /** The error answer waiting for `open` to reach 0, once the parser failed. */
  failure: Buffer | undefined;
}

type Tracked = Duplex & { [STATE]?: ConnectionState };

function stateOf(socket: Duplex): ConnectionState {
  return ((socket as Tracked)[STATE] ??= { open: 0, failure: undefined });
}

/** A whole HTTP/1.1 response carrying the envelope for `err`, closing the connection. */
function rawResponse(err: RegistryError): Buffer {
  const { status, headers, body } = errorResponse(err, 'GET');
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`];
  for (const [name, value] of Object.entries({ ...headers, Connection: 'close' })) lines.push(`${name}: ${value}`);
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n${body ?? ''}`);
}

const BAD_REQUEST = rawResponse(new RegistryError('BAD_REQUEST', { message: 'the request is not valid HTTP/1.1' }));
const REQUEST_TIMEOUT = rawResponse(new RegistryError('REQUEST_TIMEOUT'));

/** Call when a request's response starts on `socket`; `responseClosed` when that response's 'close' comes. */
export function responseStarted(socket: Duplex): void {
  stateOf(socket).open++;
}

export function responseClosed(socket: Duplex): void {
  const state = stateOf(socket);
  if (--state.open === 0 && state.failure) answer(socket, state.failure);
}

function answer(socket: Duplex, failure: Buffer): void {
  // node:http's own responses (a 417 for an unknown Expect) are not counted: one still on the
  // socket means it cannot take another response now.
  const busy = (socket as Duplex & { _httpMessage?: unknown })._httpMessage;
  if (socket.destroyed || !socket.writable || busy) {
    socket.destroy();
    return;
  }
  socket.end(failure, () => socket.destroy());
}

/** The server's 'clientError' listener: never crashes, never writes into a response in flight. */
export function createClientErrorHandler(log: Logger): (err: Error & { code?: string }, socket: Duplex) => void {
  return (err, socket) => {
    const state = stateOf(socket);
    // The failed parser reports again for every later chunk: the first report decides.
    if (state.failure) return;
    state.failure = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? REQUEST_TIMEOUT : BAD_REQUEST;
    log.debug({ err: err.message, code: err.code, waiting: state.open }, 'client error');
    if (state.open === 0) answer(socket, state.failure);
  };
}
