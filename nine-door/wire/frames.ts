/**
 * Splits a byte stream into 9P frames by their size[4] prefix.
 * @module
 */
import { InvalidError, TooBigError } from "../errors.ts";

/** Why the splitter stopped: the error to answer, and the frame's tag if known. */
export interface FrameRefusal {
  /** TooBigError (size above the cap) or InvalidError (size below 7). */
  readonly error: TooBigError | InvalidError;
  /** The size field that was refused. */
  readonly size: number;
  /** The refused frame's tag, if its header could be read (never for size < 7). */
  readonly tag: number | undefined;
  /** The refused frame's type number, when known. */
  readonly typeId: number | undefined;
}

const HEADER = 7;
/** Read-into mode: slab size, and the free space below which a new slab is taken. */
const SLAB = 64 * 1024;
const SLAB_MIN_FREE = 4096;

/**
 * Chooses the memory a frame that spans chunks is assembled in: return a
 * buffer of at least `size` bytes (the frame is assembled at its start), or
 * undefined for a fresh allocation. `tag` is the frame's tag.
 */
export type FrameAllocator = (size: number, tag: number) => Uint8Array | undefined;

/**
 * Cuts incoming chunks into whole frames. A frame that lies inside one chunk
 * is returned as a view of that chunk (no copy); a frame spread over chunks
 * is assembled into one buffer of exactly its size.
 *
 * A size field below 7 or above `maxFrame` leaves the stream unsynchronised,
 * so the splitter refuses for good: `next()` throws the refusal's error
 * (TooBigError or InvalidError) now and on every later call, `refusal` holds
 * the tag to answer (the splitter waits for the 7-byte header of an
 * oversize frame so the tag is known), and `push()` discards further input.
 * The caller answers that tag, then disconnects.
 *
 * @example
 * ```ts
 * const frames = new FrameSplitter(msize);
 * socket.on("data", (chunk) => {
 *   frames.push(chunk);
 *   try {
 *     for (let f = frames.next(); f !== undefined; f = frames.next()) handle(f);
 *   } catch (err) {
 *     const r = frames.refusal!;
 *     answerError(r.tag ?? NOTAG, r.error);
 *     socket.end();
 *   }
 * });
 * ```
 */
export class FrameSplitter {
  #max: number;
  // Chunks not yet consumed; the first one is read from #head on.
  #chunks: Uint8Array[] = [];
  #head = 0;
  #queued = 0;
  // A frame spread over chunks, filled as bytes arrive.
  #asm: Uint8Array | undefined = undefined;
  #asmFill = 0;
  #refusal: FrameRefusal | undefined = undefined;
  #allocator: FrameAllocator | undefined = undefined;
  // Read-into mode (readTarget/commit): a slab that small reads fill in turn.
  #slab: Uint8Array | undefined = undefined;
  #slabPos = 0;
  // Whether a frame was handed out as a view of the slab (then it is never rewound).
  #slabExposed = false;
  #target: "asm" | "slab" | undefined = undefined;
  #discarded = false;

  constructor(maxFrame: number) {
    this.#max = checkMax(maxFrame);
  }

  /**
   * Lets the caller supply the memory of frames that span chunks (a client
   * reading into its own reusable buffers avoids one allocation per large
   * reply). With an allocator set, assembly waits for the 7-byte header so
   * the tag is known.
   *
   * @example
   * ```ts
   * frames.setAllocator((size, tag) => (size <= lane.length && tag === laneTag ? lane : undefined));
   * ```
   */
  setAllocator(allocator: FrameAllocator | undefined): void {
    this.#allocator = allocator;
  }

  /** The largest frame accepted. */
  get maxFrame(): number {
    return this.#max;
  }

  /** Bytes held: queued chunks plus a partly assembled frame. */
  get buffered(): number {
    return this.#queued + this.#asmFill;
  }

  /** Set once a size field was refused; see the class doc. */
  get refusal(): FrameRefusal | undefined {
    return this.#refusal;
  }

  /**
   * Changes the cap for frames whose header has not been read yet (the server
   * lowers it to the negotiated msize). A frame already being assembled
   * is kept.
   */
  setMaxFrame(n: number): void {
    this.#max = checkMax(n);
  }

