/**
 * The partition table as data: the layout rounds to 1 MiB, the sfdisk
 * script is the one serialisation, and readMbr reads back what sfdisk wrote.
 */
import { execa } from "execa";
import { mkdtemp, open, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { layoutDisk, readMbr, sfdiskScript } from "../../flash/index.ts";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("layoutDisk()", () => {
  it("puts the boot partition at 1 MiB and the data partition after it, each rounded up to whole MiB", () => {
    const t = layoutDisk({ bootBytes: (70 << 20) + 1, dataBytes: 64 << 20, diskId: 0x0c0e5100 });
    expect(t.partitions.map((p) => [p.index, p.role, p.type, p.bootable, p.start >> 20, p.size >> 20])).toEqual([
      [1, "boot", 0x0c, true, 1, 71],
      [2, "data", 0x83, false, 72, 64],
    ]);
    expect(t.size).toBe(136 << 20);
  });

  it("refuses sizes that are not positive byte counts and a disk id over 32 bits", () => {
    expect(() => layoutDisk({ bootBytes: 0, dataBytes: 1, diskId: 1 })).toThrow(/boot partition size 0 must be a positive byte count/);
    expect(() => layoutDisk({ bootBytes: 1, dataBytes: 1.5, diskId: 1 })).toThrow(/data partition size 1\.5/);
    expect(() => layoutDisk({ bootBytes: 1, dataBytes: 1, diskId: 2 ** 32 })).toThrow(/disk id must be a 32-bit number/);
  });
});

describe("sfdiskScript() and readMbr()", () => {
  const table = layoutDisk({ bootBytes: 4 << 20, dataBytes: 2 << 20, diskId: 0x0c0e5100 });

  it("writes a DOS label with the disk id, sector units, a bootable type c and a type 83 partition", () => {
    expect(sfdiskScript(table)).toBe(
      "label: dos\nlabel-id: 0x0c0e5100\nunit: sectors\nsector-size: 512\n\nstart=2048, size=8192, type=c, bootable\nstart=10240, size=4096, type=83\n",
    );
  });

  it("reads back, from the first sector, the table sfdisk wrote from the script", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cohesix-mbr-"));
    dirs.push(dir);
    const img = join(dir, "disk.img");
    const fh = await open(img, "w");
    await fh.truncate(table.size);
    await fh.close();
    await execa("sfdisk", ["--quiet", "--no-reread", "--no-tell-kernel", img], { input: sfdiskScript(table), env: { PATH: `${process.env.PATH}:/usr/sbin:/sbin` } });
    const mbr = readMbr((await readFile(img)).subarray(0, 512));
    expect(mbr.diskId).toBe(0x0c0e5100);
    expect(mbr.partitions).toEqual(table.partitions.map(({ index, type, bootable, start, size }) => ({ index, type, bootable, start, size })));
  });

  it("refuses a sector without the MBR signature, and a short one", () => {
    expect(() => readMbr(new Uint8Array(512))).toThrow(/not a disk image: no MBR partition table \(the 0x55AA signature is missing\)/);
    expect(() => readMbr(new Uint8Array(100))).toThrow(/shorter than one sector/);
  });
});
