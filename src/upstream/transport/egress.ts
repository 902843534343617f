/**
 * @module upstream/transport/egress
 * How one upstream's requests leave the machine: straight to the network, or through an egress
 * proxy as HTTP_PROXY / HTTPS_PROXY / NO_PROXY have it. http targets are sent in absolute form to
 * the proxy, https ones through a CONNECT tunnel (RFC 9110 §9.3.6), so TLS stays end to end. The
 * decision is made per request URL, so token realms and redirect targets (storage hosts) follow the
 * same rules as the registry itself, on undici and on the bulk client alike.
 *
 * undici gets every setting explicitly: its proxy agents would read process.env for any they are
 * not given, and the config is the only place that reads the environment.
 */
import { Agent, ProxyAgent, type Dispatcher } from 'undici';
import type { Config, UpstreamConfig } from '../../config/schema.ts';
import { NoProxy } from './no-proxy.ts';
import { basicAuthorization } from '../../util/basic-auth.ts';

export type EgressConfig = Config['egress'];

/** An egress proxy to send one request through. */
export interface ProxyHop {
  /** The proxy's URL, without credentials. */
  url: URL;
  /** The Proxy-Authorization value (Basic), if the proxy has credentials. Never log it. */
  authorization: string | undefined;
}

export const DIRECT: EgressConfig = { httpProxy: undefined, httpsProxy: undefined, noProxy: '' };

export class Egress {
  readonly #http: ProxyHop | undefined;
  readonly #https: ProxyHop | undefined;
  readonly #noProxy: NoProxy;
  readonly #noProxySpec: string;
  readonly #direct: Agent;
  readonly #proxies = new Map<ProxyHop, ProxyAgent>();
  readonly #dispatchers: Dispatcher[];

  /**
   * The upstream's own `proxy`, for both schemes, when it has one; else `egress`, where an unset
   * httpsProxy falls back to httpProxy (one proxy set never lets https traffic leave directly).
   * NO_PROXY applies to both. Throws a TypeError naming the setting for a proxy URL that is not http(s).
   */
  constructor(upstream: UpstreamConfig, egress: EgressConfig, options: Agent.Options & { connectTimeout: number }) {
    const { connectTimeout, ...agentOptions } = options;
    if (upstream.proxy) {
      const { username, password } = upstream.proxy;
      const hop = proxyHop(upstream.proxy.url, `upstreams[${upstream.name}].proxy.url`, username !== undefined ? { username, password: password ?? '' } : undefined);
      this.#http = hop;
      this.#https = hop;
    } else {
      this.#http = egress.httpProxy ? proxyHop(egress.httpProxy, 'egress.httpProxy (HTTP_PROXY)') : undefined;
      this.#https = egress.httpsProxy ? proxyHop(egress.httpsProxy, 'egress.httpsProxy (HTTPS_PROXY)') : this.#http;
    }
    this.#noProxySpec = egress.noProxy;
    this.#noProxy = new NoProxy(egress.noProxy);
    this.#direct = new Agent({ ...agentOptions, connect: { timeout: connectTimeout } });
    for (const hop of new Set([this.#http, this.#https])) {
      if (hop === undefined) continue;
      this.#proxies.set(
        hop,
        new ProxyAgent({
          ...agentOptions,
          uri: hop.url.href,
          ...(hop.authorization !== undefined ? { token: hop.authorization } : {}),
          // Plain-http targets in absolute form, as every forward proxy takes them; CONNECT only for TLS.
          proxyTunnel: false,
          // The connection to the proxy and the tunnelled TLS handshake get the connect timeout too.
          proxyTls: { timeout: connectTimeout },
          requestTls: { timeout: connectTimeout },
        }),
      );
    }
    this.#dispatchers = [this.#direct, ...this.#proxies.values()];
  }

  /** True when some request may go through a proxy. */
  get proxied(): boolean {
    return this.#proxies.size > 0;
  }

  /** The proxy for a request to `url`, or undefined when it goes direct. */
  hop(url: URL): ProxyHop | undefined {
    const hop = url.protocol === 'https:' ? this.#https : this.#http;
    return hop === undefined || this.#noProxy.matches(url) ? undefined : hop;
  }

  /** The undici dispatcher for a request to `url`. */
  dispatcher(url: URL): Dispatcher {
    const hop = this.hop(url);
    return hop === undefined ? this.#direct : this.#proxies.get(hop)!;
  }

  /** What to log about the proxies (their URLs carry no credentials). */
  describe(): { httpProxy: string | undefined; httpsProxy: string | undefined; noProxy: string } {
    return { httpProxy: this.#http?.url.href, httpsProxy: this.#https?.url.href, noProxy: this.#noProxySpec };
  }

  async close(): Promise<void> {
    await Promise.all(this.#dispatchers.map((d) => d.close()));
  }

  async destroy(): Promise<void> {
    await Promise.all(this.#dispatchers.map((d) => d.destroy()));
  }
}

/**
 * A proxy URL as HTTP_PROXY spells it: `proxy.example:3128` means `http://proxy.example:3128` (as
 * curl and Go read it), and credentials in it (`http://user:pass@…`) become the Proxy-Authorization,
 * unless `credentials` (upstreams[].proxy.username/password) are given.
 */
function proxyHop(text: string, where: string, credentials?: { username: string; password: string }): ProxyHop {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new TypeError(`Expected ${where} to be a proxy URL such as http://proxy.example:3128, got '${withoutCredentials(text)}'`);
  }
  const fromUrl = url.username !== '' ? { username: decodeURIComponent(url.username), password: decodeURIComponent(url.password) } : undefined;
  url.username = '';
  url.password = '';
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TypeError(`Expected ${where} to be an http:// or https:// proxy URL, got '${url.href}'`);
  }
  const creds = credentials ?? fromUrl;
  const authorization = creds ? basicAuthorization(creds.username, creds.password) : undefined;
  return { url, authorization };
}

/** A string that is not even a URL, with everything up to its last '@' (any credentials) dropped. */
function withoutCredentials(text: string): string {
  const at = text.lastIndexOf('@');
  return at < 0 ? text : `***@${text.slice(at + 1)}`;
}
