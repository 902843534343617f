/**
 * @module test/unit/config/shipped-config
 * config/ocimirror.yaml is the reference for every option: each key the schema accepts appears in
 * it (set, or commented out with an example), under its section.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { DEFAULT_CONFIG_FILE } from '../../../src/config/load.ts';
import { createConfigSchema } from '../../../src/config/schema.ts';

/** Every key path the schema accepts ('upstreams[].auth.passwordEnv'), looking through defaults, transforms and unions. */
function keyPaths(schema: z.core.$ZodType, prefix = ''): string[] {
  const def = schema._zod.def as unknown as Record<string, unknown> & { type: string };
  switch (def.type) {
    case 'object':
      return Object.entries(def.shape as Record<string, z.core.$ZodType>).flatMap(([key, child]) => {
        const here = prefix ? `${prefix}.${key}` : key;
        return [here, ...keyPaths(child, here)];
      });
    case 'array':
      return keyPaths(def.element as z.core.$ZodType, `${prefix}[]`);
    case 'union':
      return (def.options as z.core.$ZodType[]).flatMap((o) => keyPaths(o, prefix));
    case 'pipe':
      return keyPaths(def.in as z.core.$ZodType, prefix);
    case 'default':
    case 'prefault':
    case 'optional':
    case 'nullable':
      return keyPaths(def.innerType as z.core.$ZodType, prefix);
    default:
      return [];
  }
}

/** 'a.b: x' lines of the YAML text, commented or not, with the sections they sit in by indentation. */
function documentedKeys(text: string): Set<string> {
  const found = new Set<string>();
  const stack: Array<{ indent: number; key: string }> = [];
  for (const line of text.split('\n')) {
    const m = /^(\s*)(#\s*)?(- )?([A-Za-z][A-Za-z0-9]*):(\s|$)/.exec(line);
    if (!m) continue;
    // A commented-out key is indented as it would be with its '# ' deleted.
    const indent = (m[1] ?? '').length + (m[2] ? m[2].length - 2 : 0) + (m[3] ? 2 : 0);
    while (stack.length > 0 && stack[stack.length - 1]!.indent >= indent) stack.pop();
    const parent = stack.map((s) => s.key).join('.');
    const key = m[4] as string;
    const full = parent ? `${parent}.${key}` : key;
    found.add(full);
    stack.push({ indent, key });
  }
  return found;
}

describe('config/ocimirror.yaml', () => {
  it('documents every key the schema accepts, under its section', () => {
    const expected = [...new Set(keyPaths(createConfigSchema()).map((p) => p.replace(/\[\]/g, '')))];
    expect(expected).toContain('upstreams.proxy.passwordEnv');
    const documented = documentedKeys(readFileSync(DEFAULT_CONFIG_FILE, 'utf8'));
    expect(expected.filter((key) => !documented.has(key))).toEqual([]);
  });
});
