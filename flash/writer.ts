/**
 * Writing an image to a disk or a plain file, then reading it back: the
 * bytes written are hashed as they go, the target is fsynced, read back
 * and hashed again, and the two sha256 must agree (and agree with the
 * manifest's, when given — so an image changed after it was verified is
 * caught too).
 *
 * @example
 * ```ts
 * const r = await writeImage("appliance.img", "/tmp/card.img", { onProgress: (p) => console.log(p.phase, p.done) });
 * console.log(r.sha256, r.bytes);
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { InvalidError, NineError } from "../nine-door/index.ts";

/** Where a write is. */
export interface Progress {
  readonly phase: "write" | "verify";
  readonly done: number;
  readonly total: number;
}

/** Options of {@link writeImage}. */
export interface WriteOptions {
  /**
   * The target is a block device: opened with O_EXCL (the kernel refuses
   * a device that is mounted or held), never truncated, and its buffer
   * cache flushed before reading back (`flushBuffers`).
   */
  readonly device?: boolean;
  /** The sha256 (hex) the image must have, from its verified manifest. */
  readonly expectedSha256?: string;
  readonly onProgress?: (p: Progress) => void;
  /** Bytes per read and write; default 4 MiB. */
  readonly chunkBytes?: number;
  readonly signal?: AbortSignal;
  /** Drops the device's cached pages so the read-back comes from the medium (`blockdev --flushbufs`). */
  readonly flushBuffers?: () => Promise<void>;
}

/** What was written. */
export interface WriteResult {
  readonly bytes: number;
  /** sha256 (hex) of the bytes written, equal to the bytes read back. */
  readonly sha256: string;
  readonly writeMs: number;
  readonly verifyMs: number;
}

/** Writing or reading back went wrong; the target holds an unknown state. */
export class WriteError extends NineError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super("io", detail, options);
    this.name = "WriteError";
  }
}

const DEFAULT_CHUNK = 4 * 1024 * 1024;

async function readFully(fh: FileHandle, buf: Buffer, position: number): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const { bytesRead } = await fh.read(buf, got, buf.length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

async function writeFully(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  let put = 0;
  while (put < buf.length) {
    const { bytesWritten } = await fh.write(buf, put, buf.length - put, position + put);
    if (bytesWritten === 0) throw new WriteError(`short write at byte ${position + put}`);
    put += bytesWritten;
  }
}

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code === "EBUSY") return "the device is busy (mounted or held by another program)";
  if (e.code === "EACCES" || e.code === "EPERM") return "permission denied (run as root, or add yourself to the disk group)";
  if (e.code === "ENOSPC") return "no space left: the target is smaller than the image";
  return e.message;
}

/**
 * Writes `imagePath` to `targetPath` and reads it back. A plain file is
 * created or truncated; a device (`device: true`) is opened exclusively.
 * Throws {@link WriteError} when a write fails or the read-back differs,
 * and InvalidError when the image is not the one the manifest describes.
 */
export async function writeImage(imagePath: string, targetPath: string, options: WriteOptions = {}): Promise<WriteResult> {
  const chunk = options.chunkBytes ?? DEFAULT_CHUNK;
  const { onProgress, signal } = options;
  const image = await open(imagePath, "r");
  let target: FileHandle | undefined;
  try {
    const total = (await image.stat()).size;
    const flags = options.device ? constants.O_WRONLY | constants.O_EXCL : constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC;
    try {
      target = await open(targetPath, flags, 0o644);
    } catch (err) {
      throw new WriteError(`cannot open ${targetPath} for writing: ${describe(err)}`, { cause: err });
    }

    // Write, hashing what is written; the next chunk is read while this one is written.
    const started = performance.now();
    const hash = createHash("sha256");
    let bufs = [Buffer.allocUnsafe(chunk), Buffer.allocUnsafe(chunk)];
    let pending = readFully(image, bufs[0]!, 0);
    let done = 0;
    onProgress?.({ phase: "write", done: 0, total });
    while (done < total) {
      signal?.throwIfAborted();
      const n = await pending;
      if (n === 0) throw new WriteError(`${imagePath} ended at byte ${done} of ${total}: it changed while being written`);
      const current = bufs[0]!.subarray(0, n);
      hash.update(current);
      pending = done + n < total ? readFully(image, bufs[1]!, done + n) : Promise.resolve(0);
      try {
        await writeFully(target, current, done);
      } catch (err) {
        await pending.catch(() => 0);
        throw err instanceof WriteError ? err : new WriteError(`writing ${targetPath} at byte ${done}: ${describe(err)}`, { cause: err });
      }
      done += n;
      bufs = [bufs[1]!, bufs[0]!];
      onProgress?.({ phase: "write", done, total });
    }
    const sha256 = hash.digest("hex");
    if (options.expectedSha256 !== undefined && sha256 !== options.expectedSha256.toLowerCase()) {
      throw new InvalidError(`${imagePath} changed after it was verified: sha256 ${sha256}, manifest says ${options.expectedSha256}; ${targetPath} holds the changed bytes, flash again`);
    }
    try {
      await target.sync();
    } catch (err) {
      throw new WriteError(`fsync ${targetPath}: ${describe(err)}`, { cause: err });
    }
    await target.close();
    target = undefined;
    const writeMs = performance.now() - started;

    // Read back from the medium and compare.
    const verifyStart = performance.now();
    if (options.device) await options.flushBuffers?.();
    const back = await open(targetPath, "r");
    const check = createHash("sha256");
    try {
      const buf = Buffer.allocUnsafe(chunk);
      let read = 0;
      onProgress?.({ phase: "verify", done: 0, total });
      while (read < total) {
        signal?.throwIfAborted();
        const want = Math.min(chunk, total - read);
        const n = await readFully(back, buf.subarray(0, want), read);
        if (n < want) throw new WriteError(`reading back ${targetPath}: it ends at byte ${read + n} of ${total}`);
        check.update(buf.subarray(0, n));
        read += n;
        onProgress?.({ phase: "verify", done: read, total });
      }
    } finally {
      await back.close();
    }
    const readBack = check.digest("hex");
    if (readBack !== sha256) {
      throw new WriteError(`read-back of ${targetPath} differs from the image: wrote sha256 ${sha256}, read ${readBack} (a failing or fake-capacity card?)`);
    }
    return { bytes: total, sha256, writeMs, verifyMs: performance.now() - verifyStart };
  } finally {
    await target?.close();
    await image.close();
  }
}
