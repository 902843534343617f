/**
 * @module proxy/router
 * Picks the upstream for a request, in this order:
 *  1. `?ns=<registry>` — containerd's hosts.toml mirrors send it on every request;
 *  2. a path prefix `/v2/<registry>/<repo>/…` — CRI-O/podman `location = "mirror/docker.io"`;
 *  3. the Host header — one Service/Ingress host name per registry;
 *  4. `defaultUpstream` — Docker's `registry-mirrors`, which only mirrors docker.io.
 * A hosted registry (`hosted[]`) is routed the same ways. A registry that is not configured is
 * refused before any connection is made: the mirror is never an open proxy. Docker Hub's implicit `library/` namespace is added to one-component names
 * when the registry the request named is Docker Hub, or when it named none and the default
 * upstream serves Docker Hub: an upstream may serve Docker Hub under other names too, and a
 * request for `registry.example/multi` must reach it as `multi`.
 */
import { RegistryError } from '../registry/errors.ts';
import { assertName } from '../registry/reference.ts';
import type { Upstream } from './upstream.ts';

export interface Route {
  readonly upstream: Upstream;
  /** Repository name on the upstream (prefix stripped, `library/` added for a Docker Hub request). */
  readonly repo: string;
  /** The path prefix the client used, so links we emit keep working (`docker.io`), if any. */
  readonly prefix: string | undefined;
  /** How the upstream was chosen, for logs. */
  readonly via: 'ns' | 'prefix' | 'host' | 'default';
}

/** A repository of a hosted registry: content pushed here, with no upstream behind it. */
export interface HostedRoute {
  /** The hosted registry's name (`hosted[].name`). */
  readonly registry: string;
  /** Repository name inside it, as the client named it (no `library/` is ever added). */
  readonly repo: string;
  readonly prefix: string | undefined;
  readonly via: Route['via'];
}

/** Where a request goes: an upstream (pull-through) or a hosted registry (push and pull). */
export type Located = { readonly kind: 'upstream'; readonly route: Route } | { readonly kind: 'hosted'; readonly route: HostedRoute };

export interface RouteHints {
  ns?: string | undefined;
  host?: string | undefined;
}

const DOCKER_HUB_NAMES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

function isDockerHub(registry: string): boolean {
  return DOCKER_HUB_NAMES.has(registry.toLowerCase());
}

/** Docker's rule (distribution/reference): a first component is a registry host if it has '.' or ':' or is 'localhost'. */
function looksLikeHost(component: string): boolean {
  if (!/^[a-z0-9]/i.test(component)) return false; // '..' or '.x' is a bad name, not a host
  return component.includes('.') || component.includes(':') || component === 'localhost';
}

type Target = { kind: 'upstream'; upstream: Upstream } | { kind: 'hosted'; registry: string };

export class Router {
  readonly #byRegistry = new Map<string, Target>();
  readonly #default: Target | undefined;
  readonly #byName = new Map<string, Upstream>();

  /** `hosted`: the hosted registries' names; `defaultUpstream` may name one of them or an upstream. */
  constructor(upstreams: readonly Upstream[], defaultUpstream?: string, hosted: readonly string[] = []) {
    for (const u of upstreams) {
      this.#byName.set(u.name, u);
      for (const reg of u.config.registries) this.#byRegistry.set(reg.toLowerCase(), { kind: 'upstream', upstream: u });
    }
    for (const name of hosted) this.#byRegistry.set(name.toLowerCase(), { kind: 'hosted', registry: name.toLowerCase() });
    if (defaultUpstream !== undefined) {
      const upstream = upstreams.find((u) => u.name === defaultUpstream);
      this.#default = upstream ? { kind: 'upstream', upstream } : this.#byRegistry.get(defaultUpstream.toLowerCase());
    }
  }

  /** The upstream route for a name; a hosted registry's name is NAME_UNKNOWN here (it has no upstream). */
  resolve(rawName: string, hints: RouteHints = {}): Route {
    const located = this.locate(rawName, hints);
    if (located.kind === 'upstream') return located.route;
    throw new RegistryError('NAME_UNKNOWN', {
      message: `registry '${located.route.registry}' is hosted on this mirror: it has no upstream to fetch from`,
      detail: { registry: located.route.registry },
    });
  }

  /** Where a request for `rawName` goes: an upstream or a hosted registry (see the module comment for the order). */
  locate(rawName: string, hints: RouteHints = {}): Located {
    if (hints.ns !== undefined && hints.ns !== '') {
      return this.#route(this.#registry(hints.ns), rawName, undefined, 'ns', isDockerHub(hints.ns));
    }
    const slash = rawName.indexOf('/');
    const first = slash > 0 ? rawName.slice(0, slash) : '';
    if (first && looksLikeHost(first)) {
      return this.#route(this.#registry(first), rawName.slice(slash + 1), first, 'prefix', isDockerHub(first));
    }
    const host = hints.host?.toLowerCase();
    if (host) {
      const bare = host.replace(/:\d+$/, '');
      const registry = this.#byRegistry.has(host) ? host : bare;
      const byHost = this.#byRegistry.get(registry);
      if (byHost) return this.#route(byHost, rawName, undefined, 'host', isDockerHub(registry));
    }
    if (!this.#default) {
      assertName(rawName);
      throw new RegistryError('NAME_UNKNOWN', {
        message: 'this mirror has no defaultUpstream: name the registry with ?ns=<registry>, a /v2/<registry>/ path prefix or a configured Host',
        detail: { name: rawName.slice(0, 300) },
      });
    }
    const dockerHub = this.#default.kind === 'upstream' && this.#default.upstream.config.registries.some(isDockerHub);
    return this.#route(this.#default, rawName, undefined, 'default', dockerHub);
  }

  /** The route for a repository on a named upstream (jobs that stored it earlier). */
  route(upstreamName: string, repo: string): Route {
    const upstream = this.#byName.get(upstreamName);
    if (!upstream) throw new RegistryError('NAME_UNKNOWN', { message: `upstream '${upstreamName}' is not configured` });
    return { upstream, repo: assertName(repo), prefix: undefined, via: 'default' };
  }

  #registry(name: string): Target {
    const target = this.#byRegistry.get(name.toLowerCase());
    if (!target) {
      throw new RegistryError('NAME_UNKNOWN', {
        message: `registry '${name.slice(0, 100)}' is not configured on this mirror`,
        detail: { registry: name.slice(0, 255) },
      });
    }
    return target;
  }

  #route(target: Target, name: string, prefix: string | undefined, via: Route['via'], dockerHub: boolean): Located {
    assertName(name);
    if (target.kind === 'hosted') return { kind: 'hosted', route: { registry: target.registry, repo: name, prefix, via } };
    const repo = dockerHub && !name.includes('/') ? `library/${name}` : name;
    return { kind: 'upstream', route: { upstream: target.upstream, repo, prefix, via } };
  }
}
