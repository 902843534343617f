/**
 * @module test/unit/deploy/kubernetes
 * The Kustomize base in deploy/kubernetes: every manifest is listed, validates against the
 * Kubernetes API schemas (kubernetes-models) and uses only keys the API defines, and the numbers in
 * the manifests agree with the config they mount, read with ocimirror's own loader.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { DaemonSet, Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, PersistentVolumeClaim, Secret, Service } from 'kubernetes-models/v1';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { parseConfig } from '../../../src/config/load.ts';
import { parseDuration } from '../../../src/config/units.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const BASE = path.join(ROOT, 'deploy/kubernetes');

type Obj = Record<string, any>;

/** The model classes by `apiVersion/kind`; a kind missing here fails the validation test. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'apps/v1/DaemonSet': DaemonSet,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'networking.k8s.io/v1/Ingress': Ingress,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

interface Kustomization {
  dir: string;
  resources: string[];
  generated: string[];
  objects: Obj[];
}

/** Reads a kustomization the way kustomize would for this base: resources, plus configMapGenerator files as ConfigMaps. */
function readKustomization(dir: string): Kustomization {
  const k = parseYaml(readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')) as Obj;
  const resources = (k.resources ?? []) as string[];
  const objects: Obj[] = [];
  for (const file of resources) {
    for (const doc of parseAllDocuments(readFileSync(path.join(dir, file), 'utf8'))) {
      expect(doc.errors, file).toEqual([]);
      const value = doc.toJS() as Obj | null;
      if (value) objects.push(value);
    }
  }
  const generated: string[] = [];
  for (const gen of (k.configMapGenerator ?? []) as Obj[]) {
    const data: Record<string, string> = {};
    for (const file of (gen.files ?? []) as string[]) {
      generated.push(file);
      data[path.basename(file)] = readFileSync(path.join(dir, file), 'utf8');
    }
    objects.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: gen.name }, data });
  }
  return { dir, resources, generated, objects };
}

const base = readKustomization(BASE);
const examples = readKustomization(path.join(BASE, 'examples'));
const all = [...base.objects, ...examples.objects];

function one(objects: Obj[], kind: string): Obj {
  const found = objects.filter((o) => o.kind === kind);
  expect(found, kind).toHaveLength(1);
  return found[0] as Obj;
}

const deployment = one(base.objects, 'Deployment');
const service = one(base.objects, 'Service');
const ingress = one(base.objects, 'Ingress');
const pvc = one(base.objects, 'PersistentVolumeClaim');
const pdb = one(base.objects, 'PodDisruptionBudget');
const secrets = base.objects.filter((o) => o.kind === 'Secret');
const secret = secrets.find((o) => o.type === 'kubernetes.io/tls') as Obj;
const authSecret = secrets.find((o) => o.metadata.name === 'ocimirror-auth') as Obj;
const configMap = one(base.objects, 'ConfigMap');
const daemonSet = one(examples.objects, 'DaemonSet');
const pod = deployment.spec.template.spec as Obj;
const container = pod.containers[0] as Obj;

/** The image's ENV (Dockerfile) with the container's env on top: what the process sees. */
function processEnv(): Record<string, string> {
  const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  const env: Record<string, string> = {};
  for (const m of dockerfile.matchAll(/\b(OCIMIRROR_[A-Z_]+)=(\S+)/g)) env[m[1] as string] = m[2] as string;
  for (const e of (container.env ?? []) as Obj[]) env[e.name] = e.value;
  return env;
}

function mountedConfig() {
  const configPath = processEnv().OCIMIRROR_CONFIG as string;
  const mount = (container.volumeMounts as Obj[]).find((m) => configPath.startsWith(`${m.mountPath}/`));
  expect(mount, `a volume mounted over ${configPath}`).toBeDefined();
  const volume = (pod.volumes as Obj[]).find((v) => v.name === mount?.name);
  expect(volume?.configMap?.name).toBe(configMap.metadata.name);
  const text = configMap.data[path.basename(configPath)] as string;
  expect(text, `ConfigMap key ${path.basename(configPath)}`).toBeTypeOf('string');
  return { raw: parseYaml(text) as unknown, fileOnly: parseConfig(parseYaml(text)), effective: parseConfig(parseYaml(text), { env: processEnv() }) };
}

