/**
 * @module test/unit/deploy/deployments-doc
 * The configs in docs/deployments.md are meant to be copied, so each must work as written: every
 * YAML block headed `# ocimirror.yaml` loads with ocimirror's own parser, the haproxy.cfg blocks
 * pass `haproxy -c`, and the Kustomize overlays build against the real base and replicas variant.
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
const ENV = { MIRROR_ADMIN_TOKEN: 'a'.repeat(32), DOCKERHUB_USER: 'me', DOCKERHUB_TOKEN: 'secret', OCIMIRROR_CLUSTER_SECRET: 'c'.repeat(64), AWS_ACCESS_KEY_ID: 'AKIADOC', AWS_SECRET_ACCESS_KEY: 'k'.repeat(40) };

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
const kustomizations = all.filter((b) => b.lang === 'yaml' && b.header === '# kustomization.yaml');
const kustomization = kustomizations[0];
const tool = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 }).status === 0;

describe('docs/deployments.md', () => {
  it('has an ocimirror config for each deployment', () => {
    expect(configs.length).toBe(4);
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

  it('sets cluster and the bucket only in the replicas config, with static peers that include self and secrets from the environment', () => {
    const clusters = configs.map((b) => parseConfig(parseYaml(b.text), { env: ENV }).cluster);
    expect(clusters.map((c) => c !== undefined)).toEqual([false, false, false, true]);
    const cluster = clusters[3];
    expect(cluster?.peers).toHaveLength(3);
    expect(cluster?.peers).toContain(cluster?.self);
    expect(cluster?.secret).toBe(ENV.OCIMIRROR_CLUSTER_SECRET);
    const storages = configs.map((b) => parseConfig(parseYaml(b.text), { env: ENV }).storage);
    expect(storages.map((st) => st.backend)).toEqual(['filesystem', 'filesystem', 'filesystem', 's3']);
    expect(storages[3]?.s3?.credentials).toEqual({ accessKeyId: ENV.AWS_ACCESS_KEY_ID, secretAccessKey: ENV.AWS_SECRET_ACCESS_KEY });
    const raw = parseYaml((configs[3] as Block).text) as Record<string, any>;
    expect(raw.server.proxyProtocol, 'replicas reach each other without a PROXY header').toBeUndefined();
  });

  it.skipIf(!tool('haproxy', ['-v']))('has haproxy.cfg blocks that haproxy -c accepts, in mode tcp with health checks on /readyz', () => {
    expect(haproxyCfg).toHaveLength(2);
    const [single, replicas] = haproxyCfg.map((b) => b.text) as [string, string];
    expect(single).toMatch(/send-proxy-v2/);
    expect(single).toMatch(/\bcheck\b.*check-send-proxy/);
    // The replicas' listener has no proxyProtocol, so neither traffic nor checks send the header.
    expect(replicas).not.toMatch(/send-proxy/);
    const config = parseConfig(parseYaml((configs[3] as Block).text), { env: ENV });
    const servers = [...replicas.matchAll(/^\s*server \S+ (\S+) .*\bcheck\b/gm)].map((m) => `http://${m[1]}`);
    expect(servers.sort()).toEqual([...(config.cluster?.peers ?? [])].sort());
    for (const text of [single, replicas]) {
      expect(text).toMatch(/mode tcp/);
      expect(text).toMatch(/option httpchk GET \/readyz/);
      const dir = mkdtempSync(path.join(tmpdir(), 'ocimirror-doc-'));
      try {
        const file = path.join(dir, 'haproxy.cfg');
        writeFileSync(file, text);
        const run = spawnSync('haproxy', ['-c', '-f', file], { encoding: 'utf8', timeout: 10_000 });
        expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  it.skipIf(!tool('kubectl', ['version', '--client']))('builds the replicas overlay on deploy/kubernetes/replicas with the cluster and bucket Secrets filled', () => {
    expect(kustomizations).toHaveLength(2);
    const dir = mkdtempSync(path.join(tmpdir(), 'ocimirror-overlay-'));
    try {
      const variant = path.relative(dir, path.join(ROOT, 'deploy/kubernetes/replicas'));
      writeFileSync(path.join(dir, 'kustomization.yaml'), (kustomizations[1] as Block).text.replace('../../deploy/kubernetes/replicas', variant));
      writeFileSync(path.join(dir, 'cluster.secret'), 'c'.repeat(64));
      writeFileSync(path.join(dir, 'aws-access-key-id'), ENV.AWS_ACCESS_KEY_ID);
      writeFileSync(path.join(dir, 'aws-secret-access-key'), ENV.AWS_SECRET_ACCESS_KEY);
      const run = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: 30_000 });
      expect(run.status, run.stderr).toBe(0);
      const objects = parseAllDocuments(run.stdout).map((d) => d.toJS() as Record<string, any>);
      const secret = objects.find((o) => o.kind === 'Secret' && o.metadata.name.startsWith('ocimirror-cluster')) as Record<string, any>;
      expect(Buffer.from(secret.data.secret, 'base64').toString()).toBe('c'.repeat(64));
      const sts = objects.find((o) => o.kind === 'StatefulSet') as Record<string, any>;
      const env = sts.spec.template.spec.containers[0].env as Array<Record<string, any>>;
      expect(env.find((e) => e.name === 'OCIMIRROR_CLUSTER_SECRET')?.valueFrom.secretKeyRef.name).toBe(secret.metadata.name);
      const bucket = objects.find((o) => o.kind === 'Secret' && o.metadata.name.startsWith('ocimirror-bucket')) as Record<string, any>;
      const bucketEnv: Record<string, string> = {};
      for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'] as const) {
        expect(env.find((e) => e.name === name)?.valueFrom.secretKeyRef, name).toEqual({ name: bucket.metadata.name, key: name });
        bucketEnv[name] = Buffer.from(bucket.data[name], 'base64').toString();
        expect(bucketEnv[name], name).toBe(ENV[name]);
      }
      const cm = objects.find((o) => o.kind === 'ConfigMap') as Record<string, any>;
      const config = parseConfig(parseYaml(cm.data['ocimirror.yaml']), { env: { OCIMIRROR_CLUSTER_SELF: 'http://10.244.0.5:5000', OCIMIRROR_CLUSTER_SECRET: 'c'.repeat(64), ...bucketEnv } });
      expect(config.cluster?.dns).toBe(`ocimirror-headless.${sts.metadata.namespace}.svc.cluster.local`);
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
