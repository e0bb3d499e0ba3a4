/**
 * The disk image's signed manifest: a good image verifies; a changed byte,
 * a wrong key, an edited manifest, a missing or an extra entry, and a
 * missing manifest are each refused with a message that says what differs.
 * Images here are small (made from small boot files) but are real MBR +
 * FAT + ext4 disk images made by writeDiskImage.
 */
import { execa } from "execa";
import { copyFile, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManifestError, manifestPathOf, verifyImage, type ImageManifest } from "../../flash/index.ts";
import { writeDiskImage } from "../../flash/disk.ts";
import { readPrivateKey, signDocument, writeKeyPair } from "../../root-task/index.ts";

let dir = "";
let releaseKey: Uint8Array;
let pub = "";
let otherPub = "";
let image = "";

async function bootFiles(): Promise<{ path: string; src: string }[]> {
  await writeFile(join(dir, "Image"), Buffer.alloc(300_000, 7));
  await writeFile(join(dir, "initrd.gz"), Buffer.alloc(200_000, 9));
  await writeFile(join(dir, "extlinux.conf"), "default cohesix\nlabel cohesix\n  kernel /Image\n  initrd /initrd.gz\n");
  return [
    { path: "/Image", src: join(dir, "Image") },
    { path: "/initrd.gz", src: join(dir, "initrd.gz") },
    { path: "/extlinux/extlinux.conf", src: join(dir, "extlinux.conf") },
  ];
}

/** A copy of the good image and its manifest under another name. */
async function copyImage(name: string): Promise<string> {
  const copy = join(dir, name);
  await copyFile(image, copy);
  await copyFile(manifestPathOf(image), manifestPathOf(copy));
  return copy;
}

async function manifestOf(img: string): Promise<ImageManifest> {
  return JSON.parse(await readFile(manifestPathOf(img), "utf8")) as ImageManifest;
}

/** Rewrites a copy's manifest, re-signed with the release key unless `sign` is false. */
async function editManifest(img: string, edit: (m: Record<string, unknown>) => void, sign = true): Promise<void> {
  const m = { ...(await manifestOf(img)) } as Record<string, unknown>;
  edit(m);
  let out = m;
  if (sign) {
    const { keyId: _k, publicKey: _p, signature: _s, ...unsigned } = m;
    out = signDocument(unsigned, releaseKey);
  }
  await writeFile(manifestPathOf(img), `${JSON.stringify(out, null, 2)}\n`);
}

