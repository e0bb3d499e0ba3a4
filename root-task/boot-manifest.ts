/**
 * The boot manifest: the signed list of artefacts a flashed disk image's
 * boot partition holds (`/cohesix/manifest.json` on the FAT partition), and
 * the root task's boot-time check of it (DESIGN §9, issue 6).
 *
 * The list names every file U-Boot reads (`/Image`, `/initrd.gz`,
 * `/extlinux/extlinux.conf`) with its size and sha256, and is signed with
 * the release key (Ed25519 over its canonical bytes, see
 * {@link canonicalJson}). The image builder bakes the release public key
 * into the initramfs (`/etc/cohesix/release.pub`); at boot the guest mounts
 * the boot partition read-only, checks the signature against that key and
 * every file's size and sha256, and shows the list's digest (sha256 of the
 * file's bytes) in `/proc/boot` as `manifest=sha256:…`.
 *
 * The host's detached `IMAGE.manifest.json` (flash/) records the same
 * digest, so an operator can match a running appliance to the image file.
 * @module
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { InvalidError } from "../nine-door/index.ts";
import { decodeBase64url, keyId, publicKeyOf, readPublicKey, sign, verifySignature } from "./keys.ts";

/** The `format` tag of a boot manifest. */
export const BOOT_MANIFEST_FORMAT = "cohesix-boot-manifest/v1";

/** Where the boot manifest sits in the boot partition. */
export const BOOT_MANIFEST_PATH = "/cohesix/manifest.json";

/**
 * A release version: dotted whole numbers, one to four parts, no leading
 * zeros (`1.2.0`, `2026.12.1.3`). A boot manifest without `version` reads
 * as {@link NO_VERSION}.
 */
export const VERSION_PATTERN = /^(0|[1-9][0-9]{0,8})(\.(0|[1-9][0-9]{0,8})){0,3}$/;

/** The version of a build whose boot manifest names none. */
export const NO_VERSION = "0.0.0";

/** One file of the boot partition: absolute path inside the partition, size in bytes, sha256 hex. */
export interface BootArtefact {
  readonly path: string;
  readonly size: number;
  readonly sha256: string;
}

/** The signed artefact list in the boot partition. */
export interface BootManifest {
  readonly format: typeof BOOT_MANIFEST_FORMAT;
  readonly board: string;
  /** The release version of the build (see {@link VERSION_PATTERN}); absent in older manifests, read as {@link NO_VERSION}. */
  readonly version?: string;
  readonly artefacts: readonly BootArtefact[];
  /** {@link keyId} of the release key that signed it. */
  readonly keyId: string;
  /** The release public key, base64url. */
  readonly publicKey: string;
  /** Ed25519 signature of the canonical bytes of every other field, base64url. */
  readonly signature: string;
}

/**
 * Canonical JSON: object keys sorted, no whitespace, integers only as
 * numbers. One value has one byte string, so a signature over it is
 * reproducible and any edit to a signed document breaks it.
 *
 * @example
 * ```ts
 * canonicalJson({ b: 1, a: [true, "x"] }); // '{"a":[true,"x"],"b":1}'
 * ```
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === "boolean" || typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new InvalidError(`canonical JSON holds integers only, got ${value}`);
    return String(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  throw new InvalidError(`canonical JSON cannot hold a ${typeof value}`);
}

/**
 * The bytes a signature covers: the canonical JSON of `doc` without its
 * `signature` field.
 *
 * @example
 * ```ts
 * const bytes = signedBytes({ format: "x", signature: "…" }); // '{"format":"x"}' as UTF-8
 * ```
 */
export function signedBytes(doc: Readonly<Record<string, unknown>>): Uint8Array {
  const { signature: _signature, ...rest } = doc;
  return new TextEncoder().encode(canonicalJson(rest));
}

/**
 * Signs a document with the release key: adds `keyId`, `publicKey` and
 * `signature` (over the canonical bytes of everything else).
 *
 * @example
 * ```ts
 * const signed = signDocument({ format: BOOT_MANIFEST_FORMAT, board: "aarch64-virt", artefacts }, releaseKey);
 * ```
 */
export function signDocument<T extends Record<string, unknown>>(doc: T, privateKey: Uint8Array): T & { keyId: string; publicKey: string; signature: string } {
  const publicKey = publicKeyOf(privateKey);
  const unsigned = { ...doc, keyId: keyId(publicKey), publicKey: Buffer.from(publicKey).toString("base64url") };
  const signature = Buffer.from(sign(signedBytes(unsigned), privateKey)).toString("base64url");
  return { ...unsigned, signature };
}

/**
 * Checks a signed document's key and signature against the expected
 * public key. Returns undefined when both hold, else why not.
 *
 * @example
 * ```ts
 * checkDocumentSignature(doc, releasePub); // undefined, or "signed by key 1a2b…, not by the release key 3c4d…"
 * ```
 */
export function checkDocumentSignature(doc: { readonly publicKey: string; readonly signature: string } & Record<string, unknown>, expected: Uint8Array): string | undefined {
  const claimed = decodeBase64url(doc.publicKey);
  if (claimed === undefined || Buffer.compare(Buffer.from(claimed), Buffer.from(expected)) !== 0) {
    return `signed by key ${claimed ? keyId(claimed) : "(malformed)"}, not by the release key ${keyId(expected)}`;
  }
  const signature = decodeBase64url(doc.signature);
  if (signature === undefined || !verifySignature(signature, signedBytes(doc), expected)) {
    return "the signature does not verify: the manifest was changed after it was signed";
  }
  return undefined;
}

const SHA256 = /^[0-9a-f]{64}$/;
const PATH = /^\/[A-Za-z0-9._/-]+$/;

