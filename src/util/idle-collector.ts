/**
 * @module util/idle-collector
 * Gives memory back after a burst of work, once the process has gone quiet.
 *
 * V8 collects the old generation when it reaches its limit, not when load stops: after a minute of
 * manifest hits the heap stayed at ~53 MiB with ~26 MiB of it garbage, and buffers pooled for a burst
 * of reads (external memory) stayed too, until some later load happened to trigger a collection. A
 * process that sits between bursts at its burst size is what a memory limit sees. So, as Go's runtime
 * forces a collection and returns freed memory in the background, the mirror runs one full collection
 * (and empties its buffer pools first) when the event loop has been busy and then idle for a couple
 * of seconds, if resident memory grew by 16 MiB or more since the last such collection. Measured
 * after the benchmark's manifest load: RSS 140–146 → 116–129 MiB before the next phase. An idle
 * process, one under steady load, or one whose bursts leave memory where it was is never collected
 * this way.
 */
import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';

export interface IdleCollectorOptions {
  /** Runs a full collection. */
  collect: () => void;
  /** Run before collecting: drop pooled buffers, so the collection can free them. */
  trims?: ReadonlyArray<() => void>;
  /** Event-loop utilisation (0–1) since the previous call. */
  utilization?: () => number;
  /** Resident memory in bytes. */
  memory?: () => number;
  /** Growth of resident memory since the last collection (or start) below which a burst is left alone. */
  minGrowth?: number;
  /** Called after each collection with its duration and the resident memory (bytes) before it, e.g. to log it. */
  onCollect?: (ms: number, memoryBefore: number) => void;
  tickMs?: number;
  /** Quiet ticks in a row after a busy one before collecting. */
  quietTicks?: number;
}

/** A tick at or above this utilisation makes the process busy (a burst worth cleaning up after). */
const BUSY = 0.1;
/** A tick below this utilisation is quiet. */
const QUIET = 0.02;

export interface IdleCollector {
  /** One tick of the schedule (exposed for tests; the timer calls it). */
  tick(): void;
  stop(): void;
}

export function startIdleCollector({
  collect,
  trims = [],
  utilization = loopUtilization(),
  memory = () => process.memoryUsage.rss(),
  minGrowth = 16 << 20,
  onCollect,
  tickMs = 1_000,
  quietTicks = 2,
}: IdleCollectorOptions): IdleCollector {
  let busy = false;
  let quiet = 0;
  let baseline = memory();
  const tick = () => {
    const u = utilization();
    if (u >= BUSY) {
      busy = true;
      quiet = 0;
      return;
    }
    quiet = u < QUIET ? quiet + 1 : 0;
    if (!busy || quiet < quietTicks) return;
    busy = false;
    quiet = 0;
    // A burst that left memory where it was (most pulls) is not worth a collection: the first burst
    // after a forced one ran with p99 spikes of 75–100 ms in ~30 % of trials (heap and new space
    // shrunk, grown again under load), against at most ~50 ms without.
    const before = memory();
    if (before - baseline < minGrowth) return;
    const started = performance.now();
    for (const trim of trims) trim();
    collect();
    // The collection's own time is not load: on a saturated machine one took 120–480 ms, which counted
    // as a busy second and set off the next collection three seconds later, and the next.
    utilization();
    baseline = memory();
    onCollect?.(performance.now() - started, before);
  };
  const timer = setInterval(tick, tickMs);
  timer.unref();
  return { tick, stop: () => clearInterval(timer) };
}

/** Utilisation of the event loop between consecutive calls. */
function loopUtilization(): () => number {
  let last = performance.eventLoopUtilization();
  return () => {
    const now = performance.eventLoopUtilization();
    const u = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    return u;
  };
}

/**
 * V8's full collection, without starting node with `--expose-gc`: the flag set at run time exposes
 * `gc` in contexts created after it (the same way main.ts sets `--heap-growing-percent`).
 */
export function fullCollection(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === 'function') return exposed;
  v8.setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}
