#!/usr/bin/env -S node --max-semi-space-size=8
// --max-semi-space-size=8: V8's young generation capped at 2 × 8 MiB instead of growing to 2 × 16 MiB
// under load (README "Memory"); only settable when node starts, so the image and `npm start` pass it too.
// The `ocimirror` command: runs the bundled build (`npm run build` → dist/ocimirror.mjs) when there is one,
// else the TypeScript sources through tsx's loader.
import { existsSync } from 'node:fs';

const dist = new URL('../dist/ocimirror.mjs', import.meta.url);
if (existsSync(dist)) {
  await import(dist.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/main.ts');
}
