/**
 * Little-endian cursors for 9P frames.
 *
 * `WireReader` never throws: a read past the end returns 0 (or "" or an empty
 * view) and sets `overrun`; a string with NUL or invalid UTF-8 sets
 * `badString`; a decoder that finds a semantic problem calls `fail()`. The
 * caller checks `problem` once, after the whole frame is read (STYLE habit 3).
 *
 * `WireWriter` writes into one preallocated Buffer: callers compute the frame
 * size first (`stringSize`), so a frame costs exactly one allocation.
 * @module
 */
import { isUtf8 } from "node:buffer";
import { TooBigError } from "../errors.ts";
import type { Qid } from "./types.ts";

const TWO_32 = 4294967296;
// 2^64 as a double: any u64 at or above it saturates to ~0 on write, so the
// wstat(5) "don't touch" value (~0) survives a decode/encode round trip.
const TWO_64 = 18446744073709551616;
const MAX_SAFE_HI = 0x200000; // hi word below this keeps the value under 2^53

const utf8 = new TextDecoder("utf-8");

/**
 * A cursor over one frame (or any 9P-encoded bytes).
 *
 * @example
 * ```ts
 * const r = new WireReader(frame, 7);
 * const fid = r.u32();
 * const name = r.string();
 * if (r.problem !== undefined) throw new InvalidError(r.problem);
 * ```
 */
export class WireReader {
  readonly #b: Uint8Array;
  #p: number;
  #overrun = false;
  #badString: string | undefined = undefined;
  #invalid: string | undefined = undefined;

  constructor(bytes: Uint8Array, offset = 0) {
    this.#b = bytes;
    this.#p = offset;
  }

  /** Position of the next byte to read. */
  get offset(): number {
    return this.#p;
  }

  /** Bytes left after the cursor. */
  get remaining(): number {
    return this.#b.length - this.#p;
  }

  /** True once any read went past the end. */
  get overrun(): boolean {
    return this.#overrun;
  }

  /** What was wrong with the first bad string (NUL or invalid UTF-8). */
  get badString(): string | undefined {
    return this.#badString;
  }

  /** The first semantic problem a decoder reported through `fail()`. */
  get invalid(): string | undefined {
    return this.#invalid;
  }

