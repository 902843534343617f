#!/usr/bin/env -S node --max-semi-space-size=8
// --max-semi-space-size=8: V8's young generation capped at 2 × 8 MiB instead of growing to 2 × 16 MiB
// under load (a lower peak RSS through the herd); only settable when node starts, so the image and `npm start` pass it too.
// The `ocimirror` command (`npx ocimirror` in a clone): runs the bundled build (`npm run build` →
// dist/ocimirror.mjs) when there is one at least as new as every source file, else the TypeScript
// sources through tsx's loader, so a clone being edited never runs a stale bundle.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dist = new URL('../dist/ocimirror.mjs', import.meta.url);
const src = fileURLToPath(new URL('../src', import.meta.url));

/** Newest modification time of the files under `dir` (0 when there is no such directory). */
function newest(dir) {
  if (!existsSync(dir)) return 0;
  let latest = 0;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) latest = Math.max(latest, statSync(`${entry.parentPath ?? entry.path}/${entry.name}`).mtimeMs);
  }
  return latest;
}

if (existsSync(dist) && statSync(dist).mtimeMs >= newest(src)) {
  await import(dist.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/main.ts');
}
