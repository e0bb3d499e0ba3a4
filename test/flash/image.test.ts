/**
 * A board's disk image with small stand-in artefacts (the real ones boot in
 * uboot.e2e.test.ts): built twice it is byte-identical; extlinux.conf names
 * the kernel, the initramfs and the partitions; the initramfs carries the
 * FAT modules and the release key; the board's disk.json is validated.
 */
import { execa } from "execa";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadBoard, type Board } from "../../boards/index.ts";
import { buildBoardImage, extlinuxConf, loadDiskSpec, partitionDevice, readFat, type BuiltBoardImage } from "../../flash/index.ts";
import { formatPublicKey, writeKeyPair } from "../../root-task/index.ts";
import { decompress, readCpio } from "../../rootfs/index.ts";
import { STAND_IN_KERNEL_VERSION, standInArtefacts } from "../rootfs/fixtures.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "cohesix-board-image-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const board = loadBoard("aarch64-virt");
const disk = loadDiskSpec(board);

let keys: { release: string; releasePub: Uint8Array; queenPub: string };
const artefacts = standInArtefacts(join(work, "artefacts"), board, { moduleFolder: () => "fs", extraModules: disk.modules });

function build(name: string, forBoard: Board = board): Promise<BuiltBoardImage> {
  return buildBoardImage(join(work, name, "cohesix.img"), {
    board: forBoard,
    artefacts,
    queenPub: keys.queenPub,
    releaseKey: keys.release,
    root,
    workDir: join(work, name, "work"),
    cacheDir: join(work, name, "cache"),
    strip: false,
    dataMb: 8,
    epoch: 1_700_000_000,
  });
}

let first: BuiltBoardImage;

beforeAll(async () => {
  const release = await writeKeyPair(join(work, "keys"), { name: "release" });
  const queen = await writeKeyPair(join(work, "keys"), { name: "queen" });
  keys = { release: release.privatePath, releasePub: release.publicKey, queenPub: queen.publicPath };
  first = await build("one");
}, 120_000);

describe("buildBoardImage()", () => {
  it("gives byte-identical images and manifests when built twice from the same inputs", async () => {
    await new Promise((r) => setTimeout(r, 1100));
    const second = await build("two");
    expect(Buffer.compare(readFileSync(first.image), readFileSync(second.image))).toBe(0);
    expect(readFileSync(second.manifestPath, "utf8")).toBe(readFileSync(first.manifestPath, "utf8"));
  }, 120_000);

  it("writes an extlinux.conf that boots /Image with /initrd.gz and names the initramfs and both partitions", async () => {
    const conf = Buffer.from(await readFat(first.image, first.table.partitions[0]!.start, "/extlinux/extlinux.conf")).toString("utf8");
    expect(conf).toMatch(/^default cohesix$/m);
    expect(conf).toMatch(/^ {2}kernel \/Image$/m);
    expect(conf).toMatch(/^ {2}initrd \/initrd\.gz$/m);
    expect(conf).toContain(`  append ${board.kernel.cmdline} cohesix.image=${first.manifest.initramfs} cohesix.boot=/dev/vda1 cohesix.state=/dev/vda2\n`);
    expect(first.cmdline).toBe(conf.match(/^ {2}append (.*)$/m)![1]);
  });

  it("puts the kernel and the initramfs it built in the boot partition, and an initramfs with the FAT modules, the release key and the boot mounts", async () => {
    const initrd = await readFat(first.image, first.table.partitions[0]!.start, "/initrd.gz");
    expect(Buffer.from(await readFat(first.image, first.table.partitions[0]!.start, "/Image")).toString()).toBe("kernel image\n");
    const raw = decompress(initrd);
    const second = raw.subarray(raw.indexOf("070701", raw.indexOf("TRAILER!!!")));
    const entries = new Map([...readCpio(raw), ...readCpio(second)].map((e) => [e.path, e]));
    const text = (p: string): string => {
      const e = entries.get(p);
      if (e?.type !== "file") throw new Error(`${p} is not in the initramfs`);
      return Buffer.from(e.data).toString("utf8");
    };
    expect(text("etc/cohesix/release.pub")).toBe(formatPublicKey(keys.releasePub));
    for (const m of disk.modules) expect(entries.has(`lib/modules/${STAND_IN_KERNEL_VERSION}/kernel/fs/${m}.ko`), m).toBe(true);
    const init = text("init");
    const vfat = init.indexOf("kernel/fs/vfat.ko");
    expect(vfat).toBeGreaterThan(init.indexOf("kernel/fs/virtio_blk.ko"));
    expect(init).toContain('mount -t vfat -o ro,noatime "$boot_dev" /boot');
    expect(init).toContain('mount -t ext4 -o noatime "$state_dev" /var/lib/cohesix');
  });

  it("lays out a bootable FAT partition and a data partition of the size asked for", async () => {
    const [boot, data] = first.table.partitions;
    expect(boot).toMatchObject({ index: 1, role: "boot", type: 0x0c, bootable: true, start: 1 << 20 });
    expect(data).toMatchObject({ index: 2, role: "data", type: 0x83, bootable: false, size: 8 << 20 });
    const dump = (await execa("sfdisk", ["--json", first.image], { env: { PATH: `${process.env.PATH}:/usr/sbin:/sbin` } })).stdout;
    const table = JSON.parse(dump) as { partitiontable: { label: string; partitions: { start: number; size: number; type: string; bootable?: boolean }[] } };
    expect(table.partitiontable.label).toBe("dos");
    expect(table.partitiontable.partitions.map((p) => [p.start * 512, p.size * 512, p.type, p.bootable === true])).toEqual([
      [boot!.start, boot!.size, "c", true],
      [data!.start, data!.size, "83", false],
    ]);
  });
});

