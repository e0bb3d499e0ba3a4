/**
 * The staging of one update bundle on the state disk while it streams in
 * over `/update/data`: `<state>/update/staging.bundle` (the bytes),
 * `transfer.json` (which bundle: its size and sha256, written once at
 * `begin`) and `progress.json` (the verified offset). Bytes are hostile
 * until checked: the header as soon as it is whole (signature, board,
 * version, sizes), each chunk against the header's signed hash list once it
 * is complete. The verified offset only moves after the staging file is
 * fdatasync'd, so it survives kill -9 and power cuts; the progress record
 * is only a hint (never synced, never ahead of the synced bytes): chunks
 * past it, or all when it is torn or missing, are hashed again at start.
 * @module
 */
import { createHash, type Hash } from "node:crypto";
import { constants, mkdir, open, readFile, rename, rm, stat, statfs, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { InvalidError, TooBigError } from "../nine-door/index.ts";
import { bundleHeaderLength, chunkRange, parseBundleHeader, verifyChunk, type BundleHeader } from "./bundle.ts";
import { SLOT_FILES } from "./boot-script.ts";

/** The bounds of a staged transfer (docs/security.md, "Updates"). */
export interface StagingLimits {
  /** Largest bundle accepted by `begin`, bytes. Default 512 MiB. */
  readonly maxBundleBytes: number;
  /** Free space `begin` leaves on the state disk for the commit log and audit, bytes. Default 16 MiB. */
  readonly reserveBytes: number;
  /** Largest chunk a header may declare (one chunk is read into memory to be checked), bytes. Default 16 MiB. */
  readonly maxChunkBytes: number;
}

/** Default {@link StagingLimits}. */
export const DEFAULT_STAGING_LIMITS: StagingLimits = { maxBundleBytes: 512 << 20, reserveBytes: 16 << 20, maxChunkBytes: 16 << 20 };

/** The bundle a transfer is for, fixed by `begin`. */
export interface TransferId {
  readonly size: number;
  readonly sha256: string;
  /** `begin` said an older version may come (the header check lets it through; `commit` must say so again). */
  readonly allowDowngrade: boolean;
}

/** What the header check needs beyond the bytes: the signature, board and version rules of `checkBundleHeader`. */
export type HeaderCheck = (header: BundleHeader, transfer: TransferId) => void;

/** Where a transfer stands: `idle` (none), `receiving`, `staged` (every byte verified). */
export type TransferState = "idle" | "receiving" | "staged";

const SHA256 = /^[0-9a-f]{64}$/;
const PAYLOAD_NAMES: readonly string[] = [SLOT_FILES.kernel, SLOT_FILES.initrd, SLOT_FILES.manifest];

/** `<stateDir>/update`, where a transfer is staged. */
export function stagingDir(stateDir: string): string {
  return join(stateDir, "update");
}

/**
 * The one staged transfer. Not safe for overlapping calls: the caller
 * (`UpdateService`) runs them one at a time.
 *
 * @example
 * ```ts
 * const staging = await Staging.open({ stateDir, check: (h) => checkBundleHeader(h, rules) });
 * await staging.begin({ size, sha256, allowDowngrade: false }); // 0, or the verified offset to resume from
 * await staging.write(0, firstBytes);
 * ```
 */
export class Staging {
  readonly #dir: string;
  readonly #limits: StagingLimits;
  readonly #check: HeaderCheck;
  #transfer: TransferId | undefined;
  #header: { header: BundleHeader; headerEnd: number } | undefined;
  /** Bytes checked and synced: what a restart resumes from. */
  #verified = 0;
  /** Bytes taken so far (verified plus a chunk in progress). */
  #received = 0;
  /** The next chunk to check. */
  #chunk = 0;
  #file: FileHandle | undefined;
  /** `progress.json`, rewritten in place (one fixed-size record) as the verified offset moves. */
  #progress: FileHandle | undefined;
  /** The running sha256 of the chunk being received, and the file offset fed to it so far. */
  #hash: Hash | undefined;
  #hashed = 0;

  private constructor(dir: string, check: HeaderCheck, limits: StagingLimits) {
    this.#dir = dir;
    this.#check = check;
    this.#limits = limits;
  }

  /**
   * Opens the staging folder and recovers a transfer a previous run left:
   * the verified offset from `progress.json`, or, when that record is torn
   * or missing, by re-checking the staged header and chunks. A transfer
   * whose identity record is unreadable, or whose header no longer passes
   * `check` (e.g. another release key now), is dropped.
   */
  static async open(options: { stateDir: string; check: HeaderCheck; limits?: Partial<StagingLimits> }): Promise<Staging> {
    const staging = new Staging(stagingDir(options.stateDir), options.check, { ...DEFAULT_STAGING_LIMITS, ...options.limits });
    await mkdir(staging.#dir, { recursive: true, mode: 0o700 });
    await staging.#recover();
    return staging;
  }

  /** Path of the staged bundle file. */
  get path(): string {
    return join(this.#dir, "staging.bundle");
  }

  /** The limits in force. */
  get limits(): StagingLimits {
    return this.#limits;
  }

  /** The transfer under way, if any. */
  get transfer(): TransferId | undefined {
    return this.#transfer;
  }

  /** The checked header, once whole. */
  get header(): { header: BundleHeader; headerEnd: number } | undefined {
    return this.#header;
  }

  /** Verified bytes (what `begin` resumes from). */
  get verified(): number {
    return this.#verified;
  }

  /** Bytes taken (the next write's offset). */
  get received(): number {
    return this.#received;
  }

  get state(): TransferState {
    if (this.#transfer === undefined) return "idle";
    return this.#verified === this.#transfer.size ? "staged" : "receiving";
  }

  /**
   * Starts (or resumes) the transfer of the bundle `id`: returns the
   * verified offset when the same bundle is staged, else drops what is
   * staged and returns 0. Refuses, before dropping anything, a size over
   * `maxBundleBytes` or over the state disk's free space less `reserveBytes`.
   */
  async begin(id: TransferId): Promise<number> {
    if (!Number.isSafeInteger(id.size) || id.size < 21) throw new InvalidError(`begin: size ${id.size} must be a whole number of bytes, more than a bundle's 20-byte preamble`);
    if (!SHA256.test(id.sha256)) throw new InvalidError("begin: sha256 must be 64 lowercase hex digits (the whole bundle file's)");
    const same = this.#transfer !== undefined && this.#transfer.sha256 === id.sha256 && this.#transfer.size === id.size;
    if (same) {
      await this.#cut(this.#verified);
      return this.#verified;
    }
    if (id.size > this.#limits.maxBundleBytes) {
      throw new TooBigError(`bundle of ${id.size} bytes, limit ${this.#limits.maxBundleBytes} (update.max_bundle_bytes)`);
    }
    const fs = await statfs(this.#dir);
    const staged = await stat(this.path).then((s) => s.size, () => 0);
    const free = Number(fs.bavail) * Number(fs.bsize) + staged - this.#limits.reserveBytes;
    if (id.size > free) {
      throw new TooBigError(`bundle of ${id.size} bytes does not fit the state disk: ${Math.max(0, free)} bytes free after the ${this.#limits.reserveBytes} kept for the commit log (update.reserve_bytes)`);
    }
    await this.drop();
    await writeRecord(join(this.#dir, "transfer.json"), { size: id.size, sha256: id.sha256, allowDowngrade: id.allowDowngrade });
    this.#transfer = id;
    this.#file = await open(this.path, "w+", 0o600);
    return 0;
  }

  /**
   * Takes bytes at `offset`, which must be the bytes received so far.
   * Checks the header once whole and each chunk once complete; a refused
   * header drops the transfer, a chunk that fails its hash cuts the file
   * back to the verified offset. Resolves with the bytes taken.
   */
  async write(offset: number, data: Uint8Array): Promise<number> {
    const t = this.#transfer;
    if (t === undefined) throw new InvalidError('no transfer begun: write {"begin":{"size":N,"sha256":"…"}} to /update/ctl first');
    if (offset !== this.#received) throw new InvalidError(`expected offset ${this.#received}, got ${offset}`);
    if (offset + data.length > t.size) throw new TooBigError(`write of ${data.length} bytes at ${offset} passes the ${t.size} bytes begun`);
    if (data.length === 0) return 0;
    const file = await this.#handle();
    await file.write(data, 0, data.length, offset);
    this.#received += data.length;
    await this.#advance({ offset, data });
    return data.length;
  }

  /** Drops the staged transfer (files and state). */
  async drop(): Promise<void> {
    await this.close();
    this.#transfer = undefined;
    this.#header = undefined;
    this.#hash = undefined;
    this.#verified = this.#received = this.#chunk = this.#hashed = 0;
    for (const name of ["transfer.json", "progress.json", "staging.bundle"]) await rm(join(this.#dir, name), { force: true });
  }

  /** Closes the staging file (the staged transfer stays on disk). */
  async close(): Promise<void> {
    await this.#file?.close().catch(() => undefined);
    await this.#progress?.close().catch(() => undefined);
    this.#file = this.#progress = undefined;
  }

  async #handle(): Promise<FileHandle> {
    this.#file ??= await open(this.path, "r+");
    return this.#file;
  }

  /**
   * Checks whatever became whole since the last call and moves the
   * verified offset: the header once, then every complete chunk, hashed as
   * its bytes arrive (`recent`: the write just taken; earlier bytes not yet
   * hashed are read back from the file). One fdatasync and one progress
   * record per call, however many chunks it completed.
   */
  async #advance(recent?: { offset: number; data: Uint8Array }): Promise<void> {
    const t = this.#transfer!;
    if (this.#header === undefined) {
      if (this.#received < 20) return;
      const file = await this.#handle();
      let parsed: { header: BundleHeader; headerEnd: number };
      try {
        const need = bundleHeaderLength(await readAt(file, 0, 20));
        if (this.#received < need) return;
        parsed = parseBundleHeader(await readAt(file, 0, need));
        this.#checkShape(parsed, t);
        this.#check(parsed.header, t);
      } catch (err) {
        await this.drop();
        throw err;
      }
      this.#header = parsed;
      this.#hashed = parsed.headerEnd;
      await this.#sync(parsed.headerEnd);
    }
    const { header } = this.#header;
    let good = this.#verified;
    while (this.#chunk < header.chunks.length && this.#hashed < this.#received) {
      const { start, end } = chunkRange(header, this.#chunk);
      const upTo = Math.min(end, this.#received);
      this.#hash ??= createHash("sha256");
      await this.#feed(this.#hash, upTo, recent);
      if (upTo < end) break;
      const digest = this.#hash.digest("hex");
      this.#hash = undefined;
      if (digest !== header.chunks[this.#chunk]) {
        const at = this.#chunk;
        if (good > this.#verified) await this.#sync(good);
        await this.#cut(this.#verified);
        throw new InvalidError(`chunk ${at} (bytes ${start}–${end}) does not match the bundle's signed hash: send again from offset ${this.#verified}`);
      }
      this.#chunk++;
      good = end;
    }
    if (good > this.#verified) await this.#sync(good);
  }

  /** Feeds `hash` the received bytes from `#hashed` up to `upTo`, from `recent` where it holds them, else from the file. */
  async #feed(hash: Hash, upTo: number, recent: { offset: number; data: Uint8Array } | undefined): Promise<void> {
    if (recent !== undefined && this.#hashed < recent.offset) {
      const until = Math.min(upTo, recent.offset);
      hash.update(await readAt(await this.#handle(), this.#hashed, until - this.#hashed));
      this.#hashed = until;
    }
    if (this.#hashed >= upTo) return;
    if (recent !== undefined && this.#hashed >= recent.offset && upTo <= recent.offset + recent.data.length) {
      hash.update(recent.data.subarray(this.#hashed - recent.offset, upTo - recent.offset));
    } else {
      hash.update(await readAt(await this.#handle(), this.#hashed, upTo - this.#hashed));
    }
    this.#hashed = upTo;
  }

  /** Sizes and names the header must agree with before any payload byte counts. */
  #checkShape(parsed: { header: BundleHeader; headerEnd: number }, t: TransferId): void {
    const { header, headerEnd } = parsed;
    if (header.chunkSize > this.#limits.maxChunkBytes) throw new TooBigError(`bundle chunks of ${header.chunkSize} bytes, limit ${this.#limits.maxChunkBytes} (update.max_chunk_bytes)`);
    const names: readonly string[] = header.payloads.map((p) => p.name);
    if (names.length !== PAYLOAD_NAMES.length || PAYLOAD_NAMES.some((n) => !names.includes(n))) {
      throw new InvalidError(`bundle payloads are ${names.join(", ") || "none"}; a slot takes exactly ${PAYLOAD_NAMES.join(", ")}`);
    }
    const total = headerEnd + header.payloads.reduce((sum, p) => sum + p.size, 0);
    if (total !== t.size) throw new InvalidError(`the bundle's header says ${total} bytes, begin said ${t.size}`);
  }

  /** Makes bytes up to `offset` durable, then records `offset` as verified. */
  async #sync(offset: number): Promise<void> {
    await (await this.#handle()).datasync();
    this.#progress ??= await open(join(this.#dir, "progress.json"), constants.O_RDWR | constants.O_CREAT, 0o600);
    // No fdatasync of the record: whichever version of it a power cut
    // leaves names an offset whose bytes were synced before it was
    // written, and chunks past it are hashed again at start; a torn one
    // fails its checksum and everything is hashed again.
    await this.#progress.write(progressRecord({ sha256: this.#transfer!.sha256, verified: offset }), 0, PROGRESS_BYTES, 0);
    this.#verified = offset;
  }

  /** Cuts the staged file back to `offset` (a failed chunk, a resumed transfer). */
  async #cut(offset: number): Promise<void> {
    const file = await this.#handle();
    await file.truncate(offset);
    this.#received = offset;
    // The chunk in progress starts again from its first byte.
    this.#hash = undefined;
    if (this.#header !== undefined) this.#hashed = this.#chunk < this.#header.header.chunks.length ? chunkRange(this.#header.header, this.#chunk).start : offset;
  }

  async #recover(): Promise<void> {
    const id = await readRecord(join(this.#dir, "transfer.json"));
    const size = id?.size;
    const sha256 = id?.sha256;
    const staged = await stat(this.path).catch(() => undefined);
    if (typeof size !== "number" || typeof sha256 !== "string" || !SHA256.test(sha256) || staged === undefined) {
      await this.drop();
      return;
    }
    this.#transfer = { size, sha256, allowDowngrade: id?.allowDowngrade === true };
    const progress = await readRecord(join(this.#dir, "progress.json"));
    const claimed = progress?.sha256 === sha256 && typeof progress.verified === "number" && progress.verified <= staged.size ? progress.verified : undefined;
    try {
      await this.#recheck(staged.size, claimed);
    } catch {
      // A header that no longer passes (another key, another board): start over.
      await this.drop();
    }
  }

  /**
   * Rebuilds the verified offset: the header is checked again (it is
   * small); chunks up to a trusted `claimed` offset are taken as recorded,
   * later ones (or all, without a record) are hashed again from the file.
   */
  async #recheck(size: number, claimed: number | undefined): Promise<void> {
    this.#received = size;
    if (size >= 20) {
      const file = await this.#handle();
      const need = bundleHeaderLength(await readAt(file, 0, 20));
      if (size >= need) {
        const parsed = parseBundleHeader(await readAt(file, 0, need));
        this.#checkShape(parsed, this.#transfer!);
        this.#check(parsed.header, this.#transfer!);
        this.#header = parsed;
        this.#verified = parsed.headerEnd;
        const { header } = parsed;
        while (this.#chunk < header.chunks.length) {
          const { start, end } = chunkRange(header, this.#chunk);
          if (end > size) break;
          const trusted = claimed !== undefined && end <= claimed;
          if (!trusted && !verifyChunk(header, this.#chunk, await readAt(file, start, end - start))) break;
          this.#chunk++;
          this.#verified = end;
        }
      }
    }
    await this.#cut(this.#verified);
    if (this.#header !== undefined) await this.#sync(this.#verified);
  }
}

async function readAt(file: FileHandle, position: number, length: number): Promise<Uint8Array> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await file.read(buf, 0, length, position);
  return buf.subarray(0, bytesRead);
}

/**
 * A small record written whole or not at all: a temporary file, synced,
 * renamed over the old one, the folder synced. A `check` field (sha256 of
 * the rest) lets the reader refuse a record a crash tore anyway.
 */
async function writeRecord(path: string, value: Record<string, unknown>): Promise<void> {
  const body = JSON.stringify(value);
  const text = `${JSON.stringify({ ...value, check: createHash("sha256").update(body).digest("hex") })}\n`;
  const tmp = `${path}.tmp`;
  const file = await open(tmp, "w", 0o600);
  try {
    await file.writeFile(text);
    await file.datasync();
  } finally {
    await file.close();
  }
  await rename(tmp, path);
  const dir = await open(join(path, ".."), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** Size of the progress record: rewritten in place, within one sector. */
const PROGRESS_BYTES = 256;

/** The progress record's bytes: the JSON {@link writeRecord} would write, padded with spaces to {@link PROGRESS_BYTES}. */
function progressRecord(value: { sha256: string; verified: number }): Uint8Array {
  const body = JSON.stringify(value);
  const text = JSON.stringify({ ...value, check: createHash("sha256").update(body).digest("hex") });
  return Buffer.from(text.padEnd(PROGRESS_BYTES - 1, " ") + "\n");
}

/** A record {@link writeRecord} or {@link progressRecord} wrote, or undefined when missing, torn or altered. */
async function readRecord(path: string): Promise<Record<string, unknown> | undefined> {
  try {
    const value = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
    const { check, ...rest } = value;
    if (check !== createHash("sha256").update(JSON.stringify(rest)).digest("hex")) return undefined;
    return rest;
  } catch {
    return undefined;
  }
}
