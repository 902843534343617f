import { describe, expect, it } from 'vitest';
import type { UpstreamConfig } from '../../../../src/config/schema.ts';
import { Egress, type EgressConfig } from '../../../../src/upstream/transport/egress.ts';
import { upstreamConfig } from '../fake-http.ts';

const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
const egress = (e: Partial<EgressConfig>, proxy?: UpstreamConfig['proxy']) =>
  new Egress(upstreamConfig('https://registry.test', proxy ? { proxy } : {}), { httpProxy: undefined, httpsProxy: undefined, noProxy: '', ...e }, { connectTimeout: 1000 });
const hopOf = (e: Egress, url: string) => {
  const hop = e.hop(new URL(url));
  return hop && { url: hop.url.href, authorization: hop.authorization };
};

describe('Egress', () => {
  it('sends everything direct when no proxy is configured', async () => {
    const e = egress({});
    expect(e.proxied).toBe(false);
    expect(hopOf(e, 'https://registry.test/v2/')).toBeUndefined();
    await e.close();
  });

  it('uses httpProxy for http and httpsProxy for https, and httpProxy for both when httpsProxy is unset', async () => {
    const both = egress({ httpProxy: 'http://plain.proxy:3128', httpsProxy: 'http://tls.proxy:3129' });
    expect(hopOf(both, 'http://registry.test/v2/')?.url).toBe('http://plain.proxy:3128/');
    expect(hopOf(both, 'https://registry.test/v2/')?.url).toBe('http://tls.proxy:3129/');
    const one = egress({ httpProxy: 'http://plain.proxy:3128' });
    expect(hopOf(one, 'https://auth.test/token')?.url).toBe('http://plain.proxy:3128/');
    const httpsOnly = egress({ httpsProxy: 'http://tls.proxy:3129' });
    expect(hopOf(httpsOnly, 'http://registry.test/v2/')).toBeUndefined();
    await Promise.all([both.close(), one.close(), httpsOnly.close()]);
  });

  it('reads a proxy without a scheme as http, and turns credentials in its URL into Proxy-Authorization', async () => {
    const e = egress({ httpProxy: 'proxy.corp:3128', httpsProxy: 'http://us%40er:p%3Ass@proxy.corp:3129' });
    expect(hopOf(e, 'http://registry.test/')).toEqual({ url: 'http://proxy.corp:3128/', authorization: undefined });
    expect(hopOf(e, 'https://registry.test/')).toEqual({ url: 'http://proxy.corp:3129/', authorization: basic('us@er', 'p:ss') });
    await e.close();
  });

  it('lets an upstream’s own proxy beat the egress proxies for both schemes, its credentials beating the URL’s', async () => {
    const e = egress({ httpProxy: 'http://global:1', httpsProxy: 'http://global:2' }, { url: 'http://x:y@own.proxy:8080', username: 'alice', password: 's3cret' });
    expect(hopOf(e, 'https://registry.test/')).toEqual({ url: 'http://own.proxy:8080/', authorization: basic('alice', 's3cret') });
    expect(hopOf(e, 'http://cdn.test/')).toEqual({ url: 'http://own.proxy:8080/', authorization: basic('alice', 's3cret') });
    await e.close();
  });

  it('sends NO_PROXY hosts direct, for the upstream’s own proxy too', async () => {
    const e = egress({ httpProxy: 'http://global:1', noProxy: 'cdn.test' }, { url: 'http://own.proxy:8080', username: undefined, password: undefined });
    expect(hopOf(e, 'https://cdn.test/blob')).toBeUndefined();
    expect(hopOf(e, 'https://registry.test/v2/')?.url).toBe('http://own.proxy:8080/');
    await e.close();
  });

  it('refuses a proxy URL that is not http(s), naming the setting and never echoing credentials', () => {
    expect(() => egress({ httpProxy: 'socks5://u:secret@proxy:1080' })).toThrow(/egress\.httpProxy .*'socks5:\/\/proxy:1080'/);
    expect(() => egress({ httpsProxy: 'http://u:secret@' })).toThrow(/egress\.httpsProxy/);
    try {
      egress({ httpsProxy: 'http://u:secret@' });
    } catch (err) {
      expect((err as Error).message).not.toContain('secret');
    }
  });
});
