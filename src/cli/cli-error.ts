/**
 * @module cli/cli-error
 * How a command fails: one line on stderr and an exit code from {@link EXIT} (the table is
 * documented in cli/program.ts), so scripts can tell "mirror down" from "bad token" from "port taken".
 */
import { ConfigError } from '../config/config-error.ts';
import { DataDirLockedError } from './data-lock.ts';

export const EXIT = {
  ok: 0,
  jobFailed: 1,
  usage: 2,
  unreachable: 3,
  unauthorized: 4,
  refused: 5,
  locked: 6,
  cannotListen: 7,
  dataDir: 8,
  internal: 70,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A failure the CLI explains in one line. */
export class CliError extends Error {
  readonly exitCode: ExitCode;

  constructor(message: string, exitCode: ExitCode, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

const LISTEN_REASONS: Record<string, string> = {
  EADDRINUSE: 'the address is already in use (another process listens there)',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EADDRNOTAVAIL: 'no interface of this host has that address',
};

/** Node's system errors: code, syscall, and the path or address they concern. */
interface SystemError extends Error {
  code?: string;
  syscall?: string;
  path?: string;
  address?: string;
  port?: number;
}

/** The one line and exit code for anything a command threw. */
function toCliError(err: unknown): CliError {
  if (err instanceof CliError) return err;
  if (err instanceof ConfigError) return new CliError(err.message, EXIT.usage, { cause: err });
  if (err instanceof DataDirLockedError) return new CliError(err.message, EXIT.locked, { cause: err });
  const sys = err as SystemError;
  if (sys instanceof Error && sys.syscall === 'listen' && sys.code !== undefined) {
    const where = sys.address === undefined ? '' : ` ${sys.address.includes(':') ? `[${sys.address}]` : sys.address}:${sys.port}`;
    return new CliError(`cannot listen on${where}: ${LISTEN_REASONS[sys.code] ?? sys.message} (${sys.code}); set listen, --listen or OCIMIRROR_LISTEN`, EXIT.cannotListen, { cause: err });
  }
  if (sys instanceof Error && sys.path !== undefined && sys.code !== undefined) {
    return new CliError(`cannot use ${sys.path}: ${sys.message}`, EXIT.dataDir, { cause: err });
  }
  if (sys instanceof Error && (sys.code === 'SQLITE_CANTOPEN' || sys.code === 'SQLITE_READONLY' || sys.code === 'SQLITE_NOTADB' || sys.code === 'SQLITE_CORRUPT')) {
    return new CliError(`cannot open the metadata database in the data directory: ${sys.message} (${sys.code})`, EXIT.dataDir, { cause: err });
  }
  const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
  return new CliError(`internal error (please report it): ${detail}`, EXIT.internal, { cause: err });
}

/** Prints `err` as one `ocimirror: ...` line (a bug keeps its stack) and exits with its code. */
function exitWith(err: unknown): never {
  const cli = toCliError(err);
  process.stderr.write(`ocimirror: ${cli.message}\n`);
  process.exit(cli.exitCode);
}

/** Wraps a commander action so that whatever it throws ends the process through {@link exitWith}. */
export function handled<A extends unknown[]>(action: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (err) {
      exitWith(err);
    }
  };
}
