/**
 * @module cli/program
 * The `ocimirror` command line.
 */
import { Command } from 'commander';
import { registerGc } from './gc.ts';
import { registerPrefetch } from './prefetch.ts';
import { registerServe } from './serve.ts';

export function createProgram(): Command {
  const program = new Command('ocimirror').description('pull-through caching mirror for OCI / Docker registries');
  registerServe(program);
  registerPrefetch(program);
  registerGc(program);
  return program;
}
