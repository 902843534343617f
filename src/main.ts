/**
 * @module main
 * Process entry point for `ocimirror` (bin/ocimirror.js) and `npm start`.
 */
import v8 from 'node:v8';
import { createProgram } from './cli/program.ts';

// undici parses HTTP with llhttp compiled to WebAssembly. V8's optimising compile of that module
// on the first upstream request costs a ~37 MiB RSS spike and ~10 MiB that stays (measured on
// Node 20); the baseline compiler's code parses response heads just as well (bodies pass through
// in one call per chunk). Set before anything compiles WebAssembly.
v8.setFlagsFromString('--liftoff-only');

await createProgram().parseAsync(process.argv);
