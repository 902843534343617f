/**
 * @module console/data/pull-commands
 * The exact commands that pull an image through this mirror, per client, as the mirror routes
 * them (proxy/router): containerd names the registry with `?ns=` through a hosts.toml per
 * registry; Docker and podman name it as the first path component after the mirror's host
 * (`<mirror>/<registry>/<repo>`), which the router takes as the registry because it contains a
 * dot or a colon. Docker's `registry-mirrors` applies to Docker Hub images only, so the plain
 * `docker pull alpine` form is offered for docker.io alone.
 */
import { canonicalRegistry } from '../pull-access.ts';

export interface PullCommands {
  containerd: string;
  /** The hosts.toml that `containerd` relies on, at `/etc/containerd/certs.d/<registry>/hosts.toml`. */
  hostsToml: string;
  docker: string;
  /** With `registry-mirrors` in daemon.json: only for Docker Hub images. */
  dockerMirror: string | undefined;
  podman: string;
  /** The `location` of a `[[registry.mirror]]` in registries.conf for this registry (podman, CRI-O, skopeo). */
  mirrorLocation: string;
  /** The directory under /etc/containerd/certs.d whose hosts.toml names the mirror. */
  hostsDir: string;
  /** The mirror is served over plain HTTP: Docker needs `insecure-registries`, podman `--tls-verify=false`. */
  insecure: boolean;
}

export interface PullTarget {
  /** host:port clients reach the mirror at. */
  mirrorHost: string;
  /** Whether clients reach it over TLS. */
  tls: boolean;
  /** The registry name clients use (an upstream's first `registries` entry, or a hosted registry's name). */
  registry: string;
  /** The repository as the cache keys it (`library/alpine` for Docker Hub's official images). */
  repo: string;
  tag: string;
}

/** Docker's rule, as the router applies it: a first component with '.' or ':' or 'localhost' names a registry. */
function routesByPrefix(registry: string): boolean {
  return registry.includes('.') || registry.includes(':') || registry === 'localhost';
}

export function pullCommands({ mirrorHost, tls, registry, repo, tag }: PullTarget): PullCommands {
  const canonical = canonicalRegistry(registry);
  const hub = canonical === 'docker.io';
  const image = `${canonical}/${repo}:${tag}`;
  // A registry name without a dot or colon is not seen as a prefix: such a name is reached as the default (or by Host).
  const location = routesByPrefix(canonical) ? `${mirrorHost}/${canonical}` : mirrorHost;
  const throughMirror = `${location}/${repo}:${tag}`;
  const scheme = tls ? 'https' : 'http';
  const upstreamServer = hub ? 'https://registry-1.docker.io' : `https://${canonical}`;
  return {
    containerd: `ctr images pull --hosts-dir /etc/containerd/certs.d ${image}`,
    hostsToml: `server = "${upstreamServer}"\n\n[host."${scheme}://${mirrorHost}"]\n  capabilities = ["pull", "resolve"]\n`,
    docker: `docker pull ${throughMirror}`,
    dockerMirror: hub ? `docker pull ${repo.startsWith('library/') ? repo.slice('library/'.length) : repo}:${tag}` : undefined,
    podman: `podman pull ${tls ? '' : '--tls-verify=false '}${throughMirror}`,
    mirrorLocation: location,
    hostsDir: canonical,
    insecure: !tls,
  };
}
