/**
 * @module test/unit/cli/data-lock
 * `<data>/lock`: taken by one process, refused to a second naming the holder's pid, taken over
 * when the holder is gone (or is this very pid, reused after a restart), and removed on release
 * only while it is still this process's.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DataDirLockedError, lockDataDir } from '../../../src/cli/data-lock.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'ocimirror-lock-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const lockFile = () => path.join(dir, 'lock');
const alive = (pids: number[]) => (pid: number) => pids.includes(pid);

describe('lockDataDir', () => {
  it('writes the pid into <data>/lock, creating the directory, and removes it on release', () => {
    const data = path.join(dir, 'nested', 'data');
    const lock = lockDataDir(data, { pid: 1234, isAlive: alive([]) });
    expect(readFileSync(path.join(data, 'lock'), 'utf8')).toBe('1234\n');
    expect(readdirSync(data)).toEqual(['lock']);
    lock.release();
    lock.release();
    expect(readdirSync(data)).toEqual([]);
  });

  it('refuses a second holder while the first one lives, naming its pid and the lock file', () => {
    const first = lockDataDir(dir, { pid: 1234, isAlive: alive([1234]) });
    let thrown: unknown;
    try {
      lockDataDir(dir, { pid: 5678, isAlive: alive([1234]) });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(DataDirLockedError);
    expect(thrown).toMatchObject({ pid: 1234, lockFile: lockFile() });
    expect((thrown as Error).message).toContain(`is in use by process 1234`);
    expect(readFileSync(lockFile(), 'utf8')).toBe('1234\n');
    expect(readdirSync(dir)).toEqual(['lock']);
    first.release();
  });

  it('takes over a lock whose process is gone', () => {
    writeFileSync(lockFile(), '999999\n');
    const lock = lockDataDir(dir, { pid: 1234, isAlive: alive([]) });
    expect(readFileSync(lockFile(), 'utf8')).toBe('1234\n');
    lock.release();
  });

  it('takes over a lock holding its own pid, left by an earlier run under the same pid', () => {
    writeFileSync(lockFile(), '1234\n');
    lockDataDir(dir, { pid: 1234, isAlive: alive([1234]) }).release();
    expect(existsSync(lockFile())).toBe(false);
  });

  it('takes over a lock file that holds no pid', () => {
    writeFileSync(lockFile(), 'garbage');
    lockDataDir(dir, { pid: 1234, isAlive: () => true }).release();
  });

  it('leaves a lock alone on release once another process holds it', () => {
    const lock = lockDataDir(dir, { pid: 1234, isAlive: alive([]) });
    writeFileSync(lockFile(), '5678\n'); // taken over while this process looked dead
    lock.release();
    expect(readFileSync(lockFile(), 'utf8')).toBe('5678\n');
  });

  it('counts a running process as the holder whoever owns it (kill(pid, 0) answering EPERM counts too)', () => {
    writeFileSync(lockFile(), '1\n'); // init: always running; an unprivileged user gets EPERM for it
    expect(() => lockDataDir(dir, { pid: 1234 })).toThrow(DataDirLockedError);
  });
});