/** A port given by number or by the container port's name, as Kubernetes resolves it. */
function containerPort(port: number | string): number | undefined {
  if (typeof port === 'number') return port;
  return (container.ports as Obj[]).find((p) => p.name === port)?.containerPort;
}

// ---- unknown keys: kubernetes-models checks types and required fields, not extra keys ----

/** `true` accepts any value; an object lists the keys allowed at that level (arrays: per element). */
type Shape = true | { [key: string]: Shape };

const metadata: Shape = { name: true, namespace: true, labels: true, annotations: true, generateName: true };
const labelSelector: Shape = { matchLabels: true, matchExpressions: true };
const httpGet: Shape = { path: true, port: true, host: true, scheme: true, httpHeaders: true };
const probe: Shape = {
  httpGet, exec: { command: true }, tcpSocket: { port: true, host: true }, grpc: true,
  initialDelaySeconds: true, periodSeconds: true, timeoutSeconds: true, successThreshold: true, failureThreshold: true, terminationGracePeriodSeconds: true,
};
const handler: Shape = { exec: { command: true }, httpGet, tcpSocket: true, sleep: { seconds: true } };
const containerShape: Shape = {
  name: true, image: true, imagePullPolicy: true, command: true, args: true, workingDir: true, env: { name: true, value: true, valueFrom: true }, envFrom: true,
  ports: { name: true, containerPort: true, protocol: true, hostPort: true, hostIP: true },
  livenessProbe: probe, readinessProbe: probe, startupProbe: probe, lifecycle: { preStop: handler, postStart: handler },
  resources: { requests: true, limits: true, claims: true },
  securityContext: {
    runAsUser: true, runAsGroup: true, runAsNonRoot: true, allowPrivilegeEscalation: true, readOnlyRootFilesystem: true, privileged: true,
    capabilities: { add: true, drop: true }, seccompProfile: { type: true, localhostProfile: true }, procMount: true, seLinuxOptions: true, appArmorProfile: true,
  },
  volumeMounts: { name: true, mountPath: true, readOnly: true, subPath: true, subPathExpr: true, mountPropagation: true, recursiveReadOnly: true },
  terminationMessagePath: true, terminationMessagePolicy: true, stdin: true, tty: true, resizePolicy: true, restartPolicy: true,
};
const podSpec: Shape = {
  containers: containerShape, initContainers: containerShape, volumes: {
    name: true, persistentVolumeClaim: { claimName: true, readOnly: true }, configMap: { name: true, items: true, defaultMode: true, optional: true },
    secret: { secretName: true, items: true, defaultMode: true, optional: true }, emptyDir: { medium: true, sizeLimit: true }, hostPath: { path: true, type: true },
  },
  securityContext: {
    runAsUser: true, runAsGroup: true, runAsNonRoot: true, fsGroup: true, fsGroupChangePolicy: true, supplementalGroups: true,
    seccompProfile: { type: true, localhostProfile: true }, sysctls: true, seLinuxOptions: true, appArmorProfile: true,
  },
  terminationGracePeriodSeconds: true, automountServiceAccountToken: true, enableServiceLinks: true, serviceAccountName: true, nodeSelector: true,
  affinity: true, tolerations: true, topologySpreadConstraints: true, priorityClassName: true, restartPolicy: true, dnsPolicy: true, hostNetwork: true, imagePullSecrets: true,
};
const template: Shape = { metadata, spec: podSpec };
const ingressBackend: Shape = { service: { name: true, port: { name: true, number: true } }, resource: true };

