/**
 * @module test/unit/auth/htpasswd
 * htpasswd parsing and verification: bcrypt entries ($2y$ as `htpasswd -B` writes) are accounts,
 * anything weaker is skipped, and the file is re-read when it changes.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { afterEach, describe, expect, it } from 'vitest';
import { HtpasswdAccounts, parseHtpasswd } from '../../../src/auth/htpasswd.ts';
import { silentLogger } from '../../../src/util/logger.ts';
import { hasBinary } from '../../helpers/containerd.ts';

const hash = (pw: string) => bcrypt.hashSync(pw, 4).replace(/^\$2b\$/, '$2y$');

describe('parseHtpasswd', () => {
  it('reads bcrypt entries and skips comments, blank lines and weaker schemes', () => {
    const text = [`alice:${hash('a')}`, '# comment', '', 'bob:$apr1$abcdefgh$0123456789abcdefghijkl', 'carol:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=', `dave:${hash('d')}`, 'nocolon'].join('\n');
    const parsed = parseHtpasswd(text);
    expect([...parsed.accounts.keys()]).toEqual(['alice', 'dave']);
    expect(parsed.skipped).toEqual([4, 5, 7]);
  });

  it('accepts CRLF line endings', () => {
    expect([...parseHtpasswd(`alice:${hash('a')}\r\nbob:${hash('b')}\r\n`).accounts.keys()]).toEqual(['alice', 'bob']);
  });
});

describe('HtpasswdAccounts', () => {
  let dir: string | undefined;
  let accounts: HtpasswdAccounts | undefined;
  afterEach(() => {
    accounts?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('verifies passwords of $2y$ entries and refuses wrong passwords and unknown users', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'htpasswd-'));
    const file = path.join(dir, 'htpasswd');
    writeFileSync(file, `alice:${hash('secret')}\n`);
    accounts = new HtpasswdAccounts(file, silentLogger);
    expect(await accounts.verify('alice', 'secret')).toBe(true);
    expect(await accounts.verify('alice', 'wrong')).toBe(false);
    expect(await accounts.verify('mallory', 'secret')).toBe(false);
  });

  it('refuses a password longer than the 72 bytes bcrypt reads, even one whose first 72 bytes match', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'htpasswd-'));
    const file = path.join(dir, 'htpasswd');
    const exact = 'p'.repeat(72);
    // Bytes, not characters: 36 two-byte characters fill the 72.
    const wide = 'é'.repeat(36);
    writeFileSync(file, `alice:${hash(exact)}\nbob:${hash(wide)}\n`);
    accounts = new HtpasswdAccounts(file, silentLogger);
    expect(await accounts.verify('alice', exact)).toBe(true);
    expect(await accounts.verify('alice', `${exact}-and-anything-after`)).toBe(false);
    expect(await accounts.verify('bob', wide)).toBe(true);
    expect(await accounts.verify('bob', `${wide}x`)).toBe(false);
  });

  it('picks up accounts added to the file when it is re-read', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'htpasswd-'));
    const file = path.join(dir, 'htpasswd');
    writeFileSync(file, `alice:${hash('secret')}\n`);
    accounts = new HtpasswdAccounts(file, silentLogger);
    let reloaded = 0;
    accounts.onReload = () => reloaded++;
    writeFileSync(file, `alice:${hash('secret')}\nbob:${hash('builder')}\n`);
    accounts.reload();
    expect(reloaded).toBe(1);
    expect(await accounts.verify('bob', 'builder')).toBe(true);
  });

  it.skipIf(!hasBinary('htpasswd'))('accepts the file htpasswd -B writes', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'htpasswd-'));
    const file = path.join(dir, 'htpasswd');
    execFileSync('htpasswd', ['-Bbc', file, 'node', 'n0de-pass'], { stdio: 'ignore' });
    accounts = new HtpasswdAccounts(file, silentLogger);
    expect(accounts.size).toBe(1);
    expect(await accounts.verify('node', 'n0de-pass')).toBe(true);
    expect(await accounts.verify('node', 'other')).toBe(false);
  });
});
