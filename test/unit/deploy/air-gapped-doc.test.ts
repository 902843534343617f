/**
 * @module test/unit/deploy/air-gapped-doc
 * docs/air-gapped.md is copied from: its sync file must parse as ocimirror (and skopeo's format)
 * reads it, and both configs must load with ocimirror's own parser, the air-gapped one with every
 * upstream offline and a hosted registry for the site's own images.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.ts';
import { parseSyncText } from '../../../src/sync/sync-file.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const DOC = readFileSync(path.join(ROOT, 'docs/air-gapped.md'), 'utf8');
const ENV = { DOCKERHUB_USER: 'me', DOCKERHUB_TOKEN: 'secret' };

const blocks = [...DOC.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({ lang: m[1] as string, text: m[2] as string, header: (m[2] as string).split('\n')[0]?.trim() ?? '' }));
const configs = blocks.filter((b) => b.lang === 'yaml' && b.header.startsWith('# ocimirror.yaml'));
const syncFile = blocks.find((b) => b.lang === 'yaml' && b.header === '# sync.yaml');

describe('docs/air-gapped.md', () => {
  it('has a sync file that parses, with the extension keys it describes', () => {
    const file = parseSyncText(syncFile?.text ?? '', 'docs sync.yaml');
    const hub = file.sources.find((s) => s.registry === 'docker.io');
    expect(hub?.images).toEqual({ 'library/alpine': ['3.19', '3.20'] });
    expect(hub?.latest).toBe(3);
    expect(file.sources.map((s) => s.registry)).toEqual(['docker.io', 'registry.k8s.io']);
  });

  it('has a connected-side and an air-gapped-side config that load with the real parser', () => {
    expect(configs.length).toBe(2);
    const [connected, airGapped] = configs.map((b) => parseConfig(parseYaml(b.text), { env: ENV }));
    expect(connected?.upstreams.every((u) => !u.offline)).toBe(true);
    expect(airGapped?.upstreams.every((u) => u.offline)).toBe(true);
    expect(airGapped?.hosted.map((h) => h.name)).toEqual(['registry.internal']);
    expect(airGapped?.auth?.rules[0]?.roles).toEqual(['push']);
  });
});
