/**
 * @module test/helpers/podman
 * A private podman (own root, runroot, vfs storage, no systemd: runs in CI containers) for tests
 * that pull and push with the real client. Every registry here is plain http on loopback, so
 * each command passes --tls-verify=false.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CommandError, runCommand } from './containerd.ts';

export interface Podman {
  /** Runs `podman <args>` with this instance's storage; throws CommandError on failure. */
  run(args: string[], timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

export async function startPodman(): Promise<Podman> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ocimirror-podman-'));
  const global = ['--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'run'), '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file'];
  return {
    async run(args, timeoutMs = 120_000) {
      const r = await runCommand('podman', [...global, ...args], { timeoutMs, env: { ...process.env, TMPDIR: dir } });
      if (r.code !== 0 || r.timedOut) throw new CommandError(`podman ${args.join(' ')} failed (${r.timedOut ? 'timed out' : r.code})\n${r.stderr.trim().split('\n').slice(-20).join('\n')}`, r);
      return r.stdout;
    },
    async stop() {
      // vfs layers may be owned by root with odd modes: podman's own reset removes them, rm the rest.
      await runCommand('podman', [...global, 'system', 'reset', '--force'], { timeoutMs: 60_000 }).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
