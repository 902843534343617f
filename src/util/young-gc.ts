/**
 * @module util/young-gc
 * Frees network read buffers promptly. Every chunk a socket read hands us is a fresh 64 KiB
 * ArrayBuffer outside the JS heap; a fill drops each one as soon as it is hashed and written,
 * but V8 frees such buffers only when a collection finds them dead, and it schedules
 * collections by JS-heap allocation, which a fill hardly does. Left alone, a 512 MiB fill piled
 * up 30–60 MiB of dead buffers before the first collection (measured: peak `arrayBuffers` ≈
 * bytes received, per 32 MiB). A young-generation collection after every few MiB received keeps
 * that bounded, for ~0.2 ms per collection.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

/** Received bytes between two young collections. */
const EVERY = 16 << 20;

type Gc = (options: { type: 'minor' | 'major' }) => void;
let gc: Gc | undefined | null = null;
let received = 0;

function load(): Gc | undefined {
  if (gc !== null) return gc;
  try {
    // --expose-gc set now applies to contexts created after it: a fresh one hands us `gc`.
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as Gc;
  } catch {
    gc = undefined;
  }
  return gc;
}

/** Counts `bytes` of read buffers that are now garbage; collects the young generation every {@link EVERY}. */
export function droppedBuffers(bytes: number): void {
  received += bytes;
  if (received < EVERY) return;
  received = 0;
  load()?.({ type: 'minor' });
}
