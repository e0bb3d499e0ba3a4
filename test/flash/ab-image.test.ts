/**
 * The A/B disk image (`cohesix image --ab`) with small stand-in artefacts
 * (the real ones boot under U-Boot in test/update/uboot-ab.e2e.test.ts):
 * both slots hold the build with a signed slot manifest each, boot.scr is
 * the compiled boot script and no extlinux.conf shadows it, the state files
 * say A good and active, the image manifest lists everything and verifies,
 * and the same inputs give the same bytes.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadBoard } from "../../boards/index.ts";
import { buildBoardImage, defaultDataMb, listFat, loadDiskSpec, readFat, verifyImage, type BuiltBoardImage } from "../../flash/index.ts";
import { checkDocumentSignature, parseBootManifest, writeKeyPair } from "../../root-task/index.ts";
import { bootScript, initialBootState, parseBootState } from "../../update/index.ts";
import { decompress, readCpio } from "../../rootfs/index.ts";
import { standInArtefacts } from "../rootfs/fixtures.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "cohesix-ab-image-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const board = loadBoard("aarch64-virt");
const disk = loadDiskSpec(board);
const artefacts = standInArtefacts(join(work, "artefacts"), board, { moduleFolder: () => "fs", extraModules: [...disk.modules, ...(disk.watchdogModule ? [disk.watchdogModule] : [])] });
let keys: { release: string; releasePub: Uint8Array; releasePubFile: string; queenPub: string };
let built: BuiltBoardImage;

function build(name: string): Promise<BuiltBoardImage> {
  return buildBoardImage(join(work, name, "cohesix.img"), {
    board,
    artefacts,
    queenPub: keys.queenPub,
    releaseKey: keys.release,
    root,
    workDir: join(work, name, "work"),
    cacheDir: join(work, name, "cache"),
    strip: false,
    dataMb: 8,
    epoch: 1_700_000_000,
    ab: true,
  });
}

const boot = () => built.table.partitions[0]!.start;
const fat = async (path: string) => Buffer.from(await readFat(built.image, boot(), path));

beforeAll(async () => {
  const release = await writeKeyPair(join(work, "keys"), { name: "release" });
  const queen = await writeKeyPair(join(work, "keys"), { name: "queen" });
  keys = { release: release.privatePath, releasePub: release.publicKey, releasePubFile: release.publicPath, queenPub: queen.publicPath };
  built = await build("one");
}, 120_000);

describe("A/B disk image", () => {
  it("holds two slots, the boot script and two state copies, and no extlinux.conf for distro boot to take first", async () => {
    expect(await listFat(built.image, boot())).toEqual([
      "/a/Image",
      "/a/initrd.gz",
      "/a/manifest.json",
      "/b/Image",
      "/b/initrd.gz",
      "/b/manifest.json",
      "/boot.scr",
      "/cohesix/manifest.json",
      "/state.bak",
      "/state.env",
    ]);
  });

  it("starts with slot A active and good, B good (the same build), nothing to try, in both copies", async () => {
    for (const name of ["/state.env", "/state.bak"]) expect(parseBootState(await fat(name))).toEqual({ ok: true, state: initialBootState({ active: "a", other: "good" }) });
  });

  it("loads the board's watchdog driver in each slot's init, after the FAT modules, so a hung try reboots", async () => {
    expect(disk.watchdogModule).toBe("i6300esb");
    for (const slot of ["a", "b"]) {
      const raw = decompress(await fat(`/${slot}/initrd.gz`));
      const second = raw.subarray(raw.indexOf("070701", raw.indexOf("TRAILER!!!")));
      const init = [...readCpio(raw), ...readCpio(second)].find((e) => e.path === "init");
      const text = init?.type === "file" ? Buffer.from(init.data).toString("utf8") : "";
      expect(text).toMatch(/insmod \/lib\/modules\/[^ ]+\/i6300esb\.ko/);
      expect(text.indexOf("i6300esb.ko")).toBeGreaterThan(text.indexOf("vfat.ko"));
    }
  });

  it("boot.scr is the boot script for the image's command line, compiled by mkimage", async () => {
    const scr = await fat("/boot.scr");
    expect(scr.readUInt32BE(0)).toBe(0x27051956);
    expect(scr.subarray(72).toString("utf8")).toBe(bootScript({ cmdline: built.cmdline }));
    expect(built.cmdline).toContain("cohesix.boot=/dev/vda1 cohesix.state=/dev/vda2");
  });

  it("signs a manifest per slot that lists that slot's kernel and initramfs", async () => {
    for (const slot of ["a", "b"]) {
      const text = (await fat(`/${slot}/manifest.json`)).toString("utf8");
      const m = parseBootManifest(text, `/${slot}/manifest.json`);
      expect(checkDocumentSignature(m as never, keys.releasePub)).toBeUndefined();
      expect(m.artefacts.map((a) => a.path)).toEqual([`/${slot}/Image`, `/${slot}/initrd.gz`]);
      const whole = built.manifest.artefacts.find((a) => a.path === `/${slot}/Image`)!;
      expect(m.artefacts[0]!.sha256).toBe(whole.sha256);
    }
  });

  it("lists the state files in the image manifest (checked before flashing) but not in the boot manifest (checked at every boot)", async () => {
    expect(built.manifest.artefacts.map((a) => a.path)).toContain("/state.env");
    expect(built.bootManifest.artefacts.map((a) => a.path)).not.toContain("/state.env");
    expect(built.bootManifest.artefacts.map((a) => a.path)).toContain("/boot.scr");
    const verified = await verifyImage(built.image, { pubKeyFile: keys.releasePubFile });
    expect(verified.image.sha256).toBe(built.manifest.image.sha256);
  });

  it("leaves room in the boot partition for a slot's next build to grow by half", () => {
    const content = built.manifest.artefacts.reduce((n, a) => n + a.size, 0);
    const slot = built.manifest.artefacts.filter((a) => a.path.startsWith("/b/")).reduce((n, a) => n + a.size, 0);
    expect(built.table.partitions[0]!.size).toBeGreaterThanOrEqual(content + slot / 2);
  });

  it("gives byte-identical images when built twice from the same inputs", async () => {
    const second = await build("two");
    expect(Buffer.compare(readFileSync(built.image), readFileSync(second.image))).toBe(0);
  }, 120_000);
});

describe("the data partition of an A/B image", () => {
  it("has room to stage a bundle of the slot's build when the user gives no size", async () => {
    expect(defaultDataMb(64, 0)).toBe(64);
    // 80 MiB slot: 64 + 120 (1.5x the slot) + 16 (the update service's reserve)
    expect(defaultDataMb(64, 80 << 20)).toBe(200);
    const image = await buildBoardImage(join(work, "default-data", "cohesix.img"), {
      board, artefacts, queenPub: keys.queenPub, releaseKey: keys.release, root,
      workDir: join(work, "default-data", "work"), cacheDir: join(work, "default-data", "cache"), strip: false, epoch: 1_700_000_000, ab: true,
    });
    const slotBytes = (await readFat(image.image, image.table.partitions[0]!.start, "/a/Image")).length + (await readFat(image.image, image.table.partitions[0]!.start, "/a/initrd.gz")).length;
    const data = image.table.partitions.find((p) => p.role === "data")!;
    expect(data.size).toBe(defaultDataMb(disk.dataMb, slotBytes) * (1 << 20));
    expect(data.size).toBeGreaterThan(disk.dataMb * (1 << 20));
  }, 120_000);
});
