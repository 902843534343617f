/**
 * @module cli/program
 * The `ocimirror` command line. Every failure is one `ocimirror: ...` line on stderr and an exit
 * code (cli/cli-error's EXIT):
 *
 * | code | meaning                                                                          |
 * |------|----------------------------------------------------------------------------------|
 * | 0    | done                                                                             |
 * | 1    | a job the command waited for failed (prefetch of a missing tag, gc); for serve:  |
 * |      | the drain was cut short (a second signal) or failed; for sync: an image failed   |
 * | 2    | invalid configuration, flag or argument (nothing was started)                    |
 * | 3    | the mirror at --url / OCIMIRROR_URL cannot be reached (refused, unknown host)    |
 * | 4    | the admin API refused: no token given, or the wrong one (401/403)                |
 * | 5    | the mirror refused the request, e.g. an image on a registry it does not serve    |
 * | 6    | the data directory is locked by another serve or gc --offline (its pid is named) |
 * | 7    | serve cannot listen: address in use, privileged port, no such interface          |
 * | 8    | the data directory or its database cannot be opened (permissions, not a dir)     |
 * | 70   | an internal error (a bug; its stack is printed)                                  |
 */
import { Command } from 'commander';
import { EXIT } from './cli-error.ts';
import { registerBundle } from './bundle.ts';
import { registerGc } from './gc.ts';
import { registerPrefetch } from './prefetch.ts';
import { registerServe } from './serve.ts';
import { registerSync } from './sync.ts';
import { registerToken } from './token.ts';

export function createProgram(): Command {
  const program = new Command('ocimirror').description('pull-through caching mirror for OCI / Docker registries');
  // Before the commands are added, so they inherit it: commander has printed the usage error by now.
  program.exitOverride((err) => process.exit(err.exitCode === 0 ? EXIT.ok : EXIT.usage));
  registerServe(program);
  registerPrefetch(program);
  registerGc(program);
  registerSync(program);
  registerToken(program);
  registerBundle(program);
  return program;
}
