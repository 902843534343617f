#!/usr/bin/env node
// The `ocimirror` command: runs the compiled build (`npm run build` → dist/) when there is one,
// else the TypeScript sources through tsx's loader.
import { existsSync } from 'node:fs';

const dist = new URL('../dist/main.js', import.meta.url);
if (existsSync(dist)) {
  await import(dist.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/main.ts');
}
