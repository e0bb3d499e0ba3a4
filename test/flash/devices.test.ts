/**
 * Disk discovery and the flash rules, on fake sysfs trees: sizes, models,
 * removable flags, partitions, mounts (with escaped mount points), swap,
 * holders, the disk holding `/` (by device number, through LVM slaves, or
 * by the mount table alone), and each refusal.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  DEFAULT_MAX_BYTES,
  RefusedError,
  assessDisks,
  chooseDisk,
  deviceName,
  devNumber,
  formatBytes,
  formatCandidates,
  listDisks,
  parseMounts,
  parseSwaps,
  refusalsOf,
  systemView,
  type Disk,
} from "../../flash/index.ts";
import { GiB, MiB, laptop, makeFakeRoot, type FakeMachine, type FakeRoot } from "./fake-system.ts";

const roots: FakeRoot[] = [];
afterEach(async () => {
  await Promise.all(roots.splice(0).map((r) => r.remove()));
});

async function disksOf(machine: FakeMachine): Promise<Disk[]> {
  const fake = await makeFakeRoot(machine);
  roots.push(fake);
  return listDisks(systemView(fake.root));
}

function byName(disks: readonly Disk[], name: string): Disk {
  const d = disks.find((x) => x.name === name);
  if (!d) throw new Error(`no ${name} in ${disks.map((x) => x.name).join(", ")}`);
  return d;
}

function refusalError(fn: () => unknown): RefusedError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RefusedError);
    return err as RefusedError;
  }
  throw new Error("expected a refusal");
}

describe("listDisks()", () => {
  it("reads size, model, removable and partitions, and leaves out empty loops, zram and eMMC boot areas", async () => {
    const disks = await disksOf(laptop());
    expect(disks.map((d) => d.name)).toEqual(["nvme0n1", "sdb"]);
    const sd = byName(disks, "sdb");
    expect(sd).toMatchObject({ removable: true, readOnly: false, model: "Generic STORAGE DEVICE", dev: "8:16" });
    expect(sd.sizeBytes).toBe(29.7 * GiB - ((29.7 * GiB) % 512));
    expect(sd.partitions.map((p) => [p.name, p.sizeBytes, p.dev])).toEqual([
      ["sdb1", 256 * MiB, "8:17"],
      ["sdb2", 10 * GiB, "8:18"],
    ]);
    expect(sd.path.endsWith("/dev/sdb")).toBe(true);
    // A PCI vendor id is not a name.
    expect(byName(disks, "nvme0n1").model).toBe("Samsung SSD 980");
  });

  it("marks the disk holding / and /boot/efi, found by the device number of /", async () => {
    const disks = await disksOf(laptop());
    const nvme = byName(disks, "nvme0n1");
    expect(nvme.systemMounts).toEqual(["/", "/boot/efi"]);
    expect(nvme.mounts.map((m) => m.target)).toEqual(["/", "/boot/efi"]);
    expect(byName(disks, "sdb").systemMounts).toEqual([]);
  });

  it("finds the disk holding / by device number alone, when the mount table names no device (overlay, /dev/root)", async () => {
    const disks = await disksOf({
      disks: [{ name: "sda", size: 64 * GiB, dev: "8:0", partitions: [{ name: "sda1", size: 60 * GiB, dev: "8:1" }] }],
      mounts: [["/dev/root", "/"]],
      rootDev: "8:1",
    });
    expect(byName(disks, "sda").systemMounts).toEqual(["/"]);
  });

  it("follows LVM/LUKS slaves from the device of / down to the disk", async () => {
    const disks = await disksOf({
      disks: [
        { name: "sda", size: 64 * GiB, dev: "8:0", partitions: [{ name: "sda2", size: 60 * GiB, dev: "8:2", holders: ["dm-0"] }] },
        { name: "dm-0", size: 60 * GiB, dev: "254:0", slaves: ["sda2"] },
        { name: "sdb", size: 16 * GiB, removable: true, dev: "8:16" },
      ],
      rootDev: "254:0",
    });
    const sda = byName(disks, "sda");
    expect(sda.systemMounts).toEqual(["/"]);
    expect(sda.holders).toEqual(["dm-0"]);
    expect(byName(disks, "sdb").systemMounts).toEqual([]);
  });

  it("finds the disk holding / by the mount table alone when the device number is unknown", async () => {
    const disks = await disksOf({
      disks: [{ name: "sda", size: 64 * GiB, removable: true, partitions: [{ name: "sda1", size: 64 * GiB }] }],
      mounts: [["/dev/sda1", "/"]],
    });
    expect(byName(disks, "sda").systemMounts).toEqual(["/"]);
  });

  it("attributes a partition's mount to its disk, with the mount point unescaped", async () => {
    const disks = await disksOf(laptop({ sdMounted: true }));
    expect(byName(disks, "sdb").mounts).toEqual([{ source: expect.stringMatching(/\/dev\/sdb1$/), target: "/media/me/BOOT DISK" }]);
  });

  it("treats an SD card (mmcblk*) as removable even when sysfs says 0", async () => {
    const disks = await disksOf({ disks: [{ name: "mmcblk0", size: 32 * GiB, removable: false, dev: "179:0" }] });
    expect(byName(disks, "mmcblk0").removable).toBe(true);
  });

  it("reads swap and read-only flags", async () => {
    const disks = await disksOf({
      disks: [
        { name: "sdc", size: 8 * GiB, removable: true, ro: true },
        { name: "sdd", size: 8 * GiB, removable: true, partitions: [{ name: "sdd1", size: 1 * GiB }] },
      ],
      swaps: ["/dev/sdd1"],
    });
    expect(byName(disks, "sdc").readOnly).toBe(true);
    expect(byName(disks, "sdd").swap).toEqual([expect.stringMatching(/\/dev\/sdd1$/)]);
  });

  it("answers an empty list for a machine without disks", async () => {
    expect(await disksOf({ disks: [] })).toEqual([]);
  });
});

describe("parsers", () => {
  it("parseMounts() decodes octal escapes and skips blank lines", () => {
    expect(parseMounts("/dev/sdb1 /media/a\\040b vfat rw 0 0\n\n/dev/sdb2 /x\\134y ext4 rw 0 0\n")).toEqual([
      { source: "/dev/sdb1", target: "/media/a b" },
      { source: "/dev/sdb2", target: "/x\\y" },
    ]);
  });

  it("parseSwaps() skips the header", () => {
    expect(parseSwaps("Filename Type Size Used Priority\n/dev/sda3 partition 1 0 -2\n/swapfile file 1 0 -3\n")).toEqual(["/dev/sda3", "/swapfile"]);
  });

  it("devNumber() splits Linux device numbers, large minors included", () => {
    expect(devNumber(0xfe00n)).toBe("254:0");
    expect(devNumber(0x10301n)).toBe("259:1");
    // glibc's makedev()
    const makedev = (major: bigint, minor: bigint) => ((major & 0xfffff000n) << 32n) | ((major & 0xfffn) << 8n) | ((minor & 0xffffff00n) << 12n) | (minor & 0xffn);
    expect(devNumber(makedev(0x12345n, 0x89067n))).toBe(`${0x12345}:${0x89067}`);
    expect(devNumber(makedev(8n, 17n))).toBe("8:17");
  });

  it("formatBytes() speaks binary units", () => {
    expect(formatBytes(900)).toBe("900 B");
    expect(formatBytes(512 * MiB)).toBe("512 MiB");
    expect(formatBytes(29.7 * GiB)).toBe("29.7 GiB");
    expect(formatBytes(1024 * GiB)).toBe("1 TiB");
  });

  it("deviceName() takes a path, a bare name, or a path under the fake /dev", async () => {
    const fake = await makeFakeRoot({ disks: [] });
    roots.push(fake);
    const view = systemView(fake.root);
    expect(await deviceName(view, "sdb")).toBe("sdb");
    expect(await deviceName(view, "/dev/sdb")).toBe("sdb");
    expect(await deviceName(view, fake.node("mmcblk0"))).toBe("mmcblk0");
  });
});

describe("the rules", () => {
  const card = (over: Partial<Disk> = {}): Disk => ({
    name: "sdb",
    path: "/dev/sdb",
    dev: "8:16",
    sizeBytes: 16 * GiB,
    model: "Card",
    removable: true,
    readOnly: false,
    partitions: [],
    mounts: [],
    systemMounts: [],
    swap: [],
    holders: [],
    ...over,
  });
  const codes = (d: Disk, rules = { imageBytes: 100 * MiB }) => refusalsOf(d, rules).map((r) => r.code);

  it("accept a removable, unmounted card larger than the image", () => {
    expect(codes(card())).toEqual([]);
  });

  it("refuse a non-removable disk", () => {
    expect(codes(card({ removable: false }))).toEqual(["not-removable"]);
  });

  it("refuse the disk holding /, even with --unmount", () => {
    const root = card({ systemMounts: ["/"], mounts: [{ source: "/dev/sdb1", target: "/" }] });
    expect(codes(root)).toEqual(["system", "mounted"]);
    expect(refusalsOf(root, { imageBytes: 1, unmount: true }).map((r) => r.code)).toEqual(["system"]);
    expect(refusalsOf(root, { imageBytes: 1 })[1]!.message).not.toMatch(/--unmount/);
  });

  it("refuse a mounted card unless --unmount is given", () => {
    const mounted = card({ mounts: [{ source: "/dev/sdb1", target: "/media/BOOT" }] });
    expect(refusalsOf(mounted, { imageBytes: 1 })).toEqual([{ code: "mounted", message: "mounted at /media/BOOT (pass --unmount to unmount it)" }]);
    expect(refusalsOf(mounted, { imageBytes: 1, unmount: true })).toEqual([]);
  });

  it("refuse a card smaller than the image", () => {
    expect(refusalsOf(card({ sizeBytes: 64 * MiB }), { imageBytes: 100 * MiB })).toEqual([{ code: "too-small", message: "too small: 64 MiB < image 100 MiB" }]);
  });

  it("refuse a disk larger than 512 GiB, unless the limit is raised", () => {
    const big = card({ sizeBytes: 1024 * GiB });
    expect(DEFAULT_MAX_BYTES).toBe(512 * GiB);
    expect(codes(big)).toEqual(["too-large"]);
    expect(refusalsOf(big, { imageBytes: 1, maxBytes: 2048 * GiB })).toEqual([]);
    expect(codes(card({ sizeBytes: 512 * GiB }))).toEqual([]);
  });

  it("refuse a read-only card, a card with active swap, and one held by LVM, LUKS or RAID", () => {
    expect(codes(card({ readOnly: true }))).toEqual(["read-only"]);
    expect(codes(card({ swap: ["/dev/sdb2"] }))).toEqual(["swap"]);
    expect(codes(card({ holders: ["dm-3"] }))).toEqual(["in-use"]);
  });
});

describe("chooseDisk()", () => {
  it("auto-selects the one candidate of a laptop with an SD card", async () => {
    const assessed = assessDisks(await disksOf(laptop()), { imageBytes: 100 * MiB });
    expect(chooseDisk(assessed).name).toBe("sdb");
    const table = formatCandidates(assessed);
    expect(table.split("\n")[0]).toMatch(/^DEVICE\s+SIZE\s+MODEL\s+REMOVABLE\s+MOUNTED\s+STATUS$/);
    expect(table).toMatch(/nvme0n1\s+512 GiB\s+Samsung SSD 980\s+no\s+\/,\/boot\/efi\s+refused: holds \/, \/boot\/efi/);
    expect(table).toMatch(/sdb\s+29\.7 GiB\s+Generic STORAGE DEVICE\s+yes\s+-\s+candidate/);
  });

  it("refuses to pick when there is no candidate, and lists why each disk was refused", async () => {
    const assessed = assessDisks(await disksOf(laptop({ sdMounted: true })), { imageBytes: 100 * MiB });
    const err = refusalError(() => chooseDisk(assessed));
    expect(err.message).toMatch(/^permission: no disk can be flashed: insert an SD card or USB stick/);
    expect(err.message).toMatch(/sdb .*refused: mounted at \/media\/me\/BOOT DISK \(pass --unmount/);
  });

  it("refuses to pick between two candidates", async () => {
    const assessed = assessDisks(
      await disksOf({
        disks: [
          { name: "sdb", size: 16 * GiB, removable: true },
          { name: "mmcblk0", size: 32 * GiB },
        ],
      }),
      { imageBytes: MiB },
    );
    expect(refusalError(() => chooseDisk(assessed)).message).toMatch(/^permission: 2 candidate disks: pick one with --device/);
    expect(chooseDisk(assessed, { requested: "mmcblk0" }).name).toBe("mmcblk0");
  });

  it("refuses a requested disk with every reason", async () => {
    const assessed = assessDisks(await disksOf(laptop()), { imageBytes: 100 * MiB });
    const err = refusalError(() => chooseDisk(assessed, { requested: "nvme0n1" }));
    expect(err.refusals.map((r) => r.code)).toEqual(["system", "not-removable", "mounted"]);
    expect(err.message).toMatch(/^permission: refusing .*\/dev\/nvme0n1: holds \/, \/boot\/efi \(this machine's own disk\); not removable/);
  });

  it("refuses a partition and names its disk", async () => {
    const assessed = assessDisks(await disksOf(laptop()), { imageBytes: 100 * MiB });
    expect(refusalError(() => chooseDisk(assessed, { requested: "sdb1" })).message).toMatch(/sdb1 is a partition: flash the whole disk, --device .*\/dev\/sdb$/);
  });

  it("refuses an unknown device and lists the disks there are", async () => {
    const assessed = assessDisks(await disksOf(laptop()), { imageBytes: 100 * MiB });
    expect(refusalError(() => chooseDisk(assessed, { requested: "sdz" })).message).toMatch(/no disk sdz: the disks are\nDEVICE/);
  });

  it("refuses a requested disk that is too small for the image", async () => {
    const assessed = assessDisks(await disksOf({ disks: [{ name: "sdb", size: 64 * MiB, removable: true }] }), { imageBytes: 100 * MiB });
    expect(refusalError(() => chooseDisk(assessed, { requested: "sdb" })).refusals.map((r) => r.code)).toEqual(["too-small"]);
  });
});

describe("the real system (read only)", () => {
  it("lists this machine's disks and never offers the one holding /", async () => {
    const assessed = assessDisks(await listDisks(systemView()), { imageBytes: 1 });
    for (const a of assessed) {
      if (a.disk.systemMounts.includes("/")) expect(a.refusals.map((r) => r.code)).toContain("system");
    }
  });
});
