/**
 * The update bundle: written once, read back piece by piece the way the
 * appliance receives it (header, then chunk after chunk), and checked as a
 * whole file. Every refusal is a typed error a user can act on, and
 * hostile bytes never make the reader throw anything else.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NineError } from "../../nine-door/index.ts";
import { generateKeyPair, parseBootManifest, signDocument, BOOT_MANIFEST_FORMAT, type KeyPair } from "../../root-task/index.ts";
import {
  BUNDLE_PAYLOADS,
  BUNDLE_PREFIX_BYTES,
  bundleHeaderLength,
  bundleSize,
  checkBundleHeader,
  checkBundleManifest,
  chunkRange,
  compareVersions,
  parseBundleHeader,
  payloadOffset,
  payloadRanges,
  slotArtefactPath,
  verifyBundleFile,
  verifyChunk,
  writeBundle,
  type BundleHeader,
} from "../../update/index.ts";
import { prng } from "../nine-door/wire/samples.ts";

let dir = "";
let release: KeyPair;
let other: KeyPair;
let kernel = "";
let initramfs = "";
let bundle = "";
let bytes: Buffer;
let header: BundleHeader;
const CHUNK = 4096;
const trusted = () => ({ releasePub: release.publicKey, board: "aarch64-virt", runningVersion: "1.0.0", allowDowngrade: false });

/** Deterministic filler bytes. */
function filler(size: number, seed: number): Buffer {
  const next = prng(seed);
  return Buffer.from(Array.from({ length: size }, () => Math.floor(next() * 256)));
}

