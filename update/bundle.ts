/**
 * The update bundle: one file that carries a slot's kernel, initramfs and
 * signed slot manifest to an appliance, checked piece by piece as it
 * streams in (docs/updates.md, "Bundles").
 *
 * ```
 * 0     16  magic "COHESIX-BUNDLE1\n"
 * 16    4   H, u32 big-endian: the header's length (at most 64 KiB)
 * 20    H   the header: canonical JSON of a signed document ({@link BundleHeader})
 * 20+H  …   the payload area: the payloads' bytes, concatenated in the listed order
 * ```
 *
 * The header lists each payload's size and sha256 and the sha256 of every
 * `chunkSize` piece of the payload area, so a receiver checks the header
 * (signature, board, version) as soon as it is whole and each chunk as soon
 * as it is complete, and never holds more than one chunk it has not
 * checked. The header's bytes must be exactly the canonical JSON of the
 * document ({@link canonicalJson}): one document has one encoding, so its
 * length, and every offset in the file, follow from the document alone.
 *
 * This file is the format and its checks, without I/O; `bundle-file.ts`
 * writes and verifies bundle files.
 * @module
 */
import { createHash } from "node:crypto";
import { InvalidError, PermissionError, TooBigError } from "../nine-door/index.ts";
import { canonicalJson, decodeBase64url, keyId, signedBytes, verifySignature, VERSION_PATTERN } from "../root-task/index.ts";
import { SLOT_FILES } from "./boot-script.ts";

/** The first 16 bytes of every bundle. */
export const BUNDLE_MAGIC = "COHESIX-BUNDLE1\n";
/** Bytes before the header: the magic and the header's length. */
export const BUNDLE_PREFIX_BYTES = 20;
/** The `format` tag of a bundle header. */
export const BUNDLE_FORMAT = "cohesix-bundle/v1";
/** The largest header a reader accepts (64 KiB: about 950 chunk hashes). */
export const MAX_BUNDLE_HEADER_BYTES = 64 * 1024;
/** The default chunk size (1 MiB). */
export const DEFAULT_CHUNK_SIZE = 1 << 20;
/** The smallest and largest chunk sizes a header may name (powers of two). */
export const MIN_CHUNK_SIZE = 4096;
export const MAX_CHUNK_SIZE = 16 << 20;
/** The default bound on a whole bundle an appliance accepts (512 MiB); a knob of the `/update/` service. */
export const DEFAULT_MAX_BUNDLE_BYTES = 512 * 1024 * 1024;
/** The largest slot manifest payload (64 KiB). */
export const MAX_BUNDLE_MANIFEST_BYTES = 64 * 1024;
/** The payloads of a bundle, in the order the payload area holds them. */
export const BUNDLE_PAYLOADS = [SLOT_FILES.kernel, SLOT_FILES.initrd, SLOT_FILES.manifest] as const;
/** A payload's name: the file it becomes in the slot's directory. */
export type BundlePayloadName = (typeof BUNDLE_PAYLOADS)[number];

/** One payload: its name in the slot directory, size in bytes, sha256 hex. */
export interface BundlePayload {
  readonly name: BundlePayloadName;
  readonly size: number;
  readonly sha256: string;
}

/** A bundle's header: a document signed with the release key. */
export interface BundleHeader {
  readonly format: typeof BUNDLE_FORMAT;
  readonly board: string;
  /** The release version of the build inside (see `VERSION_PATTERN`). */
  readonly version: string;
  /** When the bundle was built, ISO 8601 UTC (from SOURCE_DATE_EPOCH for reproducible builds). */
  readonly created: string;
  readonly chunkSize: number;
  readonly payloads: readonly BundlePayload[];
  /** sha256 hex of each `chunkSize` piece of the payload area, the last one short. */
  readonly chunks: readonly string[];
  /** `keyId` of the release key that signed the header. */
  readonly keyId: string;
  /** The release public key, base64url. */
  readonly publicKey: string;
  /** Ed25519 over the canonical bytes of every other field, base64url. */
  readonly signature: string;
}

const SHA256 = /^[0-9a-f]{64}$/;
const BOARD = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const CREATED = /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,3})?Z$/;
const HEADER_FIELDS = ["format", "board", "version", "created", "chunkSize", "payloads", "chunks", "keyId", "publicKey", "signature"];
const headerEnds = new WeakMap<BundleHeader, number>();