describe("disk.json and helpers", () => {
  it("loadDiskSpec() reads aarch64-virt's disk: /dev/vda, U-Boot from u-boot-qemu, the FAT modules", () => {
    expect(disk.device).toBe("/dev/vda");
    expect(disk.firmware).toEqual({ path: "/usr/lib/u-boot/qemu_arm64/u-boot.bin", package: "u-boot-qemu" });
    expect(disk.modules).toEqual(["fat", "vfat", "nls_cp437", "nls_ascii"]);
    expect(disk.qemuMachineOptions).toBe("acpi=off");
  });

  it("loadDiskSpec() refuses an unknown field and a bad device by name, and a board without disk.json", () => {
    const dir = join(work, "boards", "b");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "disk.json"), JSON.stringify({ device: "/dev/vda", dataMb: 64, modules: [], dataMB: 1 }));
    expect(() => loadDiskSpec({ name: "b", dir })).toThrow(/disk\.json: dataMB is not a known field/);
    writeFileSync(join(dir, "disk.json"), JSON.stringify({ device: "vda", dataMb: 64, modules: [] }));
    expect(() => loadDiskSpec({ name: "b", dir })).toThrow(/device must be a device path such as \/dev\/vda/);
    expect(() => loadDiskSpec({ name: "c", dir: join(work, "boards", "c") })).toThrow(/not found: board c has no disk image description .*: it cannot be flashed/);
  });

  it("partitionDevice() names partitions as Linux does", () => {
    expect(partitionDevice("/dev/vda", 1)).toBe("/dev/vda1");
    expect(partitionDevice("/dev/mmcblk0", 2)).toBe("/dev/mmcblk0p2");
    expect(partitionDevice("/dev/nvme0n1", 1)).toBe("/dev/nvme0n1p1");
  });

  it("extlinuxConf() adds an fdt line only when the board has a device tree", () => {
    expect(extlinuxConf({ append: "console=ttyAMA0" })).not.toContain("fdt");
    expect(extlinuxConf({ append: "console=ttyAMA0", fdt: "/board.dtb" })).toContain("  fdt /board.dtb\n");
  });
});