/** Receives `file` as the appliance does: header as soon as it is whole, then each chunk; throws the first refusal. */
function receive(file: Uint8Array, options = trusted()): BundleHeader {
  const needed = bundleHeaderLength(file.subarray(0, BUNDLE_PREFIX_BYTES));
  const { header: h, headerEnd } = parseBundleHeader(file.subarray(0, needed));
  checkBundleHeader(h, options);
  if (file.length !== bundleSize(h)) throw new Error(`size ${file.length} vs ${bundleSize(h)}`);
  expect(headerEnd).toBe(payloadOffset(h));
  for (let i = 0; i < h.chunks.length; i++) {
    const { start, end } = chunkRange(h, i);
    if (!verifyChunk(h, i, file.subarray(start, end))) throw new Error(`chunk ${i}`);
  }
  return h;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-bundle-"));
  release = await generateKeyPair();
  other = await generateKeyPair();
  kernel = join(dir, "Image");
  initramfs = join(dir, "initrd.gz");
  await writeFile(kernel, filler(10_000, 1));
  await writeFile(initramfs, filler(7_321, 2));
  bundle = join(dir, "b.bundle");
  header = await writeBundle({ board: "aarch64-virt", version: "1.2.0", kernel, initramfs, key: release.privateKey, out: bundle, chunkSize: CHUNK, epoch: 1_700_000_000 });
  bytes = await readFile(bundle);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("writeBundle() and the reader", () => {
  it("round-trips: the header parses from the file's first bytes, every chunk verifies, and the payloads are the inputs", async () => {
    expect(bytes.subarray(0, 16).toString("latin1")).toBe("COHESIX-BUNDLE1\n");
    const { header: parsed, headerEnd } = parseBundleHeader(bytes.subarray(0, bundleHeaderLength(bytes.subarray(0, 20))));
    expect(parsed).toEqual(header);
    expect(headerEnd).toBe(20 + bytes.readUInt32BE(16));
    expect(parsed).toMatchObject({ format: "cohesix-bundle/v1", board: "aarch64-virt", version: "1.2.0", created: "2023-11-14T22:13:20.000Z", chunkSize: CHUNK });
    expect(bundleSize(parsed)).toBe(bytes.length);
    expect(receive(bytes)).toEqual(header);
    const ranges = payloadRanges(parsed);
    expect(ranges.map((r) => r.name)).toEqual([...BUNDLE_PAYLOADS]);
    expect(bytes.subarray(ranges[0]!.start, ranges[0]!.end)).toEqual(await readFile(kernel));
    expect(bytes.subarray(ranges[1]!.start, ranges[1]!.end)).toEqual(await readFile(initramfs));
    const verified = await verifyBundleFile(bundle, { releasePub: release.publicKey, board: "aarch64-virt" });
    expect(verified.size).toBe(bytes.length);
    expect(verified.sha256).toBe(createHash("sha256").update(bytes).digest("hex"));
  });

  it("cuts the payload area into chunkSize pieces across payload boundaries, the last one short", () => {
    const total = 10_000 + 7_321 + header.payloads[2]!.size;
    expect(header.chunks.length).toBe(Math.ceil(total / CHUNK));
    const last = chunkRange(header, header.chunks.length - 1);
    expect(last.end - last.start).toBe(total % CHUNK || CHUNK);
    expect(chunkRange(header, 1).start).toBe(payloadOffset(header) + CHUNK);
    expect(() => chunkRange(header, header.chunks.length)).toThrow(/^invalid: bundle has no chunk/);
    expect(verifyChunk(header, -1, Buffer.alloc(0))).toBe(false);
    expect(verifyChunk(header, 0, bytes.subarray(payloadOffset(header), payloadOffset(header) + CHUNK - 1))).toBe(false);
  });

  it("carries a slot manifest signed by the release key, with the version, naming its files relative to the slot", () => {
    const r = payloadRanges(header)[2]!;
    const manifest = checkBundleManifest(header, bytes.subarray(r.start, r.end), { releasePub: release.publicKey });
    expect(manifest.version).toBe("1.2.0");
    expect(manifest.board).toBe("aarch64-virt");
    expect(manifest.artefacts.map((a) => a.path)).toEqual(["/Image", "/initrd.gz"]);
    expect(manifest.artefacts.map((a) => slotArtefactPath("b", a.path))).toEqual(["/b/Image", "/b/initrd.gz"]);
    expect(slotArtefactPath("a", "/a/Image")).toBe("/a/Image");
  });

  it("gives byte-identical bundles from the same inputs and epoch", async () => {
    const again = join(dir, "again.bundle");
    await writeBundle({ board: "aarch64-virt", version: "1.2.0", kernel, initramfs, key: release.privateKey, out: again, chunkSize: CHUNK, epoch: 1_700_000_000 });
    expect(Buffer.compare(await readFile(again), bytes)).toBe(0);
  });

  it("refuses a malformed version and a manifest over its limit before writing anything", async () => {
    const out = join(dir, "never.bundle");
    await expect(writeBundle({ board: "aarch64-virt", version: "1.2-beta", kernel, initramfs, key: release.privateKey, out })).rejects.toThrow(/^invalid: bundle version "1\.2-beta" must be dotted/);
    await expect(writeBundle({ board: "aarch64-virt", version: "1.2", kernel, initramfs, key: release.privateKey, out, manifest: Buffer.alloc(65 * 1024) })).rejects.toThrow(/^too big: bundle manifest/);
    await expect(readFile(out)).rejects.toThrow(/ENOENT/);
  });
});

describe("checkBundleHeader()", () => {
  it("refuses a bundle signed by another key, naming both keys", async () => {
    const out = join(dir, "other.bundle");
    await writeBundle({ board: "aarch64-virt", version: "1.2.0", kernel, initramfs, key: other.privateKey, out, chunkSize: CHUNK });
    expect(() => receive(readFileSync(out))).toThrow(/^permission: bundle signed by key [0-9a-f]{16}, this appliance trusts [0-9a-f]{16}$/);
    await expect(verifyBundleFile(out, { releasePub: release.publicKey })).rejects.toThrow(/^permission: bundle signed by key/);
  });

  it("refuses a bundle built for another board", () => {
    expect(() => checkBundleHeader(header, { ...trusted(), board: "rpi4" })).toThrow("invalid: bundle built for board aarch64-virt, this appliance is rpi4");
  });

  it("refuses an older version unless a downgrade is allowed, and takes the same or a newer one", () => {
    expect(() => checkBundleHeader(header, { ...trusted(), runningVersion: "2.0.0" })).toThrow("invalid: bundle version 1.2.0 is older than running 2.0.0; pass --allow-downgrade");
    expect(() => checkBundleHeader(header, { ...trusted(), runningVersion: "2.0.0", allowDowngrade: true })).not.toThrow();
    expect(() => checkBundleHeader(header, { ...trusted(), runningVersion: "1.2" })).not.toThrow();
    expect(() => checkBundleHeader(header, { ...trusted(), runningVersion: "0.0.0" })).not.toThrow();
  });
});

describe("hostile bytes", () => {
  const refusal = (f: () => unknown): string => {
    try {
      f();
    } catch (err) {
      expect(err).toBeInstanceOf(NineError);
      return (err as Error).message;
    }
    throw new Error("not refused");
  };

  it("refuses a flipped byte in the header's JSON, in its chunk list, and in a payload", () => {
    const inHeader = Buffer.from(bytes);
    inHeader[BUNDLE_PREFIX_BYTES + 30] ^= 0x01;
    expect(refusal(() => receive(inHeader))).toMatch(/^invalid: bundle header/);
    const inList = Buffer.from(bytes);
    const at = inList.indexOf(header.chunks[1]!);
    inList[at] = inList[at] === 0x30 ? 0x31 : 0x30;
    expect(refusal(() => receive(inList))).toBe("invalid: bundle header signature does not verify: the header was changed after it was signed");
    const inPayload = Buffer.from(bytes);
    inPayload[payloadOffset(header) + CHUNK + 5] ^= 0x80;
    expect(verifyChunk(header, 1, inPayload.subarray(chunkRange(header, 1).start, chunkRange(header, 1).end))).toBe(false);
    expect(verifyChunk(header, 0, inPayload.subarray(chunkRange(header, 0).start, chunkRange(header, 0).end))).toBe(true);
  });

  it("verifyBundleFile() names a damaged chunk and a file cut short", async () => {
    const damaged = Buffer.from(bytes);
    damaged[payloadOffset(header) + 2 * CHUNK + 1] ^= 0x10;
    await writeFile(join(dir, "damaged.bundle"), damaged);
    await expect(verifyBundleFile(join(dir, "damaged.bundle"), { releasePub: release.publicKey })).rejects.toThrow(/^invalid: bundle chunk 2 \(bytes \d+–\d+\) differs from its sha256 in the header: the file is damaged$/);
    await writeFile(join(dir, "short.bundle"), bytes.subarray(0, bytes.length - 10));
    await expect(verifyBundleFile(join(dir, "short.bundle"), { releasePub: release.publicKey })).rejects.toThrow(/^invalid: bundle is \d+ bytes, its header describes \d+: the file is cut short \(copy it again\)$/);
    await writeFile(join(dir, "head.bundle"), bytes.subarray(0, 100));
    await expect(verifyBundleFile(join(dir, "head.bundle"), { releasePub: release.publicKey })).rejects.toThrow(/^invalid: bundle header is cut short/);
  });

  it("refuses a header length above 64 KiB before reading it, and garbage that is not a bundle", () => {
    const big = Buffer.from(bytes.subarray(0, 20));
    big.writeUInt32BE(64 * 1024 + 1, 16);
    expect(refusal(() => bundleHeaderLength(big))).toBe("too big: bundle header of 65537 bytes is over the 65536-byte limit");
    expect(refusal(() => parseBundleHeader(Buffer.from("PK\x03\x04 this is a zip file, not a bundle")))).toMatch(/^invalid: not a cohesix bundle: the file does not start with COHESIX-BUNDLE1/);
    expect(refusal(() => parseBundleHeader(Buffer.alloc(3)))).toMatch(/^invalid: not a cohesix bundle: 3 bytes/);
  });

  it("refuses a header that is signed but not in canonical form, or lists other payloads", () => {
    const spaced = Buffer.from(JSON.stringify(header, null, 1));
    const prefix = Buffer.from(bytes.subarray(0, 20));
    prefix.writeUInt32BE(spaced.length, 16);
    expect(refusal(() => parseBundleHeader(Buffer.concat([prefix, spaced])))).toMatch(/^invalid: bundle header: not in canonical form/);
    const swapped = signDocument({ ...header, payloads: [header.payloads[1], header.payloads[0], header.payloads[2]] } as unknown as Record<string, unknown>, release.privateKey);
    const text = Buffer.from(JSON.stringify(swapped));
    prefix.writeUInt32BE(text.length, 16);
    expect(refusal(() => parseBundleHeader(Buffer.concat([prefix, text])))).toBe("invalid: bundle header: payloads[0].name must be Image");
  });

  it("never throws anything but a typed refusal for thousands of mutations, and accepts none that changed a byte", () => {
    const next = prng(0xb0b);
    let accepted = 0;
    for (let n = 0; n < 3000; n++) {
      const m = Buffer.from(bytes);
      let mutated: Buffer = m;
      const kind = n % 5;
      // Flips weigh towards the prefix and header, where the parser works hardest.
      const at = Math.floor(next() * (kind < 2 ? payloadOffset(header) : m.length));
      if (kind <= 2) m[at] ^= 1 + Math.floor(next() * 255);
      else if (kind === 3) mutated = m.subarray(0, at);
      else mutated = Buffer.concat([m.subarray(0, at), Buffer.from([Math.floor(next() * 256)]), m.subarray(at)]);
      try {
        receive(mutated);
        accepted++;
        expect(Buffer.compare(mutated, bytes)).toBe(0);
      } catch (err) {
        if (err instanceof NineError) {
          expect(["invalid", "too big", "permission"]).toContain(err.errorClass);
          expect(err.message.length).toBeLessThan(300);
        } else {
          // The test's own size and chunk checks.
          expect((err as Error).message).toMatch(/^(size|chunk) /);
        }
      }
    }
    expect(accepted).toBe(0);
  });
});

describe("compareVersions()", () => {
  it("compares part by part as numbers, missing parts as 0", () => {
    expect(compareVersions("1.2.0", "1.10")).toBe(-1);
    expect(compareVersions("2", "1.99.99.99")).toBe(1);
    expect(compareVersions("1.2", "1.2.0.0")).toBe(0);
    expect(compareVersions("0.0.0", "0")).toBe(0);
  });

  it("refuses a malformed version with the shape it wants", () => {
    expect(() => compareVersions("1.2.3.4.5", "1")).toThrow('invalid: version "1.2.3.4.5" must be dotted whole numbers such as 1.2.0 (one to four parts)');
  });
});

describe("the boot manifest a bundle carries", () => {
  it("is refused when it names another version or other files than the payloads", async () => {
    const r = payloadRanges(header)[2]!;
    const good = JSON.parse(bytes.subarray(r.start, r.end).toString("utf8"));
    expect(parseBootManifest(JSON.stringify(good), "x").version).toBe("1.2.0");
    const resign = (edit: Record<string, unknown>): Buffer => {
      const { keyId: _k, publicKey: _p, signature: _s, ...rest } = { ...good, ...edit };
      return Buffer.from(JSON.stringify(signDocument({ ...rest, format: BOOT_MANIFEST_FORMAT }, release.privateKey)));
    };
    for (const [edit, why] of [
      [{ version: "1.1.0" }, /names version 1\.1\.0, the bundle 1\.2\.0/],
      [{ artefacts: good.artefacts.slice(0, 1) }, /must list exactly the bundle's \/Image and \/initrd\.gz/],
    ] as const) {
      const manifest = resign(edit);
      const h = { ...header, payloads: [header.payloads[0]!, header.payloads[1]!, { name: "manifest.json" as const, size: manifest.length, sha256: createHash("sha256").update(manifest).digest("hex") }] };
      expect(() => checkBundleManifest(h, manifest, { releasePub: release.publicKey })).toThrow(why);
    }
  });
});
