/**
 * @module main
 * Process entry point for `ocimirror` (bin/ocimirror.js) and `npm start`.
 */
import { createProgram } from './cli/program.ts';

await createProgram().parseAsync(process.argv);
