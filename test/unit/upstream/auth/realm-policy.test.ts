import { describe, expect, it } from 'vitest';
import { checkRealm } from '../../../../src/upstream/auth/realm-policy.ts';
import { thrown } from '../../../helpers/thrown.ts';

const upstream = (url: string, realmHosts: string[] = []) => ({ name: 'up', url, realmHosts });
const anon = { withCredentials: false };
const creds = { withCredentials: true };

describe('checkRealm', () => {
  it('allows a realm on the upstream’s own host, on any port', () => {
    expect(checkRealm('https://ghcr.io/token', upstream('https://ghcr.io'), creds).href).toBe('https://ghcr.io/token');
    expect(checkRealm('http://127.0.0.1:9999/auth', upstream('http://127.0.0.1:5000'), creds).host).toBe('127.0.0.1:9999');
  });

  it('allows auth.docker.io for registry-1.docker.io without configuration', () => {
    expect(checkRealm('https://auth.docker.io/token', upstream('https://registry-1.docker.io'), creds).hostname).toBe('auth.docker.io');
  });

  it('refuses a realm on another host and explains realmHosts', () => {
    const err = thrown(() => checkRealm('https://evil.example/token', upstream('https://registry.example'), anon));
    expect(err.status).toBe(502);
    expect(err.message).toContain('evil.example');
    expect(err.message).toContain('realmHosts');
    expect(err.message).toContain("upstream 'up'");
  });

  it('does not extend the built-in Docker Hub realm to other upstreams', () => {
    thrown(() => checkRealm('https://auth.docker.io/token', upstream('https://registry.example'), anon));
  });

  it('allows hosts listed in realmHosts, matching any port unless the entry names one', () => {
    const u = upstream('https://registry.gitlab.com', ['gitlab.com', 'auth.example:8443']);
    expect(checkRealm('https://gitlab.com/jwt/auth', u, creds).hostname).toBe('gitlab.com');
    expect(checkRealm('https://gitlab.com:444/jwt/auth', u, creds).hostname).toBe('gitlab.com');
    expect(checkRealm('https://auth.example:8443/t', u, creds).host).toBe('auth.example:8443');
    thrown(() => checkRealm('https://auth.example/t', u, creds));
  });

  it('does not treat a look-alike suffix as the upstream’s host', () => {
    thrown(() => checkRealm('https://registry.example.evil.test/t', upstream('https://registry.example'), anon));
    thrown(() => checkRealm('https://xgitlab.com/t', upstream('https://registry.gitlab.com', ['gitlab.com']), anon));
  });

  it('refuses realms that are not http(s) URLs', () => {
    for (const realm of ['ftp://registry.example/t', 'file:///etc/passwd', 'not a url', '/relative/token']) {
      expect(thrown(() => checkRealm(realm, upstream('https://registry.example'), anon)).status).toBe(502);
    }
  });

  it('refuses a realm carrying user info', () => {
    thrown(() => checkRealm('https://u:p@registry.example/t', upstream('https://registry.example'), anon));
  });

  it('sends credentials of an https upstream only over https', () => {
    const err = thrown(() => checkRealm('http://registry.example/t', upstream('https://registry.example'), creds));
    expect(err.message).toContain('https');
    expect(checkRealm('http://registry.example/t', upstream('https://registry.example'), anon).protocol).toBe('http:');
  });
});

describe('checkRealm with several upstream URLs', () => {
  const mirrored = { name: 'up', url: 'https://mirror.internal', urls: ['https://mirror.internal', 'https://registry-1.docker.io'], realmHosts: [] };

  it('allows a realm on the host of any of the upstream’s URLs, built-in realms included', () => {
    expect(checkRealm('https://mirror.internal/token', mirrored, creds).hostname).toBe('mirror.internal');
    expect(checkRealm('https://registry-1.docker.io/token', mirrored, creds).hostname).toBe('registry-1.docker.io');
    expect(checkRealm('https://auth.docker.io/token', mirrored, creds).hostname).toBe('auth.docker.io');
  });

  it('refuses a realm on a host none of the URLs has', () => {
    expect(thrown(() => checkRealm('https://evil.example/token', mirrored, anon)).status).toBe(502);
  });

  it('never sends credentials to a plain-http realm when any URL is https', () => {
    const mixed = { name: 'up', url: 'http://mirror.internal', urls: ['http://mirror.internal', 'https://registry.example'], realmHosts: [] };
    expect(thrown(() => checkRealm('http://mirror.internal/token', mixed, creds)).status).toBe(502);
    expect(checkRealm('http://mirror.internal/token', mixed, anon).host).toBe('mirror.internal');
  });
});