  /**
   * Read-into mode, for transports that read into memory the caller gives
   * (`net.Socket`'s `onread`): the memory the next read should fill. While
   * a frame that spans reads is being assembled this is the rest of that
   * frame, so its bytes go from the kernel straight to their place; between
   * frames it is the free part of a 64 KiB slab that is never reused (frames
   * returned as views of it stay valid). Call `commit(n)` after the read.
   *
   * @example
   * ```ts
   * net.connect({ port, onread: { buffer: () => frames.readTarget(), callback: (n) => { frames.commit(n); drain(); } } });
   * ```
   */
  readTarget(): Uint8Array {
    if (this.#asm !== undefined && this.#queued === 0 && this.#refusal === undefined) {
      this.#target = "asm";
      return this.#asm.subarray(this.#asmFill);
    }
    // Nothing queued and no frame handed out as a view: every byte read into
    // the slab was copied into an assembled frame, so it can be refilled.
    if (this.#slab !== undefined && !this.#slabExposed && this.#queued === 0) this.#slabPos = 0;
    if (this.#slab === undefined || this.#slab.length - this.#slabPos < SLAB_MIN_FREE) {
      this.#slab = Buffer.allocUnsafeSlow(SLAB);
      this.#slabPos = 0;
      this.#slabExposed = false;
    }
    this.#target = "slab";
    return this.#slab.subarray(this.#slabPos);
  }

  /** Takes the `n` bytes a read put into the last `readTarget()`; then call `next()`. */
  commit(n: number): void {
    const target = this.#target;
    this.#target = undefined;
    if (n <= 0 || target === undefined) return;
    if (target === "asm") {
      this.#asmFill += n;
      return;
    }
    const slab = this.#slab!;
    const start = this.#slabPos;
    this.#slabPos += n;
    this.push(slab.subarray(start, start + n));
  }

  /**
   * Drops every byte held (queued chunks, a frame being assembled) and
   * ignores later input: for a connection that is gone, so its memory can
   * be reclaimed even while something still refers to the splitter.
   *
   * @example
   * ```ts
   * socket.on("close", () => frames.discard());
   * ```
   */
  discard(): void {
    this.#chunks = [];
    this.#head = 0;
    this.#queued = 0;
    this.#asm = undefined;
    this.#asmFill = 0;
    this.#slab = undefined;
    this.#discarded = true;
  }

  /** Queues bytes from the stream. The chunk must not be modified afterwards. */
  push(chunk: Uint8Array): void {
    if (this.#refusal !== undefined || this.#discarded || chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#queued += chunk.length;
  }

  /**
   * The next complete frame (size[4] included), or undefined until more bytes
   * arrive. Throws TooBigError / InvalidError once a size field is refused.
   */
  next(): Uint8Array | undefined {
    if (this.#refusal !== undefined) throw this.#refusal.error;
    if (this.#asm !== undefined) return this.#fillAssembly();
    if (this.#queued < 4) return undefined;
    const size = this.#peekU32();
    if (size < HEADER) {
      this.#refuse(size, new InvalidError(`frame size ${size} is below the 7-byte header`));
    }
    if (size > this.#max) {
      if (this.#queued < HEADER) return undefined;
      this.#refuse(size, new TooBigError(`frame of ${size} bytes exceeds the ${this.#max}-byte limit`));
    }
    const first = this.#chunks[0]!;
    if (first.length - this.#head >= size) {
      const frame = first.subarray(this.#head, this.#head + size);
      if (this.#slab !== undefined && first.buffer === this.#slab.buffer) this.#slabExposed = true;
      this.#advance(size);
      return frame;
    }
    let asm: Uint8Array | undefined;
    if (this.#allocator !== undefined) {
      if (this.#queued < HEADER) return undefined;
      const own = this.#allocator(size, this.#peek(5) | (this.#peek(6) << 8));
      if (own !== undefined && own.length >= size) asm = own.length === size ? own : own.subarray(0, size);
    }
    this.#asm = asm ?? Buffer.allocUnsafe(size);
    this.#asmFill = 0;
    return this.#fillAssembly();
  }

  #fillAssembly(): Uint8Array | undefined {
    const asm = this.#asm!;
    while (this.#asmFill < asm.length && this.#queued > 0) {
      const chunk = this.#chunks[0]!;
      const take = Math.min(chunk.length - this.#head, asm.length - this.#asmFill);
      asm.set(chunk.subarray(this.#head, this.#head + take), this.#asmFill);
      this.#asmFill += take;
      this.#advance(take);
    }
    if (this.#asmFill < asm.length) return undefined;
    this.#asm = undefined;
    this.#asmFill = 0;
    return asm;
  }

  #advance(n: number): void {
    this.#queued -= n;
    this.#head += n;
    // Drop used-up chunks so their memory can be reclaimed.
    while (this.#chunks.length > 0 && this.#head >= this.#chunks[0]!.length) {
      this.#head -= this.#chunks[0]!.length;
      this.#chunks.shift();
    }
  }

  /** Byte `i` past the read position, across chunk boundaries. */
  #peek(i: number): number {
    let off = this.#head + i;
    for (const c of this.#chunks) {
      if (off < c.length) return c[off]!;
      off -= c.length;
    }
    return 0;
  }

  #peekU32(): number {
    const c = this.#chunks[0]!;
    const h = this.#head;
    if (c.length - h >= 4) return (c[h]! | (c[h + 1]! << 8) | (c[h + 2]! << 16)) + c[h + 3]! * 0x1000000;
    return (this.#peek(0) | (this.#peek(1) << 8) | (this.#peek(2) << 16)) + this.#peek(3) * 0x1000000;
  }

  #refuse(size: number, error: TooBigError | InvalidError): never {
    const known = size >= HEADER && this.#queued >= HEADER;
    this.#refusal = {
      error,
      size,
      tag: known ? this.#peek(5) | (this.#peek(6) << 8) : undefined,
      typeId: this.#queued >= 5 ? this.#peek(4) : undefined,
    };
    this.#chunks = [];
    this.#head = 0;
    this.#queued = 0;
    throw error;
  }
}

function checkMax(n: number): number {
  if (!Number.isInteger(n) || n < HEADER || n > 0xffffffff) {
    throw new RangeError(`FrameSplitter: maxFrame must be an integer from 7 to 2^32-1, got ${n}`);
  }
  return n;
}
