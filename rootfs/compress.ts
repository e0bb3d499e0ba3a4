/**
 * Compression of an archive for the kernel, and the per-board size guard.
 */
import { gunzipSync, gzipSync, constants as zlib } from "node:zlib";
import { InvalidError, TooBigError } from "../nine-door/index.ts";

/** How an initramfs is compressed. The kernel's initrd code reads both. */
export type Compression = "gzip" | "none";

/** gzip header OS byte for Unix (RFC 1952), whatever the build host. */
const GZIP_OS_UNIX = 3;
/** gzip header XFL byte for "maximum compression" (level 9). */
const GZIP_XFL_BEST = 2;

/**
 * Compresses an archive. `"gzip"` is deflate at level 9 with a fixed header
 * (no name, mtime 0, XFL 2, OS 3 = Unix) so the same input gives the same
 * bytes on every run and every host OS. The deflate stream itself is only as
 * stable as Node's bundled zlib (`process.versions.zlib`): compare images
 * across Node builds on their uncompressed archive. `"none"` returns the
 * input unchanged (no copy).
 *
 * @example
 * ```ts
 * const initrd = compress(writeCpio(entries), "gzip");
 * ```
 */
export function compress(buf: Uint8Array, compression: Compression): Buffer {
  switch (compression) {
    case "none":
      return Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    case "gzip": {
      const out = gzipSync(buf, { level: zlib.Z_BEST_COMPRESSION, memLevel: 9, strategy: zlib.Z_DEFAULT_STRATEGY });
      out.writeUInt32LE(0, 4); // MTIME: none
      out[8] = GZIP_XFL_BEST;
      out[9] = GZIP_OS_UNIX;
      return out;
    }
    default:
      throw new InvalidError(`compress: unknown compression: ${String(compression satisfies never)}`);
  }
}

/**
 * Undoes {@link compress}: gunzips a gzip stream (recognised by its magic
 * `1f 8b`), returns anything else unchanged. A corrupt gzip stream is an
 * InvalidError.
 *
 * @example
 * ```ts
 * const entries = readCpio(decompress(readFileSync("initrd.gz")));
 * ```
 */
export function decompress(buf: Uint8Array): Buffer {
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      return gunzipSync(buf);
    } catch (err) {
      throw new InvalidError(`decompress: corrupt gzip stream: ${(err as Error).message}`);
    }
  }
  return Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Options of {@link checkSize}. */
export interface CheckSizeOptions {
  /** The largest acceptable size in bytes (a board's limit). */
  limit: number;
  /** What is measured, for the message (e.g. `"aarch64-virt initramfs (gzip)"`). */
  what: string;
  /** What to do about it; default: shrink the image or raise the board's limit. */
  hint?: string;
}

const mib = (n: number): string => `${(n / (1024 * 1024)).toFixed(1)} MiB`;

/**
 * The size guard: throws a TooBigError when `bytes` (a size, or the bytes
 * themselves) exceeds `limit`, giving both sizes in MiB and what to do.
 * Returns the size when it fits.
 *
 * @example
 * ```ts
 * checkSize(initrd, { limit: 64 * 1024 * 1024, what: "aarch64-virt initramfs (gzip)" });
 * // TooBigError: too big: aarch64-virt initramfs (gzip) is 70.2 MiB, over its limit of 64.0 MiB: …
 * ```
 */
export function checkSize(bytes: number | Uint8Array, options: CheckSizeOptions): number {
  const size = typeof bytes === "number" ? bytes : bytes.byteLength;
  const { limit, what } = options;
  if (!Number.isFinite(limit) || limit < 0) throw new InvalidError(`checkSize: limit for ${what} is not a size in bytes: ${limit}`);
  if (size > limit) {
    const hint = options.hint ?? "drop files from the image (unused workers, ICU data, debug symbols) or raise the board's size limit";
    throw new TooBigError(`${what} is ${mib(size)} (${size} bytes), over its limit of ${mib(limit)} (${limit} bytes): ${hint}`);
  }
  return size;
}