/**
 * Validates one artefact entry (`{path, size, sha256}`, nothing else);
 * `fail` throws with the detail.
 *
 * @example
 * ```ts
 * parseArtefact({ path: "/Image", size: 3, sha256: "…" }, "artefacts[0]", (d) => { throw new InvalidError(d); });
 * ```
 */
export function parseArtefact(raw: unknown, where: string, fail: (detail: string) => never): BootArtefact {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail(`${where} must be an object`);
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!["path", "size", "sha256"].includes(k)) fail(`${where}.${k} is not a known field`);
  if (typeof o.path !== "string" || !PATH.test(o.path) || o.path.includes("//") || o.path.split("/").includes("..")) fail(`${where}.path must be an absolute path`);
  if (typeof o.size !== "number" || !Number.isSafeInteger(o.size) || o.size < 0) fail(`${where}.size must be a byte count`);
  if (typeof o.sha256 !== "string" || !SHA256.test(o.sha256)) fail(`${where}.sha256 must be 64 lowercase hex digits`);
  return { path: o.path as string, size: o.size as number, sha256: o.sha256 as string };
}

/**
 * Parses a boot manifest's text; refuses unknown fields and malformed
 * entries with `invalid:` naming the field.
 *
 * @example
 * ```ts
 * const m = parseBootManifest(await readFile("/boot/cohesix/manifest.json", "utf8"), "/boot/cohesix/manifest.json");
 * ```
 */
export function parseBootManifest(text: string, source: string): BootManifest {
  const fail = (detail: string): never => {
    throw new InvalidError(`boot manifest ${source}: ${detail}`);
  };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    fail(`not valid JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail("must be a JSON object");
  const o = raw as Record<string, unknown>;
  const known = ["format", "board", "version", "artefacts", "keyId", "publicKey", "signature"];
  for (const k of Object.keys(o)) if (!known.includes(k)) fail(`${k} is not a known field`);
  if (o.format !== BOOT_MANIFEST_FORMAT) fail(`format must be ${BOOT_MANIFEST_FORMAT}`);
  for (const k of ["board", "keyId", "publicKey", "signature"]) if (typeof o[k] !== "string" || o[k] === "") fail(`${k} must be a non-empty string`);
  if (o.version !== undefined && (typeof o.version !== "string" || !VERSION_PATTERN.test(o.version))) fail("version must be dotted whole numbers such as 1.2.0 (one to four parts)");
  if (!Array.isArray(o.artefacts)) fail("artefacts must be an array");
  const artefacts = (o.artefacts as unknown[]).map((a, i) => parseArtefact(a, `artefacts[${i}]`, fail));
  const seen = new Set<string>();
  for (const a of artefacts) {
    if (seen.has(a.path)) fail(`artefacts lists ${a.path} twice`);
    seen.add(a.path);
  }
  return { ...(o as unknown as BootManifest), artefacts };
}

/**
 * The release version a boot manifest names, {@link NO_VERSION} when it
 * names none.
 *
 * @example
 * ```ts
 * manifestVersion(parseBootManifest(text, "/boot/a/manifest.json")); // "1.2.0"
 * ```
 */
export function manifestVersion(manifest: Pick<BootManifest, "version">): string {
  return manifest.version ?? NO_VERSION;
}

/**
 * sha256 (hex) and size of a file, streamed.
 *
 * @example
 * ```ts
 * await hashFile("/boot/Image"); // { sha256: "…", size: 31457792 }
 * ```
 */
export async function hashFile(path: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest("hex"), size };
}

/** The outcome of the boot-time check. */
export interface BootManifestCheck {
  /** `sha256:<hex>` of the boot manifest file's bytes, or `none`. */
  readonly digest: string;
  /** `ok`, or `FAILED: <why>`. */
  readonly status: string;
}

/** Options of {@link checkBootManifest}. */
export interface CheckBootManifestOptions {
  /** Where the boot partition is mounted, e.g. `/boot`. */
  readonly bootDir: string;
  /** The release public key file baked into the image, e.g. `/etc/cohesix/release.pub`. */
  readonly releasePub: string;
}

/**
 * The root task's boot-time check: reads `<bootDir>/cohesix/manifest.json`,
 * checks its signature with the release key, then every listed file's size
 * and sha256. Never throws: a failure is reported in `status`.
 *
 * @example
 * ```ts
 * const check = await checkBootManifest({ bootDir: "/boot", releasePub: "/etc/cohesix/release.pub" });
 * check.status; // "ok"
 * ```
 */
export async function checkBootManifest(options: CheckBootManifestOptions): Promise<BootManifestCheck> {
  const file = join(options.bootDir, BOOT_MANIFEST_PATH);
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    return { digest: "none", status: `FAILED: cannot read ${file}: ${(err as Error).message}` };
  }
  const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
  try {
    const manifest = parseBootManifest(bytes.toString("utf8"), file);
    const why = checkDocumentSignature(manifest as unknown as BootManifest & Record<string, unknown>, await readPublicKey(options.releasePub));
    if (why) return { digest, status: `FAILED: ${why}` };
    for (const a of manifest.artefacts) {
      const path = join(options.bootDir, a.path);
      const info = await stat(path).catch(() => undefined);
      if (!info) return { digest, status: `FAILED: ${a.path} is missing from the boot partition` };
      if (info.size !== a.size) return { digest, status: `FAILED: ${a.path} is ${info.size} bytes, the manifest says ${a.size}` };
      const got = await hashFile(path);
      if (got.sha256 !== a.sha256) return { digest, status: `FAILED: ${a.path} sha256 ${got.sha256} differs from the manifest's ${a.sha256}` };
    }
    return { digest, status: "ok" };
  } catch (err) {
    return { digest, status: `FAILED: ${(err as Error).message}` };
  }
}
