/**
 * The listener's config keys: tls needs cert and key together, address blocks are checked, and
 * errors name the key path.
 */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.ts';

function issues(raw: unknown): string {
  try {
    parseConfig(raw, { env: {} });
  } catch (err) {
    return (err as Error).message;
  }
  return '';
}

describe('listener config', () => {
  it('takes tls files, a PROXY protocol section and trusted proxies', () => {
    const config = parseConfig(
      { tls: { cert: '/c.pem', key: '/k.pem' }, server: { proxyProtocol: { trustedCidrs: ['10.0.0.0/8', '::1/128', '127.0.0.1'] }, trustedProxies: ['192.168.0.0/16'] } },
      { env: {} },
    );
    expect(config.tls).toEqual({ cert: '/c.pem', key: '/k.pem' });
    expect(config.server.proxyProtocol).toEqual({ trustedCidrs: ['10.0.0.0/8', '::1/128', '127.0.0.1'], timeout: 5000 });
    expect(config.server.trustedProxies).toEqual(['192.168.0.0/16']);
  });

  it('requires tls.key with tls.cert, naming the key', () => {
    expect(issues({ tls: { cert: '/c.pem' } })).toMatch(/tls\.key is required/);
  });

  it('refuses malformed address blocks, naming the key', () => {
    for (const bad of ['10.0.0.0/33', '::1/129', '10.0.0/8', 'localhost', '10.0.0.0/8/1', '10.0.0.0/']) {
      expect(issues({ server: { trustedProxies: [bad] } }), bad).toMatch(/server\.trustedProxies\[0\]: expected an address block/);
    }
    expect(issues({ server: { proxyProtocol: { trustedCidrs: ['300.0.0.0/8'] } } })).toMatch(/server\.proxyProtocol\.trustedCidrs\[0\]: /);
  });
});
