/**
 * @module main
 * Process entry point for `ocimirror` (bin/ocimirror.js) and `npm start`.
 */
import v8 from 'node:v8';
import { createProgram } from './cli/program.ts';

// Old generation grows to 1.5× the live size after a collection, not up to 4×: under the bench's manifest load
// (wrk -c64) peak RSS 119–124 MiB against 156–158 without it, at the same request rate.
v8.setFlagsFromString('--heap-growing-percent=50');
// undici's WebAssembly parser (heads only; bodies use the bulk client) stays on Liftoff: a fresh mirror's cold
// pull costs 0.82–0.97 CPU-s against 0.98–1.10 with TurboFan's mid-pull recompile.
v8.setFlagsFromString('--liftoff-only');

await createProgram().parseAsync(process.argv);
