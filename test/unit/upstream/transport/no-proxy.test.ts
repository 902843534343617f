import { describe, expect, it } from 'vitest';
import { NoProxy } from '../../../../src/upstream/transport/no-proxy.ts';

const direct = (spec: string, url: string) => new NoProxy(spec).matches(new URL(url));

describe('NoProxy', () => {
  it('matches nothing when empty, and everything with a lone *', () => {
    expect(direct('', 'https://registry.example')).toBe(false);
    expect(direct('*', 'https://registry.example')).toBe(true);
    expect(direct('a.example, *', 'http://10.1.2.3:5000')).toBe(true);
  });

  it('matches a name and its subdomains, with or without a leading dot or *., case-insensitively', () => {
    for (const spec of ['example.com', '.example.com', '*.example.com', 'EXAMPLE.com']) {
      expect(direct(spec, 'https://example.com/v2/')).toBe(true);
      expect(direct(spec, 'https://cdn.Example.com/blob')).toBe(true);
      expect(direct(spec, 'https://notexample.com/')).toBe(false);
      expect(direct(spec, 'https://example.com.evil.test/')).toBe(false);
    }
  });

  it('takes comma- and space-separated lists', () => {
    const spec = ' a.test,b.test  c.test,,';
    for (const host of ['a.test', 'b.test', 'c.test']) expect(direct(spec, `https://${host}`)).toBe(true);
    expect(direct(spec, 'https://d.test')).toBe(false);
  });

  it('limits an entry with a port to that port, counting default ports', () => {
    expect(direct('registry.test:5000', 'http://registry.test:5000/v2/')).toBe(true);
    expect(direct('registry.test:5000', 'http://registry.test:5001/v2/')).toBe(false);
    expect(direct('registry.test:443', 'https://registry.test/v2/')).toBe(true);
    expect(direct('registry.test:443', 'http://registry.test/v2/')).toBe(false);
  });

  it('matches IP addresses, IPv6 with or without brackets, and CIDR ranges', () => {
    expect(direct('127.0.0.1', 'http://127.0.0.1:5000')).toBe(true);
    expect(direct('127.0.0.1', 'http://127.0.0.2:5000')).toBe(false);
    expect(direct('::1', 'http://[::1]:5000')).toBe(true);
    expect(direct('[::1]:5000', 'http://[::1]:5000')).toBe(true);
    expect(direct('[::1]:5000', 'http://[::1]:5001')).toBe(false);
    expect(direct('10.0.0.0/8', 'https://10.20.30.40')).toBe(true);
    expect(direct('10.0.0.0/8', 'https://11.0.0.1')).toBe(false);
    expect(direct('fd00::/8', 'https://[fd12::1]')).toBe(true);
    // A range matches addresses only, never names.
    expect(direct('10.0.0.0/8', 'https://10.example')).toBe(false);
  });
});
