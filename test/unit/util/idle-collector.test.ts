import { describe, expect, it } from 'vitest';
import { fullCollection, startIdleCollector } from '../../../src/util/idle-collector.ts';

const MiB = 1 << 20;

/**
 * A collector driven by a scripted utilisation per reading and resident memory (MiB) per reading
 * (the last value repeats; by default it grows 100 MiB per reading, always enough); returns what it did.
 */
function run(utilisations: number[], memoryMiB?: number[]): string[] {
  const events: string[] = [];
  let i = 0;
  let m = 0;
  const collector = startIdleCollector({
    collect: () => events.push(`collect@${i - 1}`),
    trims: [() => events.push(`trim@${i - 1}`)],
    utilization: () => utilisations[i++] ?? 0,
    memory: () => (memoryMiB ? memoryMiB[Math.min(m++, memoryMiB.length - 1)]! : 100 * m++) * MiB,
    tickMs: 3_600_000,
  });
  try {
    for (let t = 0; t < utilisations.length; t++) collector.tick();
  } finally {
    collector.stop();
  }
  return events;
}

describe('startIdleCollector', () => {
  it('trims the pools, then collects once, after a busy tick followed by two quiet ones', () => {
    expect(run([0.9, 0.8, 0.01, 0.0, 0.0, 0.0])).toEqual(['trim@3', 'collect@3']);
  });

  it('never collects a process that was never busy', () => {
    expect(run([0, 0.01, 0.05, 0, 0, 0, 0])).toEqual([]);
  });

  it('waits while the load merely dips, and collects again only after another burst', () => {
    // 0.05 is neither busy nor quiet: it restarts the quiet count.
    expect(run([0.5, 0.01, 0.05, 0.01, 0.01, 0, 0, 0.3, 0, 0])).toEqual(['trim@4', 'collect@4', 'trim@9', 'collect@9']);
  });

  it('does not count the time of its own collection as load that calls for another', () => {
    // The reading right after a collection covers the collection itself (here a slow one, 0.5).
    expect(run([0.9, 0, 0, 0.5, 0, 0, 0, 0])).toEqual(['trim@2', 'collect@2']);
  });

  it('leaves alone a burst after which resident memory grew by less than 16 MiB', () => {
    // Memory readings: at start 100 MiB; when the first burst has gone quiet 110 (left alone); after
    // the second 130 (collected), then 105 just after the collection; after the third 115 (left alone).
    expect(run([0.9, 0, 0, 0.9, 0, 0, 0, 0.9, 0, 0], [100, 110, 130, 105, 115])).toEqual(['trim@5', 'collect@5']);
  });

  it('gets V8’s full collection without node’s --expose-gc flag', async () => {
    const collect = fullCollection();
    const ref = new WeakRef(Array.from({ length: 10_000 }, (_, i) => ({ i })));
    // A WeakRef's target stays alive until the job that created it ends.
    await new Promise((resolve) => setTimeout(resolve, 0));
    collect();
    expect(ref.deref()).toBeUndefined();
  });
});
