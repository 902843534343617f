/**
 * @module bench/rss
 * Resident memory of a process from /proc/<pid>/status. VmHWM is the peak since start or since the last
 * `echo 5 > /proc/<pid>/clear_refs`, so one phase's peak can be read exactly while the run's peak is kept.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

const MiB = 1024 * 1024;

function statusKiB(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]);
}

export class PeakRss {
  readonly #pid: number;
  #runPeakKiB = 0;

  constructor(pid: number) {
    this.#pid = pid;
  }

  /** Peak since the process started, in MiB (call while it is alive). */
  runPeakMiB(): number {
    this.#runPeakKiB = Math.max(this.#runPeakKiB, statusKiB(this.#pid, 'VmHWM'));
    return (this.#runPeakKiB * 1024) / MiB;
  }

  /** Runs `fn` and returns its result with the peak RSS while it ran (MiB). */
  async during<T>(fn: () => Promise<T>): Promise<{ result: T; peakMiB: number }> {
    this.runPeakMiB();
    let reset = true;
    try {
      writeFileSync(`/proc/${this.#pid}/clear_refs`, '5');
    } catch {
      reset = false; // not allowed here: sample VmRSS instead
    }
    let sampled = statusKiB(this.#pid, 'VmRSS');
    const timer = reset ? undefined : setInterval(() => (sampled = Math.max(sampled, statusKiB(this.#pid, 'VmRSS'))), 20);
    try {
      const result = await fn();
      const peakKiB = reset ? statusKiB(this.#pid, 'VmHWM') : sampled;
      this.#runPeakKiB = Math.max(this.#runPeakKiB, peakKiB);
      return { result, peakMiB: (peakKiB * 1024) / MiB };
    } finally {
      clearInterval(timer);
    }
  }
}

/** The one live process with `arg` among its arguments (the reference's pid: test/helpers/registry-server.ts keeps it private). */
export function pidWithArg(arg: string): number {
  const found = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
    try {
      return readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').includes(arg);
    } catch {
      return false;
    }
  });
  if (found.length !== 1) throw new Error(`expected one process with argument ${arg}, found ${found.length}`);
  return Number(found[0]);
}
