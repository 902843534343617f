/**
 * @module upstream/auth/realm-policy
 * Which token realms an upstream may send us to. A `WWW-Authenticate: Bearer realm=…` is an
 * instruction from the upstream to make a request somewhere else, with the upstream's credentials
 * if we have any. Followed blindly, a compromised or mistyped upstream could collect those
 * credentials, or make the proxy probe hosts on its internal network. So a realm must be http(s),
 * and on the upstream's own host (any of its `urls`) or on a host the operator listed in `upstreams[].realmHosts`;
 * any other realm is refused before a single byte (even anonymous) is sent to it.
 */
import { badGateway } from '../transport/transport-error.ts';

/** Realm hosts well-known upstreams use, so the common case needs no configuration. */
export const BUILTIN_REALM_HOSTS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  // Docker Hub's registry answers with realm="https://auth.docker.io/token".
  'registry-1.docker.io': Object.freeze(['auth.docker.io']),
});

export interface RealmPolicyInput {
  /** Upstream name, for messages. */
  readonly name: string;
  /** The upstream's base URL. */
  readonly url: string;
  /** Every base URL of an upstream with several (`upstreams[].urls`); `url` alone when absent. */
  readonly urls?: readonly string[];
  /** Extra realm hosts from config (lower-case): `host` matches any port, `host:port` only that port. */
  readonly realmHosts: readonly string[];
}

/**
 * The realm as a URL when the upstream may use it; otherwise throws a 502 RegistryError
 * (code UNAVAILABLE): the upstream or its configuration, not the pulling client, needs fixing.
 *
 * "The upstream's own host" compares host names and ignores ports: a registry and its token service
 * commonly share a machine on different ports. Credentials never travel over plain http to a realm
 * of an https upstream: the operator chose TLS for them.
 */
export function checkRealm(realm: string, upstream: RealmPolicyInput, { withCredentials }: { withCredentials: boolean }): URL {
  let url: URL;
  try {
    url = new URL(realm);
  } catch (cause) {
    throw badGateway(`upstream ${upstream.name} sent a Bearer challenge whose realm is not a URL`, { cause });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw badGateway(`upstream ${upstream.name} sent a Bearer challenge with a ${url.protocol.replace(/:$/, '')} realm; only http(s) token realms are used`);
  }
  if (url.username !== '' || url.password !== '') {
    throw badGateway(`upstream ${upstream.name} sent a Bearer challenge whose realm carries user info; it is not used`);
  }
  const bases = (upstream.urls !== undefined && upstream.urls.length > 0 ? upstream.urls : [upstream.url]).map((u) => new URL(u));
  const base = bases[0] as URL;
  if (!bases.some((b) => isAllowedRealmHost(url, b, upstream.realmHosts))) {
    throw badGateway(
      `upstream ${upstream.name} (${base.host}) asks for a token from ${url.host}, which is not the upstream's host ` +
        `nor listed in its realmHosts; no request was sent there. If ${url.hostname} is this registry's token service, ` +
        `add '${url.hostname}' to upstreams[].realmHosts for upstream '${upstream.name}'`,
    );
  }
  // The same credentials go to every URL: one https URL means they are never sent over plain http.
  if (withCredentials && bases.some((b) => b.protocol === 'https:') && url.protocol === 'http:') {
    throw badGateway(`upstream ${upstream.name} asks for a token over plain http (${url.host}); its credentials are only sent over https`);
  }
  return url;
}

function isAllowedRealmHost(realm: URL, base: URL, realmHosts: readonly string[]): boolean {
  const hostname = realm.hostname.toLowerCase();
  const host = realm.host.toLowerCase();
  if (hostname === base.hostname.toLowerCase()) return true;
  const allowed = [...(BUILTIN_REALM_HOSTS[base.hostname.toLowerCase()] ?? []), ...realmHosts];
  return allowed.some((entry) => {
    const e = entry.toLowerCase();
    return hasPort(e) ? e === host : e === hostname;
  });
}

/** `host:port` or `[v6]:port`, as opposed to a bare host name or `[v6]`. */
function hasPort(entry: string): boolean {
  return entry.startsWith('[') ? /\]:\d+$/.test(entry) : entry.includes(':');
}
