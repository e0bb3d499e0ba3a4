/**
 * A/B fixtures for the update suites: a release key pair, a folder laid out
 * as an A/B boot partition (both slots holding a signed build, A active),
 * signed bundles built with `writeBundle`, and a digest of a whole folder
 * to prove a refusal left it byte-identical.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BOOT_MANIFEST_FORMAT, signDocument, writeKeyPair } from "../../root-task/index.ts";
import { initialBootState, payloadRanges, writeBootStateFiles, writeBundle, type BootState } from "../../update/index.ts";

/** The release key pair of a suite. */
export interface ReleaseKeys {
  readonly privateKey: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly publicPath: string;
}

/** Makes a release key pair in `dir` (named `name`). */
export async function releaseKeys(dir: string, name = "release"): Promise<ReleaseKeys> {
  const pair = await writeKeyPair(dir, { name });
  return { privateKey: pair.privateKey, publicKey: pair.publicKey, publicPath: pair.publicPath };
}

/** A slot manifest as `cohesix image --ab` writes it, with a version. */
function slotManifest(o: { board: string; slot: string; files: Record<string, Uint8Array>; version: string; key: Uint8Array }): string {
  const artefacts = Object.entries(o.files).map(([name, bytes]) => ({ path: `/${o.slot}/${name}`, size: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") }));
  return `${JSON.stringify(signDocument({ format: BOOT_MANIFEST_FORMAT, board: o.board, version: o.version, artefacts }, o.key), null, 2)}\n`;
}

/**
 * Lays out an A/B boot folder at `dir`: `/a` and `/b` each with `Image`,
 * `initrd.gz` and a signed `manifest.json` of `version`, and the state
 * (`state` or A active and good, B good).
 */
export async function makeBootDir(dir: string, o: { key: Uint8Array; board?: string; version?: string; state?: BootState }): Promise<string> {
  for (const slot of ["a", "b"]) {
    await mkdir(join(dir, slot), { recursive: true });
    const files = { Image: randomBytes(3000), "initrd.gz": randomBytes(5000) };
    for (const [name, bytes] of Object.entries(files)) await writeFile(join(dir, slot, name), bytes);
    await writeFile(join(dir, slot, "manifest.json"), slotManifest({ board: o.board ?? "host", slot, files, version: o.version ?? "1.0.0", key: o.key }));
  }
  await writeBootStateFiles(dir, o.state ?? initialBootState({ active: "a", other: "good" }));
  return dir;
}

/** A bundle file at `out`: random kernel and initramfs of the given sizes, signed with `key`. */
export async function makeBundle(out: string, o: { key: Uint8Array; board?: string; version?: string; kernelBytes?: number; initrdBytes?: number; chunkSize?: number }): Promise<{ path: string; bytes: Buffer; sha256: string; kernel: Buffer; initrd: Buffer; manifest: Buffer }> {
  const kernel = randomBytes(o.kernelBytes ?? 40_000);
  const initrd = randomBytes(o.initrdBytes ?? 70_000);
  const kernelPath = `${out}.Image`;
  const initrdPath = `${out}.initrd.gz`;
  await writeFile(kernelPath, kernel);
  await writeFile(initrdPath, initrd);
  const header = await writeBundle({ board: o.board ?? "host", version: o.version ?? "1.1.0", kernel: kernelPath, initramfs: initrdPath, key: o.key, out, chunkSize: o.chunkSize ?? 16_384 });
  const bytes = await readFile(out);
  const listed = payloadRanges(header).find((r) => r.name === "manifest.json")!;
  const manifest = bytes.subarray(listed.start, listed.end);
  return { path: out, bytes, sha256: createHash("sha256").update(bytes).digest("hex"), kernel, initrd, manifest };
}

/** sha256 over every file's relative path and bytes under `dir`, in sorted order. */
export async function digestTree(dir: string): Promise<string> {
  const hash = createHash("sha256");
  const walk = async (rel: string): Promise<void> => {
    const entries = (await readdir(join(dir, rel), { withFileTypes: true })).sort((x, y) => (x.name < y.name ? -1 : 1));
    for (const e of entries) {
      const path = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(path);
      else hash.update(`${path}\0`).update(await readFile(join(dir, path))).update("\0");
    }
  };
  await walk("");
  return hash.digest("hex");
}