/**
 * How many bytes a reader needs before the header is whole: 20 plus the
 * header length the first 20 bytes declare. Refuses a wrong magic
 * (`invalid:`) and a header over 64 KiB (`too big:`).
 *
 * @example
 * ```ts
 * const needed = bundleHeaderLength(first20); // e.g. 4123
 * const { header } = parseBundleHeader(first(needed));
 * ```
 */
export function bundleHeaderLength(bytes: Uint8Array): number {
  if (bytes.length < BUNDLE_PREFIX_BYTES) throw new InvalidError(`not a cohesix bundle: ${bytes.length} bytes is shorter than the ${BUNDLE_PREFIX_BYTES}-byte prefix`);
  const magic = Buffer.from(bytes.buffer, bytes.byteOffset, 16);
  if (magic.toString("latin1") !== BUNDLE_MAGIC) throw new InvalidError("not a cohesix bundle: the file does not start with COHESIX-BUNDLE1 (build one with cohesix bundle)");
  const length = new DataView(bytes.buffer, bytes.byteOffset + 16, 4).getUint32(0, false);
  if (length > MAX_BUNDLE_HEADER_BYTES) throw new TooBigError(`bundle header of ${length} bytes is over the ${MAX_BUNDLE_HEADER_BYTES}-byte limit`);
  if (length < 2) throw new InvalidError(`bundle header of ${length} bytes cannot hold a header`);
  return BUNDLE_PREFIX_BYTES + length;
}

/**
 * Parses a bundle's header from the file's first bytes (at least
 * {@link bundleHeaderLength} of them). Refuses anything malformed with a
 * typed error (`invalid:`, `too big:`) naming the field; never throws
 * anything else. The signature is not checked here: see
 * {@link checkBundleHeader}.
 *
 * @example
 * ```ts
 * const { header, headerEnd } = parseBundleHeader(bytes);
 * header.version; // "1.2.0"
 * ```
 */
export function parseBundleHeader(bytes: Uint8Array): { header: BundleHeader; headerEnd: number } {
  const headerEnd = bundleHeaderLength(bytes);
  if (bytes.length < headerEnd) throw new InvalidError(`bundle header is cut short: ${headerEnd - BUNDLE_PREFIX_BYTES} bytes declared, ${Math.max(0, bytes.length - BUNDLE_PREFIX_BYTES)} present`);
  const fail = (detail: string): never => {
    throw new InvalidError(`bundle header: ${detail}`);
  };
  const raw = bytes.subarray(BUNDLE_PREFIX_BYTES, headerEnd);
  let text = "";
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
  } catch {
    fail("not UTF-8");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    fail(`not valid JSON: ${(err as Error).message}`);
  }
  const header = validateHeader(value, fail);
  if (canonicalJson(header) !== text) fail("not in canonical form (keys sorted, no spaces): it was not written by cohesix bundle");
  headerEnds.set(header, headerEnd);
  return { header, headerEnd };
}

function validateHeader(value: unknown, fail: (detail: string) => never): BundleHeader {
  if (typeof value !== "object" || value === null || Array.isArray(value)) fail("must be a JSON object");
  const o = value as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!HEADER_FIELDS.includes(k)) fail(`${k} is not a known field`);
  if (o.format !== BUNDLE_FORMAT) fail(`format must be ${BUNDLE_FORMAT}`);
  if (typeof o.board !== "string" || !BOARD.test(o.board)) fail("board must be a board name such as aarch64-virt");
  if (typeof o.version !== "string" || !VERSION_PATTERN.test(o.version)) fail("version must be dotted whole numbers such as 1.2.0");
  if (typeof o.created !== "string" || !CREATED.test(o.created)) fail("created must be an ISO 8601 UTC time");
  const chunkSize = o.chunkSize;
  if (typeof chunkSize !== "number" || !Number.isSafeInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE || (chunkSize & (chunkSize - 1)) !== 0) {
    fail(`chunkSize must be a power of two from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE}`);
  }
  if (!Array.isArray(o.payloads) || o.payloads.length !== BUNDLE_PAYLOADS.length) fail(`payloads must list ${BUNDLE_PAYLOADS.join(", ")}`);
  const payloads = (o.payloads as unknown[]).map((p, i) => validatePayload(p, i, fail));
  const total = payloads.reduce((n, p) => n + p.size, 0);
  if (!Number.isSafeInteger(total)) fail("the payloads' sizes add up past 2^53");
  if (!Array.isArray(o.chunks) || o.chunks.some((c) => typeof c !== "string" || !SHA256.test(c))) fail("chunks must be a list of sha256 hex digests");
  const expected = Math.ceil(total / (chunkSize as number));
  if ((o.chunks as unknown[]).length !== expected) fail(`chunks lists ${(o.chunks as unknown[]).length} digests, the payloads need ${expected}`);
  for (const k of ["keyId", "publicKey", "signature"]) if (typeof o[k] !== "string" || o[k] === "" || (o[k] as string).length > 256) fail(`${k} must be a non-empty string`);
  return {
    format: BUNDLE_FORMAT,
    board: o.board as string,
    version: o.version as string,
    created: o.created as string,
    chunkSize: chunkSize as number,
    payloads,
    chunks: [...(o.chunks as string[])],
    keyId: o.keyId as string,
    publicKey: o.publicKey as string,
    signature: o.signature as string,
  };
}

