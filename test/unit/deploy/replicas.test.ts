/**
 * @module test/unit/deploy/replicas
 * The three-replica variant in deploy/kubernetes/replicas: every manifest validates against the
 * Kubernetes API schemas, the config loads with ocimirror's own parser in the environment the pod
 * gets (on the shared bucket, each claim holding a disk tier), the names the config reads (selfEnv,
 * secretEnv, dns, the bucket's key variables) are the ones the manifests set, and what it shares
 * with the single-replica base stays identical to it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { StatefulSet } from 'kubernetes-models/apps/v1';
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { parseConfig } from '../../../src/config/load.ts';
import { parseDuration } from '../../../src/config/units.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const BASE = path.join(ROOT, 'deploy/kubernetes');
const DIR = path.join(BASE, 'replicas');

type Obj = Record<string, any>;

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'apps/v1/StatefulSet': StatefulSet,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'networking.k8s.io/v1/Ingress': Ingress,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

function docs(file: string): Obj[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).map((d) => {
    expect(d.errors, file).toEqual([]);
    return d.toJS() as Obj;
  });
}

const kustomization = parseYaml(readFileSync(path.join(DIR, 'kustomization.yaml'), 'utf8')) as Obj;
const resources = kustomization.resources as string[];
const generator = (kustomization.configMapGenerator as Obj[])[0] as Obj;
const configFile = (generator.files as string[])[0] as string;
const configText = readFileSync(path.join(DIR, configFile), 'utf8');
const objects: Obj[] = [
  ...resources.flatMap((f) => docs(path.join(DIR, f))),
  { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: generator.name }, data: { [configFile]: configText } },
];

function named(kind: string, name?: string): Obj {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  expect(found, `${kind} ${name ?? ''}`).toHaveLength(1);
  return found[0] as Obj;
}

const sts = named('StatefulSet');
const pod = sts.spec.template.spec as Obj;
const container = pod.containers[0] as Obj;
const headless = named('Service', sts.spec.serviceName);
const service = objects.find((o) => o.kind === 'Service' && o !== headless) as Obj;
const pdb = named('PodDisruptionBudget');
const envVar = (name: string) => (container.env as Obj[]).find((e) => e.name === name);

const POD_IP = '10.244.1.7';
const CLUSTER_SECRET = 'f'.repeat(64);
const KEY_ID = 'AKIAOCIMIRRORTEST';
const SECRET_KEY = 's'.repeat(40);

/** What an overlay puts in the Secrets, by `secret/key`. */
const SECRETS: Readonly<Record<string, string>> = {
  'ocimirror-cluster/secret': CLUSTER_SECRET,
  'ocimirror-bucket/AWS_ACCESS_KEY_ID': KEY_ID,
  'ocimirror-bucket/AWS_SECRET_ACCESS_KEY': SECRET_KEY,
};

