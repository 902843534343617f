/**
 * @module console/pull-access
 * Which repositories a console identity may see: those the client-auth rules let it pull, judged
 * exactly as /v2/ judges them (auth/authenticator `may`, on the name clients see through the
 * mirror, registry first, Docker Hub as docker.io). Admins see everything.
 */
import type { Authenticator, Identity } from '../auth/authenticator.ts';

const DOCKER_HUB = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** The registry part of a repository's name as the rules see it (http/auth-middleware canonicalName does the same). */
export function canonicalRegistry(registry: string): string {
  const lower = registry.toLowerCase();
  return DOCKER_HUB.has(lower) ? 'docker.io' : lower;
}

const PULL_ANYTHING = (): boolean => true;

/** The `canPull` of a page context: everything for admins, else what the rules grant `identity`. */
export function pullPredicate(authenticator: Authenticator | undefined, identity: Identity | undefined, admin: boolean): (registry: string, repo: string) => boolean {
  if (admin) return PULL_ANYTHING;
  if (!authenticator || !identity) return () => false;
  return (registry, repo) => {
    const name = `${canonicalRegistry(registry)}/${repo}`;
    return authenticator.may(identity, name, name, 'pull');
  };
}
