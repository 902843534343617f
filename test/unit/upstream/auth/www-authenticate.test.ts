import { describe, expect, it } from 'vitest';
import { parseWwwAuthenticate } from '../../../../src/upstream/auth/www-authenticate.ts';

describe('parseWwwAuthenticate', () => {
  it('reads the Bearer challenge Docker Hub sends', () => {
    expect(
      parseWwwAuthenticate(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
      ),
    ).toEqual([
      {
        scheme: 'bearer',
        params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull' },
      },
    ]);
  });

  it('reads the Basic challenge distribution sends with htpasswd auth', () => {
    expect(parseWwwAuthenticate('Basic realm="Registry Realm"')).toEqual([{ scheme: 'basic', params: { realm: 'Registry Realm' } }]);
  });

  it('lower-cases schemes and parameter names but keeps values as sent', () => {
    expect(parseWwwAuthenticate('BEARER Realm="https://A.example/Token", SERVICE=Reg')).toEqual([
      { scheme: 'bearer', params: { realm: 'https://A.example/Token', service: 'Reg' } },
    ]);
  });

  it('keeps commas inside quoted values within one parameter', () => {
    expect(parseWwwAuthenticate('Bearer realm="https://a.example/token",scope="repository:x/y:pull,push"')).toEqual([
      { scheme: 'bearer', params: { realm: 'https://a.example/token', scope: 'repository:x/y:pull,push' } },
    ]);
  });

  it('unescapes quoted-pairs in quoted values', () => {
    const [c] = parseWwwAuthenticate('Newauth title="Login to \\"apps\\"", path="C:\\\\dir"');
    expect(c?.params).toEqual({ title: 'Login to "apps"', path: 'C:\\dir' });
  });

  it('splits several challenges in one header as RFC 9110 §11.6.1 shows', () => {
    expect(parseWwwAuthenticate('Basic realm="simple", Newauth realm="apps", type=1, title="Login to \\"apps\\""')).toEqual([
      { scheme: 'basic', params: { realm: 'simple' } },
      { scheme: 'newauth', params: { realm: 'apps', type: '1', title: 'Login to "apps"' } },
    ]);
  });

  it('reads the same challenges whichever comes first', () => {
    const challenges = parseWwwAuthenticate('Newauth realm="apps", type=1, Basic realm="simple"');
    expect(challenges.map((c) => c.scheme)).toEqual(['newauth', 'basic']);
    expect(challenges[0]?.params).toEqual({ realm: 'apps', type: '1' });
  });

  it('combines several header lines like one comma-joined line', () => {
    expect(parseWwwAuthenticate(['Basic realm="a"', 'Bearer realm="https://b.example/t",service="b"'])).toEqual([
      { scheme: 'basic', params: { realm: 'a' } },
      { scheme: 'bearer', params: { realm: 'https://b.example/t', service: 'b' } },
    ]);
  });

  it('accepts a bare scheme with no parameters, alone or among others', () => {
    expect(parseWwwAuthenticate('Negotiate')).toEqual([{ scheme: 'negotiate', params: {} }]);
    expect(parseWwwAuthenticate('Negotiate, Basic realm="x"')).toEqual([
      { scheme: 'negotiate', params: {} },
      { scheme: 'basic', params: { realm: 'x' } },
    ]);
  });

  it('keeps a token68 apart from parameters, including its = padding', () => {
    expect(parseWwwAuthenticate('Negotiate YIIB/+a==, Basic realm="x"')).toEqual([
      { scheme: 'negotiate', params: {}, token68: 'YIIB/+a==' },
      { scheme: 'basic', params: { realm: 'x' } },
    ]);
  });

  it('allows whitespace around = and after commas (BWS, OWS)', () => {
    expect(parseWwwAuthenticate('Bearer  realm = "https://a.example/t" ,\t service= reg ,scope ="s"')).toEqual([
      { scheme: 'bearer', params: { realm: 'https://a.example/t', service: 'reg', scope: 's' } },
    ]);
  });

  it('keeps unquoted URL values whole although : and / are not token characters', () => {
    expect(parseWwwAuthenticate('Bearer realm=https://auth.example:8443/token,service=reg')).toEqual([
      { scheme: 'bearer', params: { realm: 'https://auth.example:8443/token', service: 'reg' } },
    ]);
  });

  it('keeps empty quoted values', () => {
    expect(parseWwwAuthenticate('Bearer realm="https://a/t",scope=""')[0]?.params).toEqual({ realm: 'https://a/t', scope: '' });
  });

  it('uses the first of a repeated parameter', () => {
    expect(parseWwwAuthenticate('Bearer realm="https://first/t", realm="https://second/t"')[0]?.params.realm).toBe('https://first/t');
  });

  it('skips empty list elements', () => {
    expect(parseWwwAuthenticate(' , Basic realm="x" ,, ,')).toEqual([{ scheme: 'basic', params: { realm: 'x' } }]);
  });

  it('reads an unterminated quoted value to the end rather than losing the challenge', () => {
    expect(parseWwwAuthenticate('Bearer realm="https://a.example/t')).toEqual([{ scheme: 'bearer', params: { realm: 'https://a.example/t' } }]);
  });

  it('skips a malformed element and keeps the challenges around it', () => {
    const challenges = parseWwwAuthenticate('"junk, with comma", Basic realm="x", =oops, Bearer realm="https://b/t"');
    expect(challenges).toEqual([
      { scheme: 'basic', params: { realm: 'x' } },
      { scheme: 'bearer', params: { realm: 'https://b/t' } },
    ]);
  });

  it('returns nothing for absent or blank headers', () => {
    expect(parseWwwAuthenticate(undefined)).toEqual([]);
    expect(parseWwwAuthenticate(null)).toEqual([]);
    expect(parseWwwAuthenticate('')).toEqual([]);
    expect(parseWwwAuthenticate('   ')).toEqual([]);
    expect(parseWwwAuthenticate([])).toEqual([]);
  });

  it('does not let a parameter named like a scheme start a new challenge', () => {
    expect(parseWwwAuthenticate('Bearer realm="https://a/t", basic=1')).toEqual([
      { scheme: 'bearer', params: { realm: 'https://a/t', basic: '1' } },
    ]);
  });
});