const SHAPES: Record<string, Shape> = {
  Deployment: { apiVersion: true, kind: true, metadata, spec: { replicas: true, selector: labelSelector, template, strategy: { type: true, rollingUpdate: true }, minReadySeconds: true, revisionHistoryLimit: true, progressDeadlineSeconds: true, paused: true } },
  DaemonSet: { apiVersion: true, kind: true, metadata, spec: { selector: labelSelector, template, updateStrategy: true, minReadySeconds: true, revisionHistoryLimit: true } },
  Service: { apiVersion: true, kind: true, metadata, spec: { type: true, selector: true, ports: { name: true, port: true, targetPort: true, protocol: true, nodePort: true, appProtocol: true }, clusterIP: true, sessionAffinity: true, externalTrafficPolicy: true, internalTrafficPolicy: true, ipFamilyPolicy: true, publishNotReadyAddresses: true } },
  Ingress: { apiVersion: true, kind: true, metadata, spec: { ingressClassName: true, defaultBackend: ingressBackend, tls: { hosts: true, secretName: true }, rules: { host: true, http: { paths: { path: true, pathType: true, backend: ingressBackend } } } } },
  PersistentVolumeClaim: { apiVersion: true, kind: true, metadata, spec: { accessModes: true, resources: { requests: true, limits: true }, storageClassName: true, volumeMode: true, selector: labelSelector, volumeName: true, dataSource: true, dataSourceRef: true } },
  PodDisruptionBudget: { apiVersion: true, kind: true, metadata, spec: { minAvailable: true, maxUnavailable: true, selector: labelSelector, unhealthyPodEvictionPolicy: true } },
  Secret: { apiVersion: true, kind: true, metadata, type: true, data: true, stringData: true, immutable: true },
  ConfigMap: { apiVersion: true, kind: true, metadata, data: true, binaryData: true, immutable: true },
};

function unknownKeys(value: unknown, shape: Shape, where: string): string[] {
  if (shape === true || value === null || typeof value !== 'object') return [];
  if (Array.isArray(value)) return value.flatMap((v, i) => unknownKeys(v, shape, `${where}[${i}]`));
  return Object.entries(value).flatMap(([key, v]) => {
    const sub = shape[key];
    return sub === undefined ? [`${where}.${key}`] : unknownKeys(v, sub, `${where}.${key}`);
  });
}

// ---- tests ----

