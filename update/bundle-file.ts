/**
 * Bundle files: the one writer ({@link writeBundle}, behind
 * `cohesix bundle`), the whole-file check ({@link verifyBundleFile}, behind
 * `cohesix image verify BUNDLE`), and the check of the slot manifest a
 * bundle carries ({@link checkBundleManifest}, also run by the appliance
 * before it writes a slot). The format itself is `bundle.ts`.
 * @module
 */
import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { InvalidError, TooBigError } from "../nine-door/index.ts";
import {
  BOOT_MANIFEST_FORMAT,
  canonicalJson,
  checkDocumentSignature,
  hashFile,
  manifestVersion,
  parseBootManifest,
  signDocument,
  VERSION_PATTERN,
  type BootManifest,
} from "../root-task/index.ts";
import { SLOT_FILES } from "./boot-script.ts";
import {
  BUNDLE_FORMAT,
  BUNDLE_MAGIC,
  BUNDLE_PAYLOADS,
  BUNDLE_PREFIX_BYTES,
  DEFAULT_CHUNK_SIZE,
  MAX_BUNDLE_HEADER_BYTES,
  MAX_BUNDLE_MANIFEST_BYTES,
  bundleHeaderLength,
  bundleSize,
  checkBundleSignature,
  payloadRanges,
  parseBundleHeader,
  type BundleHeader,
} from "./bundle.ts";

/** Options of {@link writeBundle}. */
export interface WriteBundleOptions {
  readonly board: string;
  /** The release version of the build, e.g. `1.2.0`. */
  readonly version: string;
  /** The slot's kernel file. */
  readonly kernel: string;
  /** The slot's initramfs file (`initrd.gz`). */
  readonly initramfs: string;
  /** The slot manifest's bytes; default: built and signed here, naming `/Image` and `/initrd.gz` relative to the slot. */
  readonly manifest?: Uint8Array;
  /** The release private key (32 bytes) that signs the header (and the built manifest). */
  readonly key: Uint8Array;
  /** The bundle file to write (written beside it, then renamed into place). */
  readonly out: string;
  /** Bytes per verified chunk; default 1 MiB. */
  readonly chunkSize?: number;
  /** Seconds since 1970 for `created`; default SOURCE_DATE_EPOCH, else 0 (builds are reproducible). */
  readonly epoch?: number;
}

/**
 * The slot manifest a bundle carries: the signed boot manifest of its
 * kernel and initramfs, paths relative to the slot directory, with the
 * version.
 *
 * @example
 * ```ts
 * const bytes = await slotManifestOf({ board: "aarch64-virt", version: "1.2.0", kernel: "Image", initramfs: "initrd.gz", key });
 * ```
 */
export async function slotManifestOf(options: Pick<WriteBundleOptions, "board" | "version" | "kernel" | "initramfs" | "key">): Promise<Uint8Array> {
  const artefacts = [
    { path: `/${SLOT_FILES.kernel}`, ...(await hashFile(options.kernel)) },
    { path: `/${SLOT_FILES.initrd}`, ...(await hashFile(options.initramfs)) },
  ];
  const doc = signDocument({ format: BOOT_MANIFEST_FORMAT, board: options.board, version: options.version, artefacts }, options.key);
  return new TextEncoder().encode(`${JSON.stringify(doc, null, 2)}\n`);
}

