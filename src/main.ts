/**
 * @module main
 * Process entry point for `ocimirror` (bin/ocimirror.js) and `npm start`.
 */
import v8 from 'node:v8';
import { createProgram } from './cli/program.ts';

// Memory (README "Memory"), measured on Node 20: under a manifest load the old generation grew to
// ~80 MiB between major collections while ~17 MiB of it was live; letting it grow to 1.5× the live
// size after each collection (instead of up to 4×) keeps RSS near 110 MiB at the same request rate.
// (`--liftoff-only`, which would spare the ~37 MiB spike of compiling undici's WebAssembly HTTP
// parser, halved manifest hits per second when set at run time, so it is not used.)
v8.setFlagsFromString('--heap-growing-percent=50');

await createProgram().parseAsync(process.argv);
