/**
 * @module test/unit/deploy/deployments-doc
 * The configs in docs/deployments.md are meant to be copied, so each must work as written: every
 * YAML block headed `# ocimirror.yaml` loads with ocimirror's own parser, the haproxy.cfg block
 * passes `haproxy -c`, and the Kustomize overlay builds against the real base.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const DOC = readFileSync(path.join(ROOT, 'docs/deployments.md'), 'utf8');

/** The environment the doc's `*Env` keys name, as an operator would export it. */
const ENV = { MIRROR_ADMIN_TOKEN: 'a'.repeat(32), DOCKERHUB_USER: 'me', DOCKERHUB_TOKEN: 'secret' };

interface Block {
  lang: string;
  header: string;
  text: string;
}

/** Fenced blocks with their language and first line. */
function blocks(markdown: string): Block[] {
  return [...markdown.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({
    lang: m[1] as string,
    text: m[2] as string,
    header: (m[2] as string).split('\n')[0]?.trim() ?? '',
  }));
}

const all = blocks(DOC);
const configs = all.filter((b) => b.lang === 'yaml' && b.header === '# ocimirror.yaml');
const haproxyCfg = all.filter((b) => b.header === '# haproxy.cfg');
const kustomization = all.find((b) => b.lang === 'yaml' && b.header === '# kustomization.yaml');
const tool = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 }).status === 0;

describe('docs/deployments.md', () => {
  it('has an ocimirror config for each deployment', () => {
    expect(configs.length).toBe(3);
  });

  it.each(configs.map((b, i) => [i + 1, b] as const))('loads ocimirror config %i with the real parser', (_i, block) => {
    expect(() => parseConfig(parseYaml(block.text), { env: ENV })).not.toThrow();
  });

  it('configures TLS, the PROXY protocol, accounts with rules and failover URLs in the on-premises config', () => {
    const config = parseConfig(parseYaml((configs[1] as Block).text), { env: ENV });
    expect(config.tls).toBeDefined();
    expect(config.server.proxyProtocol?.trustedCidrs.length).toBeGreaterThan(0);
    expect(config.auth?.anonymous).toBe('none');
    expect(config.auth?.rules.map((r) => [r.accounts, r.repositories, r.roles])).toEqual([
      [['node'], ['**'], ['pull']],
      [['ops'], ['**'], ['pull', 'push', 'admin']],
    ]);
    expect(config.upstreams[0]?.urls.length).toBe(2);
  });

  it('reports a config block that does not load, so the check can fail', () => {
    const broken = (configs[1] as Block).text.replace('trustedCidrs:', 'trustedCidr:');
    expect(() => parseConfig(parseYaml(broken), { env: ENV })).toThrow(/trustedCidr/);
  });

  it.skipIf(!tool('haproxy', ['-v']))('has a haproxy.cfg that haproxy -c accepts, in mode tcp with send-proxy-v2 and a health check', () => {
    expect(haproxyCfg).toHaveLength(1);
    const text = (haproxyCfg[0] as Block).text;
    expect(text).toMatch(/mode tcp/);
    expect(text).toMatch(/send-proxy-v2/);
    expect(text).toMatch(/\bcheck\b.*check-send-proxy/);
    const dir = mkdtempSync(path.join(tmpdir(), 'ocimirror-doc-'));
    try {
      const file = path.join(dir, 'haproxy.cfg');
      writeFileSync(file, text);
      const run = spawnSync('haproxy', ['-c', '-f', file], { encoding: 'utf8', timeout: 10_000 });
      expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!tool('kubectl', ['version', '--client']))('builds the Kustomize overlay on the real base, with both Secrets and the config replaced', () => {
    expect(kustomization).toBeDefined();
    const dir = mkdtempSync(path.join(tmpdir(), 'ocimirror-overlay-'));
    try {
      // The overlay as the doc lays it out, its base path pointed at this checkout.
      const base = path.relative(dir, path.join(ROOT, 'deploy/kubernetes'));
      writeFileSync(path.join(dir, 'kustomization.yaml'), (kustomization as Block).text.replace('../../deploy/kubernetes', base));
      writeFileSync(path.join(dir, 'ocimirror.yaml'), (configs[2] as Block).text);
      for (const f of ['tls.crt', 'tls.key', 'htpasswd', 'token.key']) writeFileSync(path.join(dir, f), `${f}\n`);
      const run = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: 30_000 });
      expect(run.status, run.stderr).toBe(0);
      const objects = parseAllDocuments(run.stdout).map((d) => d.toJS() as Record<string, any>);
      expect(new Set(objects.map((o) => o.metadata.namespace))).toEqual(new Set(['registry']));
      const secrets = objects.filter((o) => o.kind === 'Secret');
      expect(secrets).toHaveLength(2);
      const volumes = objects.find((o) => o.kind === 'Deployment')?.spec.template.spec.volumes as Array<Record<string, any>>;
      const names = volumes.map((v) => v.secret?.secretName ?? v.configMap?.name).filter(Boolean);
      for (const s of secrets.filter((o) => o.type !== 'kubernetes.io/tls')) expect(names).toContain(s.metadata.name);
      const auth = secrets.find((o) => o.type !== 'kubernetes.io/tls') as Record<string, any>;
      expect(Object.keys(auth.data).sort()).toEqual(['htpasswd', 'token.key']);
      const cm = objects.find((o) => o.kind === 'ConfigMap') as Record<string, any>;
      expect(cm.data['ocimirror.yaml']).toBe((configs[2] as Block).text);
      const ingress = objects.find((o) => o.kind === 'Ingress') as Record<string, any>;
      const hosts = (ingress.spec.rules as Array<Record<string, any>>).map((r) => r.host);
      expect(hosts.length).toBeGreaterThan(0);
      const config = parseConfig(parseYaml(cm.data['ocimirror.yaml']), { env: ENV });
      for (const h of hosts) expect(config.upstreams.some((u) => u.registries.includes(h)), h).toBe(true);
      expect([...ingress.spec.tls[0].hosts].sort()).toEqual([...hosts].sort());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