/** sha256 of each `size` piece of a byte stream fed in any cuts. */
class Chunker {
  readonly digests: string[] = [];
  #hash: Hash = createHash("sha256");
  #filled = 0;
  constructor(readonly size: number) {}
  update(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length) {
      const take = Math.min(this.size - this.#filled, bytes.length - at);
      this.#hash.update(bytes.subarray(at, at + take));
      this.#filled += take;
      at += take;
      if (this.#filled === this.size) this.#next();
    }
  }
  end(): string[] {
    if (this.#filled > 0) this.#next();
    return this.digests;
  }
  #next(): void {
    this.digests.push(this.#hash.digest("hex"));
    this.#hash = createHash("sha256");
    this.#filled = 0;
  }
}

async function* bytesOf(source: string | Uint8Array): AsyncGenerator<Uint8Array> {
  if (typeof source !== "string") {
    yield source;
    return;
  }
  for await (const chunk of createReadStream(source, { highWaterMark: 1 << 20 })) yield chunk as Buffer;
}

/**
 * Writes a signed bundle of a slot's kernel, initramfs and manifest to
 * `out`, and returns its header. The same inputs and epoch give the same
 * bytes.
 *
 * @example
 * ```ts
 * const header = await writeBundle({ board: "aarch64-virt", version: "1.2.0", kernel: "Image", initramfs: "initrd.gz", key, out: "cohesix-1.2.0.bundle" });
 * header.chunks.length; // one per MiB
 * ```
 */
export async function writeBundle(options: WriteBundleOptions): Promise<BundleHeader> {
  if (!VERSION_PATTERN.test(options.version)) throw new InvalidError(`bundle version ${JSON.stringify(options.version)} must be dotted whole numbers such as 1.2.0 (one to four parts)`);
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const manifest = options.manifest ?? (await slotManifestOf(options));
  if (manifest.length > MAX_BUNDLE_MANIFEST_BYTES) throw new TooBigError(`bundle manifest of ${manifest.length} bytes is over the ${MAX_BUNDLE_MANIFEST_BYTES}-byte limit`);
  const sources: Array<string | Uint8Array> = [options.kernel, options.initramfs, manifest];

  // First pass: each payload's size and sha256, and the chunk digests across them.
  const chunker = new Chunker(chunkSize);
  const payloads = [];
  for (const [i, source] of sources.entries()) {
    const hash = createHash("sha256");
    let size = 0;
    for await (const bytes of bytesOf(source)) {
      hash.update(bytes);
      chunker.update(bytes);
      size += bytes.length;
    }
    payloads.push({ name: BUNDLE_PAYLOADS[i]!, size, sha256: hash.digest("hex") });
  }
  const epoch = options.epoch ?? epochOf(process.env);
  const header = signDocument(
    { format: BUNDLE_FORMAT, board: options.board, version: options.version, created: new Date(epoch * 1000).toISOString(), chunkSize, payloads, chunks: chunker.end() },
    options.key,
  ) as BundleHeader;
  const text = Buffer.from(canonicalJson(header), "utf8");
  if (text.length > MAX_BUNDLE_HEADER_BYTES) throw new TooBigError(`bundle header of ${text.length} bytes is over the ${MAX_BUNDLE_HEADER_BYTES}-byte limit: use a larger chunk size`);
  const prefix = Buffer.alloc(BUNDLE_PREFIX_BYTES);
  prefix.write(BUNDLE_MAGIC, 0, "latin1");
  prefix.writeUInt32BE(text.length, 16);
  // A refusal of the header here means the writer and the reader disagree: never ship such a file.
  const { header: parsed } = parseBundleHeader(Buffer.concat([prefix, text]));

  // Second pass: the file, beside its final name, synced, then renamed.
  await mkdir(dirname(options.out), { recursive: true });
  const tmp = join(dirname(options.out), `.${basename(options.out)}.tmp-${process.pid}`);
  const file = await open(tmp, "w");
  try {
    await file.write(prefix);
    await file.write(text);
    for (const source of sources) for await (const bytes of bytesOf(source)) await file.write(bytes);
    await file.sync();
    await file.close();
    await rename(tmp, options.out);
  } catch (err) {
    await file.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
  return parsed;
}

function epochOf(env: NodeJS.ProcessEnv): number {
  const v = env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === "") return 0;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidError(`SOURCE_DATE_EPOCH ${JSON.stringify(v)} must be a whole number of seconds`);
  return n;
}

/**
 * Checks the slot manifest a bundle carries: its bytes are the listed
 * payload, it is signed by `releasePub`, names the bundle's board and
 * version, and lists exactly the bundle's kernel and initramfs (paths
 * relative to the slot). Returns the parsed manifest; throws `invalid:`.
 *
 * @example
 * ```ts
 * const manifest = checkBundleManifest(header, manifestBytes, { releasePub });
 * manifest.version; // "1.2.0"
 * ```
 */
export function checkBundleManifest(header: BundleHeader, bytes: Uint8Array, options: { readonly releasePub: Uint8Array }): BootManifest {
  const fail = (detail: string): never => {
    throw new InvalidError(`bundle ${SLOT_FILES.manifest}: ${detail}`);
  };
  const [kernel, initrd, listed] = header.payloads;
  if (bytes.length !== listed!.size || createHash("sha256").update(bytes).digest("hex") !== listed!.sha256) fail("its bytes differ from the header's sha256");
  let text = "";
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    fail("not UTF-8");
  }
  const manifest = parseBootManifest(text, `bundle ${SLOT_FILES.manifest}`);
  const why = checkDocumentSignature(manifest as unknown as BootManifest & Record<string, unknown>, options.releasePub);
  if (why) fail(why);
  if (manifest.board !== header.board) fail(`names board ${manifest.board}, the bundle ${header.board}`);
  if (manifestVersion(manifest) !== header.version) fail(`names version ${manifestVersion(manifest)}, the bundle ${header.version}`);
  const want = [
    { path: `/${SLOT_FILES.kernel}`, size: kernel!.size, sha256: kernel!.sha256 },
    { path: `/${SLOT_FILES.initrd}`, size: initrd!.size, sha256: initrd!.sha256 },
  ];
  if (canonicalJson(manifest.artefacts) !== canonicalJson(want)) fail(`must list exactly the bundle's /${SLOT_FILES.kernel} and /${SLOT_FILES.initrd} with their sizes and sha256`);
  return manifest;
}

/** What {@link verifyBundleFile} found in a sound bundle. */
export interface VerifiedBundle {
  readonly header: BundleHeader;
  readonly headerEnd: number;
  /** The file's size in bytes. */
  readonly size: number;
  /** sha256 hex of the whole file (what `/update/ctl`'s `begin` names). */
  readonly sha256: string;
  readonly manifest: BootManifest;
}

/**
 * Checks a whole bundle file: header (signature with `releasePub`, and the
 * board when given), size, every chunk, every payload, and the slot
 * manifest inside. Returns what it found; throws a typed refusal
 * (`permission:`, `invalid:`, `too big:`) naming what is wrong.
 *
 * @example
 * ```ts
 * const { header } = await verifyBundleFile("cohesix-1.2.0.bundle", { releasePub, board: "aarch64-virt" });
 * ```
 */
export async function verifyBundleFile(path: string, options: { readonly releasePub: Uint8Array; readonly board?: string }): Promise<VerifiedBundle> {
  const file = await open(path, "r");
  try {
    const { size } = await file.stat();
    const whole = createHash("sha256");
    const prefix = Buffer.alloc(Math.min(size, BUNDLE_PREFIX_BYTES));
    await file.read(prefix, 0, prefix.length, 0);
    const headerEnd = bundleHeaderLength(prefix);
    const head = Buffer.alloc(Math.min(size, headerEnd));
    await file.read(head, 0, head.length, 0);
    const { header } = parseBundleHeader(head);
    whole.update(head);
    checkBundleSignature(header, options.releasePub);
    if (options.board !== undefined && header.board !== options.board) throw new InvalidError(`bundle built for board ${header.board}, this appliance is ${options.board}`);
    const expected = bundleSize(header);
    if (size !== expected) throw new InvalidError(`bundle is ${size} bytes, its header describes ${expected}: ${size < expected ? "the file is cut short (copy it again)" : "bytes follow its end"}`);

    const ranges = payloadRanges(header);
    const hashes = ranges.map(() => createHash("sha256"));
    const manifestRange = ranges[ranges.length - 1]!;
    const manifest = Buffer.alloc(manifestRange.size);
    const buffer = Buffer.alloc(header.chunkSize);
    for (let i = 0; i < header.chunks.length; i++) {
      const start = headerEnd + i * header.chunkSize;
      const length = Math.min(header.chunkSize, expected - start);
      const { bytesRead } = await file.read(buffer, 0, length, start);
      const chunk = buffer.subarray(0, bytesRead);
      if (bytesRead !== length || createHash("sha256").update(chunk).digest("hex") !== header.chunks[i]) {
        throw new InvalidError(`bundle chunk ${i} (bytes ${start}–${start + length}) differs from its sha256 in the header: the file is damaged`);
      }
      whole.update(chunk);
      for (const [j, r] of ranges.entries()) {
        const from = Math.max(r.start, start);
        const to = Math.min(r.end, start + length);
        if (from >= to) continue;
        hashes[j]!.update(chunk.subarray(from - start, to - start));
        if (j === ranges.length - 1) chunk.copy(manifest, from - r.start, from - start, to - start);
      }
    }
    for (const [j, r] of ranges.entries()) {
      if (hashes[j]!.digest("hex") !== r.sha256) throw new InvalidError(`bundle payload ${r.name} differs from its sha256 in the header`);
    }
    const checked = checkBundleManifest(header, manifest, options);
    return { header, headerEnd, size, sha256: whole.digest("hex"), manifest: checked };
  } finally {
    await file.close();
  }
}
