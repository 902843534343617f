/**
 * @module util/logger
 * One pino logger per process, JSON lines on stdout; modules take a child (`log.child({ module })`).
 * Credentials never reach it: request headers are not logged, and upstream auth is redacted.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export function createLogger(level: LevelWithSilent = 'info', destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: 'ocimirror' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['authorization', '*.authorization', 'password', '*.password', '*.auth.password', 'token', '*.token'],
        censor: '[redacted]',
      },
    },
    (destination as pino.DestinationStream | undefined) ?? bufferedStdout(),
  );
}

/**
 * Stdout written in batches off the request path (a synchronous write per access-log line costs
 * a syscall per request), flushed at least every 200 ms and when the process exits.
 */
function bufferedStdout(): pino.DestinationStream {
  const dest = pino.destination({ dest: 1, sync: false, minLength: 8192 });
  setInterval(() => dest.flush(), 200).unref();
  process.once('exit', () => {
    try {
      dest.flushSync();
    } catch {
      /* stdout already gone */
    }
  });
  return dest;
}

/** A logger that drops everything, for tests and library use. */
export const silentLogger: Logger = pino({ level: 'silent' });
