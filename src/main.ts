/**
 * @module main
 * Process entry point for `ocimirror` (bin/ocimirror.js) and `npm start`.
 */
import v8 from 'node:v8';
import { createProgram } from './cli/program.ts';

// Memory (README "Memory"), measured on Node 20: under a manifest load the old generation grew to
// ~80 MiB between major collections while ~17 MiB of it was live; letting it grow to 1.5× the live
// size after each collection (instead of up to 4×) keeps RSS near 110 MiB at the same request rate.
v8.setFlagsFromString('--heap-growing-percent=50');
// undici's HTTP parser (llhttp) is WebAssembly. V8 starts it on its baseline compiler (Liftoff) and,
// after a few upstream responses, recompiles its 33 KB state-machine function with TurboFan on a
// background thread: 0.4–0.57 s of CPU and a 29 MiB compiler zone (5–10k more page faults), in a fresh
// process during its first pull, competing with the fill and the client for the cores. undici only
// parses heads and small bodies here (blob bodies use the bulk client), where the baseline code is
// as fast as the client can tell; so WebAssembly stays on Liftoff (measured: README "Memory").
v8.setFlagsFromString('--liftoff-only');

await createProgram().parseAsync(process.argv);
