/**
 * The detached, signed manifest of a disk image (`IMAGE.manifest.json`):
 * the sha256 and size of the whole image, its partitions, the sha256 and
 * size of every file in its boot partition, and the digest of the boot
 * manifest the appliance shows in `/proc/boot`. Signed with the release key
 * (Ed25519 over the canonical bytes of every other field).
 *
 * {@link verifyImage} is what `cohesix image verify` and `cohesix flash`
 * run before a single byte is written.
 * @module
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, readFile, stat } from "node:fs/promises";
import { basename } from "node:path";
import { PermissionError } from "../nine-door/index.ts";
import { checkDocumentSignature, parseArtefact, readPublicKey, VERSION_PATTERN, type BootArtefact } from "../root-task/index.ts";
import { listFat, readFat } from "./fat.ts";
import { PARTITION_TYPES, SECTOR, readMbr, type Partition } from "./partition.ts";

/** The `format` tag of an image manifest. */
export const IMAGE_MANIFEST_FORMAT = "cohesix-image-manifest/v1";

/** A file of the boot partition: absolute path there, size in bytes, sha256 hex. */
export type ManifestArtefact = BootArtefact;

/** A partition as the manifest records it: the layout's own {@link Partition} (bytes). */
export type ManifestPartition = Partition;

/**
 * `IMAGE.manifest.json`.
 *
 * @example
 * ```json
 * { "format": "cohesix-image-manifest/v1", "board": "aarch64-virt", "created": "2023-11-14T22:13:20.000Z",
 *   "image": { "file": "cohesix.img", "size": 169869312, "sha256": "…" },
 *   "partitions": [{ "index": 1, "role": "boot", "type": 12, "bootable": true, "start": 1048576, "size": 104857600 }, …],
 *   "bootManifest": "sha256:…", "initramfs": "sha256:…",
 *   "artefacts": [{ "path": "/Image", "size": 31457792, "sha256": "…" }, …],
 *   "keyId": "1a2b3c4d5e6f7a8b", "publicKey": "…", "signature": "…" }
 * ```
 */
export interface ImageManifest {
  readonly format: typeof IMAGE_MANIFEST_FORMAT;
  readonly board: string;
  /** The release version of the build (`cohesix image --version`); absent when none was given. */
  readonly version?: string;
  /** SOURCE_DATE_EPOCH of the build, ISO 8601. */
  readonly created: string;
  readonly image: { readonly file: string; readonly size: number; readonly sha256: string };
  readonly partitions: readonly ManifestPartition[];
  /** `sha256:<hex>` of the boot partition's `/cohesix/manifest.json`: what `/proc/boot` shows as `manifest=`. */
  readonly bootManifest: string;
  /** `sha256:<hex>` of the initramfs: what `/proc/boot` shows as `image=`. */
  readonly initramfs: string;
  /** Every file of the boot partition, sorted by path. */
  readonly artefacts: readonly ManifestArtefact[];
  readonly keyId: string;
  /** The release public key, base64url. */
  readonly publicKey: string;
  /** Ed25519 over the canonical bytes of every other field, base64url. */
  readonly signature: string;
}

/**
 * A disk image the release key does not vouch for: a changed byte, a wrong
 * key, a missing or extra entry, a missing manifest. The message says what
 * differs and what to do.
 */
export class ManifestError extends PermissionError {
  constructor(detail: string) {
    super(detail);
    this.name = "ManifestError";
  }
}

/**
 * The manifest path beside an image: `IMAGE.manifest.json`.
 *
 * @example
 * ```ts
 * manifestPathOf("out/cohesix.img"); // "out/cohesix.img.manifest.json"
 * ```
 */