function validatePayload(raw: unknown, i: number, fail: (detail: string) => never): BundlePayload {
  const where = `payloads[${i}]`;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail(`${where} must be an object`);
  const p = raw as Record<string, unknown>;
  for (const k of Object.keys(p)) if (!["name", "size", "sha256"].includes(k)) fail(`${where}.${k} is not a known field`);
  if (p.name !== BUNDLE_PAYLOADS[i]) fail(`${where}.name must be ${BUNDLE_PAYLOADS[i]}`);
  const limit = p.name === SLOT_FILES.manifest ? MAX_BUNDLE_MANIFEST_BYTES : Number.MAX_SAFE_INTEGER;
  if (typeof p.size !== "number" || !Number.isSafeInteger(p.size) || p.size < 1 || p.size > limit) fail(`${where}.size must be a byte count from 1 to ${limit}`);
  if (typeof p.sha256 !== "string" || !SHA256.test(p.sha256)) fail(`${where}.sha256 must be 64 lowercase hex digits`);
  return { name: p.name as BundlePayloadName, size: p.size as number, sha256: p.sha256 as string };
}

/** What {@link checkBundleHeader} holds a header against. */
export interface CheckBundleHeaderOptions {
  /** The release public key this appliance trusts (baked into its image). */
  readonly releasePub: Uint8Array;
  /** This appliance's board. */
  readonly board: string;
  /** The version of the running slot (`0.0.0` when its manifest names none). */
  readonly runningVersion: string;
  /** Accept a version older than the running one. */
  readonly allowDowngrade: boolean;
}

/**
 * Checks a parsed header's signature against the trusted release key,
 * its board, and its version against the running one. Throws
 * `permission:` (another key), `invalid:` (changed after signing, other
 * board, older version without `allowDowngrade`); returns nothing when the
 * bundle may be installed.
 *
 * @example
 * ```ts
 * checkBundleHeader(header, { releasePub, board: "aarch64-virt", runningVersion: "1.0.0", allowDowngrade: false });
 * ```
 */
export function checkBundleHeader(header: BundleHeader, options: CheckBundleHeaderOptions): void {
  checkBundleSignature(header, options.releasePub);
  if (header.board !== options.board) throw new InvalidError(`bundle built for board ${header.board}, this appliance is ${options.board}`);
  if (!options.allowDowngrade && compareVersions(header.version, options.runningVersion) < 0) {
    throw new InvalidError(`bundle version ${header.version} is older than running ${options.runningVersion}; pass --allow-downgrade`);
  }
}

/**
 * Checks only that the header is signed by `releasePub` and unchanged since.
 *
 * @example
 * ```ts
 * checkBundleSignature(header, releasePub); // throws permission: or invalid:
 * ```
 */
export function checkBundleSignature(header: BundleHeader, releasePub: Uint8Array): void {
  const claimed = decodeBase64url(header.publicKey);
  if (claimed === undefined || Buffer.compare(Buffer.from(claimed), Buffer.from(releasePub)) !== 0) {
    throw new PermissionError(`bundle signed by key ${claimed ? keyId(claimed) : header.keyId}, this appliance trusts ${keyId(releasePub)}`);
  }
  const signature = decodeBase64url(header.signature);
  if (header.keyId !== keyId(releasePub) || signature === undefined || !verifySignature(signature, signedBytes(header as unknown as Record<string, unknown>), releasePub)) {
    throw new InvalidError("bundle header signature does not verify: the header was changed after it was signed");
  }
}