/** What the process sees: the image's ENV, then the container's env with $(VAR) expanded and valueFrom resolved as the kubelet would. */
function podEnv(overrides: Readonly<Record<string, string>> = {}): Record<string, string> {
  const secrets = { ...SECRETS, ...overrides };
  const env: Record<string, string> = {};
  for (const m of readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8').matchAll(/\b(OCIMIRROR_[A-Z_]+)=(\S+)/g)) env[m[1] as string] = m[2] as string;
  for (const e of container.env as Obj[]) {
    if (e.valueFrom?.fieldRef) {
      expect(e.valueFrom.fieldRef.fieldPath).toBe('status.podIP');
      env[e.name] = POD_IP;
    } else if (e.valueFrom?.secretKeyRef) {
      const ref = e.valueFrom.secretKeyRef as Obj;
      const s = named('Secret', ref.name);
      expect(Object.keys(s.data), `Secret ${ref.name}`).toContain(ref.key);
      const value = secrets[`${ref.name}/${ref.key}`];
      expect(value, `a value for ${ref.name}/${ref.key}`).toBeDefined();
      env[e.name] = value as string;
    } else {
      env[e.name] = (e.value as string).replace(/\$\(([A-Z_]+)\)/g, (_, v: string) => {
        expect(env[v], `${v} defined before ${e.name}`).toBeDefined();
        return env[v] as string;
      });
    }
  }
  return env;
}

const raw = parseYaml(configText) as Obj;
const config = () => parseConfig(parseYaml(configText), { env: podEnv() });

describe('deploy/kubernetes/replicas', () => {
  it('lists every manifest in the folder, and every listed file exists', () => {
    const listed = new Set([...resources, configFile, 'kustomization.yaml']);
    for (const f of listed) expect(existsSync(path.join(DIR, f)), f).toBe(true);
    expect(readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f) && !listed.has(f))).toEqual([]);
  });

  it('validates every manifest against the Kubernetes API schemas', () => {
    expect(objects.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Ingress', 'PodDisruptionBudget', 'Secret', 'Secret', 'Secret', 'Secret', 'Service', 'Service', 'StatefulSet']);
    for (const obj of objects) {
      const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
      expect(Model, `a model for ${obj.apiVersion} ${obj.kind}`).toBeDefined();
      expect(() => new (Model as NonNullable<typeof Model>)(obj as never).validate(), `${obj.kind} ${obj.metadata?.name}`).not.toThrow();
    }
  });

  it('loads the mounted config with the environment the pod gets, self built from the pod IP', () => {
    expect(podEnv().OCIMIRROR_CONFIG).toBe(`${container.volumeMounts.find((m: Obj) => m.name === 'config').mountPath}/${configFile}`);
    const c = config();
    expect(c.cluster?.self).toBe(`http://${POD_IP}:${c.listen.port}`);
    expect(c.cluster?.secret).toBe(CLUSTER_SECRET);
    expect(c.cluster?.peers).toBeUndefined();
    expect(c.storage.backend).toBe('s3');
    expect(c.storage.s3).toMatchObject({ bucket: 'ocimirror', prefix: 'mirror/', forcePathStyle: true, credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET_KEY } });
  });

  it('refuses to start while the cluster Secret is still the empty placeholder', () => {
    expect(named('Secret', 'ocimirror-cluster').data.secret).toBe('');
    expect(() => parseConfig(parseYaml(configText), { env: podEnv({ 'ocimirror-cluster/secret': '' }) })).toThrow(/fewer than 32/);
  });

  it('refuses to start while the bucket Secret still holds the empty placeholders', () => {
    expect(named('Secret', 'ocimirror-bucket').data).toEqual({ AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '' });
    for (const [key, variable] of [['ocimirror-bucket/AWS_ACCESS_KEY_ID', 'AWS_ACCESS_KEY_ID'], ['ocimirror-bucket/AWS_SECRET_ACCESS_KEY', 'AWS_SECRET_ACCESS_KEY']] as const) {
      expect(() => parseConfig(parseYaml(configText), { env: podEnv({ [key]: '' }) }), key).toThrow(new RegExp(variable));
    }
  });

  it('sets the variables the config names in accessKeyIdEnv and secretAccessKeyEnv from the bucket Secret', () => {
    const { accessKeyIdEnv, secretAccessKeyEnv } = raw.storage.s3 as Obj;
    for (const variable of [accessKeyIdEnv, secretAccessKeyEnv] as string[]) {
      expect(envVar(variable)?.valueFrom.secretKeyRef, variable).toEqual({ name: 'ocimirror-bucket', key: variable });
    }
  });

  it('sets the variables the config names in selfEnv and secretEnv, the secret from a secretKeyRef and self from status.podIP', () => {
    const { selfEnv, secretEnv } = raw.cluster as Obj;
    expect(envVar(selfEnv)?.value).toMatch(/^http:\/\/\$\(([A-Z_]+)\):\d+$/);
    const ipVar = /\$\(([A-Z_]+)\)/.exec(envVar(selfEnv)?.value)?.[1] as string;
    expect(envVar(ipVar)?.valueFrom.fieldRef.fieldPath).toBe('status.podIP');
    expect(envVar(secretEnv)?.valueFrom.secretKeyRef.name).toBe('ocimirror-cluster');
  });

  it('finds members through a headless Service that selects the StatefulSet\'s ready pods, named in cluster.dns', () => {
    expect(headless.spec.clusterIP).toBe('None');
    expect(headless.spec.publishNotReadyAddresses).toBe(false);
    expect(sts.spec.template.metadata.labels).toMatchObject(headless.spec.selector);
    expect(sts.spec.template.metadata.labels).toMatchObject(sts.spec.selector.matchLabels);
    expect(config().cluster?.dns).toBe(`${headless.metadata.name}.${kustomization.namespace}.svc.cluster.local`);
    for (const s of [headless, service]) {
      const target = s.spec.ports[0].targetPort;
      expect(container.ports.find((p: Obj) => p.name === target)?.containerPort, s.metadata.name).toBe(config().listen.port);
    }
    expect(sts.spec.template.metadata.labels).toMatchObject(service.spec.selector);
  });

  it('gives each of three replicas its own claim at storage.path, larger than its disk tier, which is smaller than the bucket quota', () => {
    expect(sts.spec.replicas).toBe(3);
    const claim = sts.spec.volumeClaimTemplates[0] as Obj;
    const mount = (container.volumeMounts as Obj[]).find((m) => m.mountPath === config().storage.path);
    expect(mount?.name).toBe(claim.metadata.name);
    expect((pod.volumes as Obj[]).some((v) => v.name === mount?.name || v.persistentVolumeClaim)).toBe(false);
    expect(claim.spec.accessModes).toEqual(['ReadWriteOnce']);
    const gi = Number(/^(\d+)Gi$/.exec(claim.spec.resources.requests.storage)?.[1]);
    const { localCache, maxSize } = config().storage;
    expect(localCache.maxSize, 'a bounded disk tier (0 = unlimited)').toBeGreaterThan(0);
    expect(localCache.maxSize).toBeLessThan(gi * 2 ** 30);
    expect(maxSize).toBeGreaterThan(localCache.maxSize);
  });

  it('lets a drain take one replica at a time', () => {
    expect(pdb.spec.maxUnavailable).toBe(1);
    expect(pdb.spec.minAvailable).toBeUndefined();
    expect(sts.spec.template.metadata.labels).toMatchObject(pdb.spec.selector.matchLabels);
  });

  it('keeps the base pod\'s probes, preStop, security, resources and mounts, with enough grace for sleep, drainDelay and shutdownGrace', () => {
    const deployment = docs(path.join(BASE, 'deployment.yaml'))[0] as Obj;
    const basePod = deployment.spec.template.spec as Obj;
    const baseContainer = basePod.containers[0] as Obj;
    for (const key of ['livenessProbe', 'readinessProbe', 'startupProbe', 'lifecycle', 'securityContext', 'resources', 'volumeMounts', 'ports', 'image']) {
      expect(container[key], key).toEqual(baseContainer[key]);
    }
    for (const key of ['securityContext', 'terminationGracePeriodSeconds', 'automountServiceAccountToken', 'enableServiceLinks']) expect(pod[key], key).toEqual(basePod[key]);
    expect(pod.volumes).toEqual((basePod.volumes as Obj[]).filter((v) => !v.persistentVolumeClaim));
    const c = config();
    const sleepMs = parseDuration(`${container.lifecycle.preStop.exec.command[1]}s`) as number;
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(sleepMs + c.server.drainDelay + c.server.shutdownGrace);
  });

  it('shares the base\'s Service, Ingress and Secrets unchanged, and its config apart from cluster and storage, with the same storage.path', () => {
    for (const file of ['service.yaml', 'ingress.yaml', 'secret-tls.yaml', 'secret-auth.yaml']) {
      expect(docs(path.join(DIR, file)), file).toEqual(docs(path.join(BASE, file)));
    }
    const baseConfig = parseYaml(readFileSync(path.join(BASE, 'ocimirror.yaml'), 'utf8')) as Obj;
    const { cluster: _cluster, storage, ...rest } = raw;
    const { storage: baseStorage, ...baseRest } = baseConfig;
    expect(rest).toEqual(baseRest);
    expect(storage.path).toBe(baseStorage.path);
  });

  it.skipIf(spawnSync('kubectl', ['version', '--client'], { timeout: 10_000 }).status !== 0)('builds with kubectl kustomize into one namespace, the StatefulSet mounting the generated ConfigMap', () => {
    const run = spawnSync('kubectl', ['kustomize', DIR], { encoding: 'utf8', timeout: 30_000 });
    expect(run.status, run.stderr).toBe(0);
    const built = parseAllDocuments(run.stdout).map((d) => d.toJS() as Obj);
    expect(built).toHaveLength(objects.length);
    expect(new Set(built.map((o) => o.metadata.namespace))).toEqual(new Set([kustomization.namespace]));
    const cm = built.find((o) => o.kind === 'ConfigMap') as Obj;
    expect(cm.data[configFile]).toBe(configText);
    const builtSts = built.find((o) => o.kind === 'StatefulSet') as Obj;
    expect(builtSts.spec.template.spec.volumes.map((v: Obj) => v.configMap?.name)).toContain(cm.metadata.name);
    expect(builtSts.spec.template.spec.containers[0].image).toBe(`ocimirror:${kustomization.images[0].newTag}`);
    const refs = (builtSts.spec.template.spec.containers[0].env as Obj[]).map((e) => e.valueFrom?.secretKeyRef?.name).filter(Boolean);
    for (const name of ['ocimirror-cluster', 'ocimirror-bucket']) {
      expect(refs, name).toContain(name);
      expect(built.some((o) => o.kind === 'Secret' && o.metadata.name === name), name).toBe(true);
    }
    for (const obj of built) {
      const Model = MODELS[`${obj.apiVersion}/${obj.kind}`] as NonNullable<(typeof MODELS)[string]>;
      expect(() => new Model(obj as never).validate(), `${obj.kind} ${obj.metadata.name}`).not.toThrow();
    }
  });
});