export function manifestPathOf(imagePath: string): string {
  return `${imagePath}.manifest.json`;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const SHA256 = /^[0-9a-f]{64}$/;

/**
 * Parses a manifest's text; refuses unknown or missing fields with a
 * {@link ManifestError} naming the field.
 *
 * @example
 * ```ts
 * const m = parseImageManifest(await readFile("cohesix.img.manifest.json", "utf8"), "cohesix.img.manifest.json");
 * ```
 */
export function parseImageManifest(text: string, source: string): ImageManifest {
  const fail = (detail: string): never => {
    throw new ManifestError(`manifest ${source}: ${detail}: rebuild the image with \`cohesix image\``);
  };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return fail(`not valid JSON (${(err as Error).message})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return fail("not a JSON object");
  const o = raw as Record<string, unknown>;
  const known = ["format", "board", "created", "image", "partitions", "bootManifest", "initramfs", "artefacts", "keyId", "publicKey", "signature"];
  for (const k of Object.keys(o)) if (!known.includes(k) && k !== "version") fail(`${k} is not a known field`);
  for (const k of known) if (o[k] === undefined) fail(`${k} is missing`);
  if (o.version !== undefined && (typeof o.version !== "string" || !VERSION_PATTERN.test(o.version))) fail("version must be dotted whole numbers such as 1.2.0");
  if (o.format !== IMAGE_MANIFEST_FORMAT) fail(`format ${JSON.stringify(o.format)} is not ${IMAGE_MANIFEST_FORMAT}`);
  for (const k of ["board", "created", "keyId", "publicKey", "signature"]) if (typeof o[k] !== "string" || o[k] === "") fail(`${k} must be a non-empty string`);
  for (const k of ["bootManifest", "initramfs"]) if (typeof o[k] !== "string" || !DIGEST.test(o[k] as string)) fail(`${k} must be sha256:<64 hex digits>`);
  const image = o.image as Record<string, unknown>;
  if (typeof image !== "object" || image === null) fail("image must be an object");
  for (const k of Object.keys(image)) if (!["file", "size", "sha256"].includes(k)) fail(`image.${k} is not a known field`);
  if (typeof image.file !== "string" || image.file === "") fail("image.file must be a file name");
  if (typeof image.size !== "number" || !Number.isSafeInteger(image.size) || image.size <= 0) fail("image.size must be a byte count");
  if (typeof image.sha256 !== "string" || !SHA256.test(image.sha256)) fail("image.sha256 must be 64 lowercase hex digits");
  if (!Array.isArray(o.partitions) || o.partitions.length === 0) fail("partitions must be a non-empty array");
  (o.partitions as unknown[]).forEach((p, i) => {
    const q = p as Record<string, unknown>;
    if (typeof q !== "object" || q === null) fail(`partitions[${i}] must be an object`);
    for (const k of Object.keys(q)) if (!["index", "role", "type", "bootable", "start", "size"].includes(k)) fail(`partitions[${i}].${k} is not a known field`);
    for (const k of ["index", "type", "start", "size"]) if (typeof q[k] !== "number" || !Number.isSafeInteger(q[k])) fail(`partitions[${i}].${k} must be an integer`);
    if (q.role !== "boot" && q.role !== "data") fail(`partitions[${i}].role must be boot or data`);
    if (typeof q.bootable !== "boolean") fail(`partitions[${i}].bootable must be true or false`);
  });
  if (!Array.isArray(o.artefacts) || o.artefacts.length === 0) fail("artefacts must be a non-empty array");
  const artefacts = (o.artefacts as unknown[]).map((a, i) => parseArtefact(a, `artefacts[${i}]`, fail));
  const seen = new Set<string>();
  for (const a of artefacts) {
    if (seen.has(a.path)) fail(`artefacts lists ${a.path} twice`);
    seen.add(a.path);
  }
  return { ...(o as unknown as ImageManifest), artefacts };
}

/**
 * sha256 (hex) and size of a file, streamed.
 *
 * @example
 * ```ts
 * await sha256OfFile("cohesix.img"); // { sha256: "…", size: 169869312 }
 * ```
 */
export async function sha256OfFile(path: string, onBytes?: (n: number) => void): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 4 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
    onBytes?.((chunk as Buffer).length);
  }
  return { sha256: hash.digest("hex"), size };
}

/** Options of {@link verifyImage}. */
export interface VerifyImageOptions {
  /** The release public key file (`release.pub`). */
  readonly pubKeyFile: string;
  /** The manifest; default `IMAGE.manifest.json`. */
  readonly manifestPath?: string;
}

/**
 * Checks a disk image against its detached manifest, in this order: the
 * manifest parses; it was signed by the given release key; the signature
 * holds; the image's size and sha256 match; the boot partition holds
 * exactly the listed files (none missing, none extra); each file's size
 * and sha256 match. Throws {@link ManifestError} at the first failure.
 *
 * @example
 * ```ts
 * const manifest = await verifyImage("cohesix.img", { pubKeyFile: "~/.config/cohesix/release.pub" });
 * manifest.bootManifest; // "sha256:…" — what /proc/boot shows once it runs
 * ```
 */
export async function verifyImage(imagePath: string, options: VerifyImageOptions): Promise<ImageManifest> {
  const manifestPath = options.manifestPath ?? manifestPathOf(imagePath);
  const text = await readFile(manifestPath, "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") throw new ManifestError(`${imagePath}: no manifest ${manifestPath}: keep the manifest \`cohesix image\` wrote beside the image`);
    throw new ManifestError(`${imagePath}: cannot read the manifest ${manifestPath}: ${err.message}`);
  });
  const manifest = parseImageManifest(text, manifestPath);
  const releaseKey = await readPublicKey(options.pubKeyFile);
  const why = checkDocumentSignature(manifest as unknown as ImageManifest & Record<string, unknown>, releaseKey);
  if (why) {
    const hint = why.startsWith("signed by") ? `wrong key: pass the release.pub that pairs with the key the image was signed with (--pub), or rebuild it with --key` : "rebuild the image, or fetch the manifest again";
    throw new ManifestError(`${imagePath}: ${basename(manifestPath)} is ${why.startsWith("signed by") ? why : `refused: ${why}`}: ${hint}`);
  }
  const info = await stat(imagePath).catch((err: NodeJS.ErrnoException) => {
    throw new ManifestError(`${imagePath}: cannot read the image: ${err.message}`);
  });
  if (info.size !== manifest.image.size) {
    throw new ManifestError(`${imagePath}: the image is ${info.size} bytes, its manifest says ${manifest.image.size}: it was truncated or changed; do not flash it`);
  }
  const got = await sha256OfFile(imagePath);
  if (got.sha256 !== manifest.image.sha256) {
    throw new ManifestError(`${imagePath}: sha256 ${got.sha256} differs from the signed ${manifest.image.sha256}: a byte of the image changed; do not flash it`);
  }
  await checkBootPartition(imagePath, manifest);
  return manifest;
}