/**
 * Where the header ends and the payload area starts, in the file. Known
 * from the header alone, since its bytes are its canonical JSON.
 *
 * @example
 * ```ts
 * payloadOffset(header) === parseBundleHeader(bytes).headerEnd; // true
 * ```
 */
export function payloadOffset(header: BundleHeader): number {
  const known = headerEnds.get(header);
  if (known !== undefined) return known;
  const end = BUNDLE_PREFIX_BYTES + Buffer.byteLength(canonicalJson(header), "utf8");
  headerEnds.set(header, end);
  return end;
}

/**
 * The size of the whole bundle file the header describes.
 *
 * @example
 * ```ts
 * bundleSize(header); // headerEnd + the payloads' sizes
 * ```
 */
export function bundleSize(header: BundleHeader): number {
  return payloadOffset(header) + header.payloads.reduce((n, p) => n + p.size, 0);
}

/**
 * Chunk `i`'s byte range in the FILE (`end` exclusive); the last chunk is
 * short. Throws `invalid:` for an index the header does not list.
 *
 * @example
 * ```ts
 * chunkRange(header, 0); // { start: headerEnd, end: headerEnd + header.chunkSize }
 * ```
 */
export function chunkRange(header: BundleHeader, i: number): { start: number; end: number } {
  if (!Number.isSafeInteger(i) || i < 0 || i >= header.chunks.length) throw new InvalidError(`bundle has no chunk ${i} (it has ${header.chunks.length})`);
  const base = payloadOffset(header);
  return { start: base + i * header.chunkSize, end: Math.min(base + (i + 1) * header.chunkSize, bundleSize(header)) };
}

/**
 * Whether `bytes` are chunk `i` as the header lists it (length and sha256).
 * Never throws: an unknown index is `false`.
 *
 * @example
 * ```ts
 * const { start, end } = chunkRange(header, 3);
 * verifyChunk(header, 3, file.subarray(start, end)); // true
 * ```
 */
export function verifyChunk(header: BundleHeader, i: number, bytes: Uint8Array): boolean {
  if (!Number.isSafeInteger(i) || i < 0 || i >= header.chunks.length) return false;
  const { start, end } = chunkRange(header, i);
  if (bytes.length !== end - start) return false;
  return createHash("sha256").update(bytes).digest("hex") === header.chunks[i];
}

/**
 * Each payload's byte range in the FILE (`end` exclusive), in order.
 *
 * @example
 * ```ts
 * payloadRanges(header)[0]; // { name: "Image", size, sha256, start: headerEnd, end: headerEnd + size }
 * ```
 */
export function payloadRanges(header: BundleHeader): Array<BundlePayload & { start: number; end: number }> {
  let at = payloadOffset(header);
  return header.payloads.map((p) => {
    const range = { ...p, start: at, end: at + p.size };
    at += p.size;
    return range;
  });
}

/**
 * Compares two versions part by part as numbers (`1.10` is newer than
 * `1.9`; missing parts are 0, so `1.2` equals `1.2.0`). Returns -1, 0 or 1;
 * throws `invalid:` on a malformed version.
 *
 * @example
 * ```ts
 * compareVersions("1.2.0", "1.10"); // -1
 * ```
 */
export function compareVersions(a: string, b: string): -1 | 0 | 1 {
  const pa = versionParts(a);
  const pb = versionParts(b);
  for (let i = 0; i < 4; i++) {
    const x = pa[i] ?? 0;
    const y = pb[i] ?? 0;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

function versionParts(v: string): number[] {
  if (typeof v !== "string" || !VERSION_PATTERN.test(v)) throw new InvalidError(`version ${JSON.stringify(v)} must be dotted whole numbers such as 1.2.0 (one to four parts)`);
  return v.split(".").map(Number);
}

/**
 * Where a slot manifest's artefact lives on the boot partition. A bundle's
 * manifest names its files relative to the slot (`/Image`), since the same
 * bundle may land in either slot; an image's slot manifests name them from
 * the partition's root (`/a/Image`). Both resolve here.
 *
 * @example
 * ```ts
 * slotArtefactPath("b", "/Image"); // "/b/Image"
 * slotArtefactPath("a", "/a/Image"); // "/a/Image"
 * ```
 */
export function slotArtefactPath(slot: "a" | "b", path: string): string {
  return path.startsWith(`/${slot}/`) ? path : `/${slot}${path}`;
}
