/**
 * @module util/package-root
 * The installed package's root: the nearest directory above this module holding package.json.
 * Files shipped beside the code (config/, native/) are found from there, because a module runs
 * at different depths: src/x/y.ts under tsx and vitest, dist/ocimirror.mjs as the built bundle.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export function packageRoot(): string | undefined {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}