/** The boot partition holds exactly the listed files, with the listed sizes and digests. */
async function checkBootPartition(imagePath: string, manifest: ImageManifest): Promise<void> {
  const fh = await open(imagePath, "r");
  const sector = new Uint8Array(SECTOR);
  try {
    await fh.read(sector, 0, SECTOR, 0);
  } finally {
    await fh.close();
  }
  const mbr = readMbr(sector);
  const boot = mbr.partitions.find((p) => p.type === PARTITION_TYPES.fat && p.bootable);
  const listed = manifest.partitions.find((p) => p.role === "boot");
  if (!boot || !listed || boot.start !== listed.start || boot.size !== listed.size) {
    throw new ManifestError(`${imagePath}: the partition table does not match the manifest's boot partition: rebuild the image`);
  }
  const present = await listFat(imagePath, boot.start);
  const names = new Set(manifest.artefacts.map((a) => a.path));
  const extra = present.filter((p) => !names.has(p));
  if (extra.length > 0) throw new ManifestError(`${imagePath}: the boot partition holds ${extra.join(", ")}, which the manifest does not list: rebuild the image with \`cohesix image\``);
  const missing = manifest.artefacts.filter((a) => !present.includes(a.path)).map((a) => a.path);
  if (missing.length > 0) throw new ManifestError(`${imagePath}: the manifest lists ${missing.join(", ")}, which the boot partition does not hold: rebuild the image with \`cohesix image\``);
  for (const a of manifest.artefacts) {
    const data = await readFat(imagePath, boot.start, a.path);
    const sha = createHash("sha256").update(data).digest("hex");
    if (data.byteLength !== a.size || sha !== a.sha256) {
      throw new ManifestError(`${imagePath}: ${a.path} in the boot partition (${data.byteLength} bytes, sha256 ${sha}) differs from the manifest (${a.size} bytes, ${a.sha256}): rebuild the image`);
    }
  }
}
