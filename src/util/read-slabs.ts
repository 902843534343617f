/**
 * @module util/read-slabs
 * Receive memory for bulk bodies, reused rather than allocated per socket read.
 *
 * Node's sockets read into a fresh 64 KiB buffer each time. Streaming a 512 MiB layer that way cost
 * ~3 CPU-s here: the allocator grows and trims its heap around those buffers (page faults, which
 * this VM makes expensive), V8 starts a major collection for every 64 MiB of them (external memory
 * pressure), and undici copies each into its parser's WebAssembly memory. Reading into 1 MiB slabs
 * that return to a pool once their bytes are on disk took a lone fill, served to one client, to
 * 0.8–1.0 CPU-s against 1.5–1.7 with undici (the bench's cold-pull CPU row).
 *
 * A socket reads into the free tail of its current slab (`net.Socket`'s `onread` option); each read
 * becomes a view of it. A slab goes back to the pool when it is full and every view of it was
 * released with {@link SlabPool.release}. A view nobody releases keeps its slab out of the pool, which
 * the collector then frees like any buffer: forgetting a release costs speed, never correctness.
 * Releasing a view that is still in use would hand its bytes to the next read: only the one
 * consumer that owns a chunk (the blob fill, once the bytes are written) releases it. The pool is an
 * object the composition root creates and hands to the upstream clients; nothing here is module state.
 */

/** One slab: 1 MiB takes what loopback and fast links deliver per read (256 KiB cost ~1.5× the CPU). */
const SLAB_BYTES = 1 << 20;
/** A slab with less room than this left is retired: reads into tiny tails would cost a syscall each. */
const MIN_READ_BYTES = 128 << 10;

interface Slab {
  readonly buf: Buffer;
  /** Bytes handed out as views since the slab was (re)issued. */
  used: number;
  /** Views handed out and not yet released. */
  refs: number;
  /** Still some socket's read target. */
  reading: boolean;
}

/** The free slabs, and which slab a view belongs to. */
export class SlabPool {
  readonly #free: Slab[] = [];
  readonly #byMemory = new WeakMap<ArrayBufferLike, Slab>();
  readonly #maxFree: number;

  /** `maxFree`: free slabs kept for reuse (8 = 8 MiB); beyond that they are left to the collector. */
  constructor({ maxFree = 8 }: { maxFree?: number } = {}) {
    this.#maxFree = maxFree;
  }

  /** A read target for one socket. */
  reader(): SlabReader {
    return new SlabReader(this);
  }

  /** @internal A slab to read into: a free one, or a new one. */
  issue(): Slab {
    const slab = this.#free.pop();
    if (slab) {
      slab.used = 0;
      slab.reading = true;
      return slab;
    }
    // allocUnsafeSlow: a slab of its own, never a slice of Node's shared pool, so `chunk.buffer` names it.
    const created: Slab = { buf: Buffer.allocUnsafeSlow(SLAB_BYTES), used: 0, refs: 0, reading: true };
    this.#byMemory.set(created.buf.buffer, created);
    return created;
  }

  /** @internal Back to the pool once no socket reads into it and no view is held. */
  recycle(slab: Slab): void {
    if (slab.reading || slab.refs !== 0) return;
    if (this.#free.length < this.#maxFree) this.#free.push(slab);
  }

  /** Counts one more holder of `chunk` (a view of a slab, or part of one); ignores other buffers. */
  retain(chunk: Buffer): void {
    const slab = this.#byMemory.get(chunk.buffer);
    if (slab) slab.refs++;
  }

  /**
   * Gives back a view {@link SlabReader.took} or {@link retain} counted; ignores other buffers.
   * Once per count: the bytes may be overwritten as soon as the last holder let go.
   */
  release(chunk: Buffer): void {
    const slab = this.#byMemory.get(chunk.buffer);
    if (!slab) return;
    slab.refs--;
    this.recycle(slab);
  }

  /** Drops the free slabs (the idle collector then frees them). */
  trim(): void {
    this.#free.length = 0;
  }

  /** Slabs waiting in the pool (for tests and metrics). */
  get freeCount(): number {
    return this.#free.length;
  }
}

/** The read target of one socket: where its next read goes, and its reads as views. */
export class SlabReader {
  readonly #pool: SlabPool;
  #slab: Slab | undefined;

  constructor(pool: SlabPool) {
    this.#pool = pool;
    this.#slab = pool.issue();
  }

  /** The free tail of the current slab, for the next read (the `onread` buffer). */
  target(): Buffer {
    const slab = this.#current();
    return slab.buf.subarray(slab.used);
  }

  /** The `n` bytes just read into {@link target}, as a view; counted until released. */
  took(n: number): Buffer {
    const slab = this.#current();
    const view = slab.buf.subarray(slab.used, slab.used + n);
    slab.used += n;
    slab.refs++;
    if (SLAB_BYTES - slab.used < MIN_READ_BYTES) this.#retire();
    return view;
  }

  /** The socket is done: its slab returns once the last view is released. */
  close(): void {
    this.#retire();
  }

  #current(): Slab {
    this.#slab ??= this.#pool.issue();
    return this.#slab;
  }

  #retire(): void {
    const slab = this.#slab;
    if (!slab) return;
    this.#slab = undefined;
    slab.reading = false;
    this.#pool.recycle(slab);
  }
}