describe('deploy/kubernetes kustomize base', () => {
  it('lists every manifest of each kustomization folder, and every listed file exists', () => {
    for (const k of [base, examples]) {
      const listed = new Set([...k.resources, ...k.generated, 'kustomization.yaml']);
      for (const file of listed) expect(existsSync(path.join(k.dir, file)), `${k.dir}/${file}`).toBe(true);
      const onDisk = readdirSync(k.dir).filter((f) => /\.ya?ml$/.test(f));
      expect(onDisk.filter((f) => !listed.has(f)), `unlisted files in ${k.dir}`).toEqual([]);
      for (const sub of readdirSync(k.dir).filter((f) => statSync(path.join(k.dir, f)).isDirectory())) {
        expect(existsSync(path.join(k.dir, sub, 'kustomization.yaml')), `${sub} is a kustomization`).toBe(true);
      }
    }
  });

  it('validates every manifest against the Kubernetes API schemas', () => {
    expect(all.length).toBeGreaterThanOrEqual(8);
    for (const obj of all) {
      const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
      expect(Model, `a model for ${obj.apiVersion} ${obj.kind}`).toBeDefined();
      expect(() => new (Model as NonNullable<typeof Model>)(obj as never).validate(), `${obj.kind} ${obj.metadata?.name}`).not.toThrow();
    }
  });

  it('finds no keys the Kubernetes API does not define on the main objects', () => {
    for (const obj of all) {
      const shape = SHAPES[obj.kind];
      expect(shape, `a key table for ${obj.kind}`).toBeDefined();
      expect(unknownKeys(obj, shape as Shape, obj.kind)).toEqual([]);
    }
  });

  it('reports a misspelled key, which the schema validation lets through', () => {
    const bad = structuredClone(deployment);
    bad.spec.template.spec.containers[0].readinesProbe = bad.spec.template.spec.containers[0].readinessProbe;
    expect(() => new Deployment(bad as never).validate()).not.toThrow();
    expect(unknownKeys(bad, SHAPES.Deployment as Shape, 'Deployment')).toEqual(['Deployment.spec.template.spec.containers[0].readinesProbe']);
  });

  it('mounts a config that ocimirror loads, and the image environment does not change what it says', () => {
    const { fileOnly, effective } = mountedConfig();
    expect(effective.listen).toEqual(fileOnly.listen);
    expect(effective.storage.path).toBe(fileOnly.storage.path);
  });

  it('uses the listen port as containerPort, Service targetPort, probe port and Ingress backend', () => {
    const { effective } = mountedConfig();
    const port = effective.listen.port;
    expect(containerPort(container.ports[0].name)).toBe(port);
    expect(service.spec.selector).toEqual(deployment.spec.template.metadata.labels);
    const servicePort = service.spec.ports[0] as Obj;
    expect(containerPort(servicePort.targetPort)).toBe(port);
    for (const p of [container.livenessProbe, container.readinessProbe, container.startupProbe]) expect(containerPort(p.httpGet.port)).toBe(port);
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    for (const rule of ingress.spec.rules as Obj[]) {
      for (const p of rule.http.paths as Obj[]) {
        expect(p.backend.service.name).toBe(service.metadata.name);
        expect(p.backend.service.port.name ?? p.backend.service.port.number).toBe(p.backend.service.port.name ? servicePort.name : servicePort.port);
      }
    }
  });

  it('mounts the PersistentVolumeClaim at storage.path and keeps storage.maxSize below its size', () => {
    const { effective } = mountedConfig();
    const mount = (container.volumeMounts as Obj[]).find((m) => m.mountPath === effective.storage.path);
    expect(mount, `a mount at ${effective.storage.path}`).toBeDefined();
    const volume = (pod.volumes as Obj[]).find((v) => v.name === mount?.name);
    expect(volume?.persistentVolumeClaim?.claimName).toBe(pvc.metadata.name);
    expect(pvc.spec.accessModes).toEqual(['ReadWriteOnce']);
    // One process per data directory on a ReadWriteOnce volume: one pod, and never two at once.
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.strategy.type).toBe('Recreate');
    const gi = /^(\d+)Gi$/.exec(pvc.spec.resources.requests.storage as string);
    expect(gi).not.toBeNull();
    expect(effective.storage.maxSize).toBeGreaterThan(0);
    expect(effective.storage.maxSize).toBeLessThan(Number(gi?.[1]) * 2 ** 30);
  });

  it('gives the pod longer to stop than the preStop sleep, drainDelay and shutdownGrace together, with the sleep as long as drainDelay', () => {
    const { effective } = mountedConfig();
    const command = container.lifecycle.preStop.exec.command as string[];
    expect(command[0]).toBe('sleep');
    const sleepMs = parseDuration(`${command[1]}s`) as number;
    expect(Math.abs(sleepMs - effective.server.drainDelay)).toBeLessThanOrEqual(2000);
    expect(effective.server.drainDelay).toBeGreaterThan(0);
    const graceMs = (pod.terminationGracePeriodSeconds as number) * 1000;
    expect(graceMs).toBeGreaterThan(sleepMs + effective.server.drainDelay + effective.server.shutdownGrace);
  });

  it('routes one Ingress host per upstream, each listed in that upstream\'s registries, under TLS, and only /v2', () => {
    const { effective } = mountedConfig();
    const hosts = (ingress.spec.rules as Obj[]).map((r) => r.host as string);
    expect(new Set(hosts).size).toBe(hosts.length);
    const owners = hosts.map((h) => effective.upstreams.find((u) => u.registries.includes(h))?.name);
    expect(owners.every((o) => o !== undefined), `hosts without an upstream: ${hosts.filter((_, i) => !owners[i])}`).toBe(true);
    expect(new Set(owners)).toEqual(new Set(effective.upstreams.map((u) => u.name)));
    expect(ingress.spec.tls.flatMap((t: Obj) => t.hosts).sort()).toEqual([...hosts].sort());
    expect(ingress.spec.tls.map((t: Obj) => t.secretName)).toEqual([secret.metadata.name]);
    expect(Object.keys(secret.data).sort()).toEqual(['tls.crt', 'tls.key']);
    for (const rule of ingress.spec.rules as Obj[]) expect(rule.http.paths.map((p: Obj) => `${p.pathType} ${p.path}`)).toEqual(['Prefix /v2']);
  });

  it('runs as a non-root user with a read-only root filesystem and a volume at every path the process writes', () => {
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(pod.securityContext.fsGroup).toBe(pod.securityContext.runAsGroup);
    expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
    const writable = (container.volumeMounts as Obj[]).filter((m) => !m.readOnly).map((m) => m.mountPath);
    expect(writable.sort()).toEqual([mountedConfig().effective.storage.path, '/tmp'].sort());
    expect(container.resources.requests.cpu).toBeDefined();
    expect(container.resources.limits.memory).toBeDefined();
  });

  it('mounts the auth Secret read-only where the config reads htpasswd, and starts with its placeholders', () => {
    expect(secrets.map((o) => o.metadata.name).sort()).toEqual(['ocimirror-auth', 'ocimirror-tls']);
    expect(Object.keys(authSecret.data).sort()).toEqual(['htpasswd', 'token.key']);
    const volume = (pod.volumes as Obj[]).find((v) => v.secret?.secretName === authSecret.metadata.name);
    expect(volume, 'a volume of the auth Secret').toBeDefined();
    const mount = (container.volumeMounts as Obj[]).find((m) => m.name === volume?.name);
    expect(mount?.readOnly).toBe(true);
    // Group-readable only: the process reads it through fsGroup, nobody else should.
    expect(volume?.secret.defaultMode).toBe(0o440);
    const { effective } = mountedConfig();
    expect(effective.auth?.htpasswd).toBe(path.posix.join(mount?.mountPath, 'htpasswd'));
    // The placeholders are empty: pulls stay open and no empty key file is named.
    expect(effective.auth?.anonymous).toBe('pull');
    expect(effective.auth?.tokenKey).toBeUndefined();
    // A mount inside another volume's read-only mount would need the runtime to create its mount point there.
    const others = (container.volumeMounts as Obj[]).filter((m) => m !== mount).map((m) => m.mountPath as string);
    expect(others.filter((p) => (mount?.mountPath as string).startsWith(`${p}/`))).toEqual([]);
  });

  it('selects the Deployment\'s pods in the PodDisruptionBudget without blocking a drain of the single replica', () => {
    expect(pdb.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
    expect(deployment.spec.template.metadata.labels).toMatchObject(deployment.spec.selector.matchLabels);
    expect(pdb.spec.minAvailable).toBeUndefined();
    expect(pdb.spec.maxUnavailable).toBeGreaterThanOrEqual(1);
  });

  it('writes a containerd hosts.toml per registry that points at the Ingress host routed to the same upstream', () => {
    const { effective } = mountedConfig();
    const init = daemonSet.spec.template.spec.initContainers[0] as Obj;
    const dir = mkdtempSync(path.join(tmpdir(), 'ocimirror-hosts-'));
    try {
      const script = (init.args[0] as string).replaceAll('/certs.d', dir);
      const run = spawnSync(init.command[0], [...init.command.slice(1), script], { encoding: 'utf8', timeout: 10_000 });
      expect(run.status, run.stderr).toBe(0);
      const registries = readdirSync(dir).sort();
      expect(registries.length).toBe(effective.upstreams.length);
      const hosts = (ingress.spec.rules as Obj[]).map((r) => r.host as string);
      for (const registry of registries) {
        const toml = readFileSync(path.join(dir, registry, 'hosts.toml'), 'utf8');
        const server = /^server = "([^"]+)"$/m.exec(toml)?.[1];
        const mirror = /^\[host\."https:\/\/([^"]+)"\]\n {2}capabilities = \["pull", "resolve"\]$/m.exec(toml)?.[1];
        const upstream = effective.upstreams.find((u) => u.registries.includes(registry));
        expect(upstream, registry).toBeDefined();
        expect(server).toBe(upstream?.url);
        expect(hosts).toContain(mirror);
        expect(upstream?.registries).toContain(mirror);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8', timeout: 10_000 }).status === 0;
  it.skipIf(!kubectl)('builds with kubectl kustomize into objects that validate, the Deployment naming the generated ConfigMap', () => {
    for (const dir of [BASE, path.join(BASE, 'examples')]) {
      const run = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: 30_000 });
      expect(run.status, run.stderr).toBe(0);
      const objects = parseAllDocuments(run.stdout).map((d) => d.toJS() as Obj);
      expect(objects.length, dir).toBeGreaterThan(0);
      for (const obj of objects) expect(() => new (MODELS[`${obj.apiVersion}/${obj.kind}`] as NonNullable<(typeof MODELS)[string]>)(obj as never).validate()).not.toThrow();
      if (dir !== BASE) continue;
      const cm = one(objects, 'ConfigMap');
      expect(cm.metadata.name).toMatch(/^ocimirror-config-[a-z0-9]+$/);
      const volumes = one(objects, 'Deployment').spec.template.spec.volumes as Obj[];
      expect(volumes.find((v) => v.configMap)?.configMap.name).toBe(cm.metadata.name);
    }
  });
});