async function refusal(img: string, pubKeyFile = pub): Promise<string> {
  try {
    await verifyImage(img, { pubKeyFile });
  } catch (err) {
    expect(err).toBeInstanceOf(ManifestError);
    return (err as Error).message;
  }
  throw new Error(`${img} verified but should have been refused`);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-manifest-"));
  const pair = await writeKeyPair(join(dir, "keys"), { name: "release" });
  releaseKey = await readPrivateKey(pair.privatePath);
  pub = pair.publicPath;
  otherPub = (await writeKeyPair(join(dir, "other"), { name: "release" })).publicPath;
  image = join(dir, "good.img");
  await writeDiskImage(image, { board: "test", bootFiles: await bootFiles(), releaseKey, initramfsDigest: `sha256:${"ab".repeat(32)}`, dataBytes: 8 << 20, epoch: 1_700_000_000 });
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("image manifest", () => {
  it("verifyImage() accepts the image as built and returns its manifest", async () => {
    const m = await verifyImage(image, { pubKeyFile: pub });
    expect(m.format).toBe("cohesix-image-manifest/v1");
    expect(m.artefacts.map((a) => a.path)).toEqual(["/Image", "/cohesix/manifest.json", "/extlinux/extlinux.conf", "/initrd.gz"]);
    expect(m.artefacts.find((a) => a.path === "/Image")).toMatchObject({ size: 300_000 });
    expect(m.bootManifest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(m.bootManifest).toBe(`sha256:${m.artefacts.find((a) => a.path === "/cohesix/manifest.json")!.sha256}`);
  });

  it("refuses an image with one changed byte", async () => {
    const img = await copyImage("byte.img");
    const fh = await open(img, "r+");
    const one = Buffer.alloc(1);
    const at = (1 << 20) + 200_000; // inside the boot partition
    await fh.read(one, 0, 1, at);
    one[0] = one[0]! ^ 0xff;
    await fh.write(one, 0, 1, at);
    await fh.close();
    expect(await refusal(img)).toMatch(/^permission: .*byte\.img: sha256 [0-9a-f]{64} differs from the signed [0-9a-f]{64}: a byte of the image changed; do not flash it/);
  });

  it("refuses an image checked with the wrong release key", async () => {
    expect(await refusal(image, otherPub)).toMatch(/good\.img\.manifest\.json is signed by key [0-9a-f]{16}, not by the release key [0-9a-f]{16}: wrong key/);
  });

  it("refuses a manifest edited after signing", async () => {
    const img = await copyImage("edited.img");
    await editManifest(img, (m) => (m.board = "other"), false);
    expect(await refusal(img)).toMatch(/refused: the signature does not verify: the manifest was changed after it was signed/);
  });

  it("refuses a manifest with a missing entry, even when signed", async () => {
    const img = await copyImage("missing.img");
    await editManifest(img, (m) => (m.artefacts = (m.artefacts as { path: string }[]).filter((a) => a.path !== "/initrd.gz")));
    expect(await refusal(img)).toMatch(/the boot partition holds \/initrd\.gz, which the manifest does not list/);
  });

  it("refuses a manifest with an extra entry, even when signed", async () => {
    const img = await copyImage("extra.img");
    await editManifest(img, (m) => (m.artefacts = [...(m.artefacts as object[]), { path: "/board.dtb", size: 1, sha256: "00".repeat(32) }]));
    expect(await refusal(img)).toMatch(/the manifest lists \/board\.dtb, which the boot partition does not hold/);
  });

  it("refuses an artefact whose listed digest differs from the partition's file", async () => {
    const img = await copyImage("digest.img");
    await editManifest(img, (m) => (m.artefacts = (m.artefacts as { path: string; sha256: string }[]).map((a) => (a.path === "/Image" ? { ...a, sha256: "11".repeat(32) } : a))));
    expect(await refusal(img)).toMatch(/\/Image in the boot partition \(300000 bytes, sha256 [0-9a-f]{64}\) differs from the manifest/);
  });

  it("refuses an image without its manifest, and a malformed manifest, naming the file", async () => {
    const img = join(dir, "bare.img");
    await copyFile(image, img);
    expect(await refusal(img)).toMatch(/bare\.img: no manifest .*bare\.img\.manifest\.json: keep the manifest `cohesix image` wrote beside the image/);
    await writeFile(manifestPathOf(img), "{not json");
    expect(await refusal(img)).toMatch(/manifest .*bare\.img\.manifest\.json: not valid JSON/);
    await writeFile(manifestPathOf(img), JSON.stringify({ ...(await manifestOf(image)), surprise: 1 }));
    expect(await refusal(img)).toMatch(/surprise is not a known field/);
  });

  it("refuses a truncated image by its size before hashing it", async () => {
    const img = await copyImage("short.img");
    const fh = await open(img, "r+");
    await fh.truncate(4 << 20);
    await fh.close();
    expect(await refusal(img)).toMatch(/short\.img: the image is 4194304 bytes, its manifest says \d+: it was truncated or changed/);
  });
});

describe("disk image layout", () => {
  it("holds an MBR with a bootable FAT partition (type c) and a Linux data partition, 1 MiB aligned", async () => {
    const dump = (await execa("sfdisk", ["--dump", image], { env: { PATH: `${process.env.PATH}:/usr/sbin:/sbin` } })).stdout;
    expect(dump).toMatch(/label: dos/);
    expect(dump).toMatch(/good\.img1 : start=\s*2048, size=\s*\d+, type=c, bootable/);
    expect(dump).toMatch(/good\.img2 : start=\s*\d+, size=\s*16384, type=83/);
    const m = await manifestOf(image);
    expect(m.partitions.map((p) => [p.index, p.role, p.type, p.bootable])).toEqual([
      [1, "boot", 0x0c, true],
      [2, "data", 0x83, false],
    ]);
  });

  it("its FAT partition holds /Image, /initrd.gz, /extlinux/extlinux.conf and the signed boot manifest", async () => {
    const env = { MTOOLS_SKIP_CHECK: "1" };
    const at = `${image}@@${1 << 20}`;
    const list = (await execa("mdir", ["-i", at, "-/", "-b", "::/"], { env })).stdout.split("\n").map((l) => l.trim());
    expect(list).toEqual(expect.arrayContaining(["::/Image", "::/initrd.gz", "::/extlinux/extlinux.conf", "::/cohesix/manifest.json"]));
    expect((await execa("mtype", ["-i", at, "::/extlinux/extlinux.conf"], { env })).stdout).toContain("kernel /Image");
    const boot = JSON.parse((await execa("mtype", ["-i", at, "::/cohesix/manifest.json"], { env })).stdout) as { format: string; artefacts: { path: string }[] };
    expect(boot.format).toBe("cohesix-boot-manifest/v1");
    expect(boot.artefacts.map((a) => a.path)).toEqual(["/Image", "/extlinux/extlinux.conf", "/initrd.gz"]);
  });

  it("its data partition is an ext4 file system labelled cohesix-state", async () => {
    const m = await manifestOf(image);
    const data = m.partitions.find((p) => p.role === "data")!;
    const part = join(dir, "data.part");
    const fh = await open(image, "r");
    const buf = Buffer.alloc(data.size);
    await fh.read(buf, 0, data.size, data.start);
    await fh.close();
    await writeFile(part, buf);
    const out = (await execa("dumpe2fs", ["-h", part], { env: { PATH: `${process.env.PATH}:/usr/sbin:/sbin` }, reject: false })).stdout;
    expect(out).toMatch(/Filesystem volume name:\s+cohesix-state/);
  });
});

describe("reproducibility", () => {
  it("building twice from the same inputs gives byte-identical images and manifests; another epoch does not", async () => {
    const files = await bootFiles();
    const a = join(dir, "r1", "x.img");
    const b = join(dir, "r2", "x.img");
    const c = join(dir, "r3", "x.img");
    const opts = { board: "test", bootFiles: files, releaseKey, initramfsDigest: `sha256:${"ab".repeat(32)}`, dataBytes: 8 << 20 };
    await writeDiskImage(a, { ...opts, epoch: 1_700_000_000 });
    await new Promise((r) => setTimeout(r, 1100)); // a clock that leaked in would now differ
    await writeDiskImage(b, { ...opts, epoch: 1_700_000_000 });
    await writeDiskImage(c, { ...opts, epoch: 1_700_086_400 });
    expect(Buffer.compare(await readFile(a), await readFile(b))).toBe(0);
    expect(await readFile(manifestPathOf(b), "utf8")).toBe(await readFile(manifestPathOf(a), "utf8"));
    expect(Buffer.compare(await readFile(a), await readFile(c))).not.toBe(0);
  });
});