  /**
   * The first problem worth reporting, most specific first, or undefined if
   * everything read so far was well formed.
   */
  get problem(): string | undefined {
    if (this.#invalid !== undefined) return this.#invalid;
    if (this.#overrun) return "frame ends early";
    return this.#badString;
  }

  /** Records a semantic problem; only the first one is kept. */
  fail(detail: string): void {
    if (this.#invalid === undefined) this.#invalid = detail;
  }

  #short(): void {
    this.#overrun = true;
    this.#p = this.#b.length;
  }

  u8(): number {
    const p = this.#p;
    if (p + 1 > this.#b.length) {
      this.#short();
      return 0;
    }
    this.#p = p + 1;
    return this.#b[p]!;
  }

  u16(): number {
    const b = this.#b;
    const p = this.#p;
    if (p + 2 > b.length) {
      this.#short();
      return 0;
    }
    this.#p = p + 2;
    return b[p]! | (b[p + 1]! << 8);
  }

  u32(): number {
    const b = this.#b;
    const p = this.#p;
    if (p + 4 > b.length) {
      this.#short();
      return 0;
    }
    this.#p = p + 4;
    // Multiply the top byte so the result stays unsigned.
    return (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16)) + b[p + 3]! * 0x1000000;
  }

  /** A u64 as a number; exact below 2^53. */
  u64(): number {
    const lo = this.u32();
    const hi = this.u32();
    return hi * TWO_32 + lo;
  }

  /** A u64 as an exact bigint. */
  u64big(): bigint {
    const lo = this.u32();
    const hi = this.u32();
    // One BigInt allocation in the common case of a path below 2^53.
    if (hi < MAX_SAFE_HI) return BigInt(hi * TWO_32 + lo);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** A string: u16 byte length, then UTF-8 without NUL. */
  string(): string {
    const b = this.#b;
    const start = this.#p;
    if (start + 2 > b.length) {
      this.#short();
      return "";
    }
    const len = b[start]! | (b[start + 1]! << 8);
    const from = start + 2;
    const to = from + len;
    if (to > b.length) {
      this.#short();
      return "";
    }
    this.#p = to;
    let ascii = true;
    for (let i = from; i < to; i++) {
      const c = b[i]!;
      if (c === 0) {
        this.#badString ??= `string at byte ${start} contains NUL`;
        return "";
      }
      if (c >= 0x80) ascii = false;
    }
    if (ascii) {
      // Short ASCII names are the hot case (walk); building them in JS
      // avoids a native call per name.
      if (len <= 32) {
        let s = "";
        for (let i = from; i < to; i++) s += String.fromCharCode(b[i]!);
        return s;
      }
      return utf8.decode(b.subarray(from, to));
    }
    const view = b.subarray(from, to);
    if (!isUtf8(view)) {
      this.#badString ??= `string at byte ${start} is not valid UTF-8`;
      return "";
    }
    return utf8.decode(view);
  }

  /** A qid[13]: type[1] version[4] path[8]. */
  qid(): Qid {
    const type = this.u8();
    const version = this.u32();
    const path = this.u64big();
    return { type, version, path };
  }

  /** The next `n` bytes as a view into the same memory (no copy). */
  bytes(n: number): Uint8Array {
    const p = this.#p;
    if (n < 0 || p + n > this.#b.length) {
      this.#short();
      return this.#b.subarray(this.#b.length);
    }
    this.#p = p + n;
    return this.#b.subarray(p, p + n);
  }
}

/**
 * Bytes a 9P string takes on the wire: 2 + its UTF-8 length.
 * Throws TooBigError above 65535 bytes (the u16 length cannot say it).
 *
 * @example
 * ```ts
 * stringSize("tmp"); // 5
 * ```
 */
export function stringSize(s: string): number {
  const n = s.length <= 64 && isAscii(s) ? s.length : Buffer.byteLength(s, "utf8");
  if (n > 0xffff) throw new TooBigError(`string of ${n} bytes exceeds 65535`);
  return 2 + n;
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return false;
  return true;
}

/**
 * Writes 9P fields into a Buffer of a size computed up front.
 *
 * @example
 * ```ts
 * const w = new WireWriter(4 + stringSize("9P2000.L"));
 * w.u32(8192);
 * w.string("9P2000.L");
 * const bytes = w.finish();
 * ```
 */
export class WireWriter {
  readonly #buf: Buffer;
  #p = 0;

  /** Allocates exactly `size` bytes (uninitialised; every byte gets written). */
  constructor(size: number) {
    this.#buf = Buffer.allocUnsafe(size);
  }

  /** Position of the next byte to write. */
  get offset(): number {
    return this.#p;
  }

  u8(v: number): void {
    this.#buf[this.#p++] = v;
  }

  u16(v: number): void {
    const b = this.#buf;
    const p = this.#p;
    b[p] = v;
    b[p + 1] = v >>> 8;
    this.#p = p + 2;
  }

  u32(v: number): void {
    const b = this.#buf;
    const p = this.#p;
    b[p] = v;
    b[p + 1] = v >>> 8;
    b[p + 2] = v >>> 16;
    b[p + 3] = v >>> 24;
    this.#p = p + 4;
  }

  /** A number as u64; values at or above 2^64−1 write ~0, small negatives wrap. */
  u64(v: number): void {
    if (v >= TWO_64) {
      this.u32(0xffffffff);
      this.u32(0xffffffff);
      return;
    }
    this.u32(v >>> 0);
    this.u32(Math.floor(v / TWO_32) >>> 0);
  }

  /** A bigint as u64 (taken modulo 2^64). */
  u64big(v: bigint): void {
    if (v >= 0n && v <= 0x1fffffffffffffn) {
      const n = Number(v);
      this.u32(n >>> 0);
      this.u32(Math.floor(n / TWO_32));
      return;
    }
    this.#buf.writeBigUInt64LE(BigInt.asUintN(64, v), this.#p);
    this.#p += 8;
  }

  /** A string; its size must have been counted with `stringSize`. */
  string(s: string): void {
    const b = this.#buf;
    const p = this.#p;
    let n: number;
    if (s.length <= 64 && isAscii(s)) {
      n = s.length;
      for (let i = 0; i < n; i++) b[p + 2 + i] = s.charCodeAt(i);
    } else {
      n = b.write(s, p + 2, "utf8");
    }
    b[p] = n;
    b[p + 1] = n >>> 8;
    this.#p = p + 2 + n;
  }

  /** A qid[13]. */
  qid(q: Qid): void {
    this.u8(q.type);
    this.u32(q.version);
    this.u64big(q.path);
  }

  /** Copies raw bytes. */
  bytes(data: Uint8Array): void {
    this.#buf.set(data, this.#p);
    this.#p += data.length;
  }

  /** The filled buffer; throws if the size computed up front was wrong. */
  finish(): Buffer {
    if (this.#p !== this.#buf.length) {
      throw new Error(`WireWriter: wrote ${this.#p} of ${this.#buf.length} bytes`);
    }
    return this.#buf;
  }
}
