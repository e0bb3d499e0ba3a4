/**
 * Fake machines for the flash tests: a sysfs tree, mount and swap tables,
 * the device number of `/` and device "nodes" (plain sparse files) in a
 * temp dir, laid out as `systemView(root)` reads them. No test looks at a
 * real disk.
 */
import { mkdir, mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** One fake disk. Sizes in bytes (multiples of 512). */
export interface FakeDisk {
  readonly name: string;
  readonly size: number;
  readonly removable?: boolean;
  readonly ro?: boolean;
  readonly vendor?: string;
  readonly model?: string;
  /** `major:minor`; default 8:(16 × index). */
  readonly dev?: string;
  readonly partitions?: readonly { name: string; size: number; dev?: string; holders?: readonly string[] }[];
  readonly holders?: readonly string[];
  readonly slaves?: readonly string[];
  /** Make `<root>/dev/<name>` as a sparse file of `size` bytes. */
  readonly node?: boolean;
}

/** A fake machine's description. */
export interface FakeMachine {
  readonly disks: readonly FakeDisk[];
  /** Lines of /proc/self/mounts: `[source, target]`, sources under /dev are rewritten to the fake /dev. */
  readonly mounts?: readonly (readonly [string, string])[];
  readonly swaps?: readonly string[];
  /** `major:minor` of `/`, written to `<root>/root-dev`. */
  readonly rootDev?: string;
}

/** A fake machine on disk. */
export interface FakeRoot {
  readonly root: string;
  /** The fake node of a disk: `<root>/dev/<name>`. */
  node(name: string): string;
  /** Rewrites the mount table (e.g. after a fake umount). */
  setMounts(mounts: readonly (readonly [string, string])[]): Promise<void>;
  remove(): Promise<void>;
}

function escapeMount(s: string): string {
  return s.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, "0")}`);
}

/** Builds `machine` under a new temp dir. */
export async function makeFakeRoot(machine: FakeMachine): Promise<FakeRoot> {
  const root = await mkdtemp(join(tmpdir(), "cohesix-fake-sys-"));
  const dev = join(root, "dev");
  await mkdir(dev, { recursive: true });
  await mkdir(join(root, "proc", "self"), { recursive: true });
  const put = async (path: string, text: string) => {
    await mkdir(join(path, ".."), { recursive: true });
    await writeFile(path, `${text}\n`);
  };
  let i = 0;
  for (const d of machine.disks) {
    const dir = join(root, "sys", "block", d.name);
    await mkdir(join(dir, "holders"), { recursive: true });
    await mkdir(join(dir, "slaves"), { recursive: true });
    await put(join(dir, "size"), String(d.size / 512));
    await put(join(dir, "removable"), d.removable ? "1" : "0");
    await put(join(dir, "ro"), d.ro ? "1" : "0");
    await put(join(dir, "dev"), d.dev ?? `8:${16 * i}`);
    if (d.vendor !== undefined) await put(join(dir, "device", "vendor"), `${d.vendor}   `);
    if (d.model !== undefined) await put(join(dir, "device", "model"), `${d.model}   `);
    for (const h of d.holders ?? []) await mkdir(join(dir, "holders", h));
    for (const s of d.slaves ?? []) await mkdir(join(dir, "slaves", s));
    let n = 1;
    for (const p of d.partitions ?? []) {
      const pdir = join(dir, p.name);
      await mkdir(join(pdir, "holders"), { recursive: true });
      await put(join(pdir, "partition"), String(n));
      await put(join(pdir, "size"), String(p.size / 512));
      await put(join(pdir, "dev"), p.dev ?? `8:${16 * i + n}`);
      for (const h of p.holders ?? []) await mkdir(join(pdir, "holders", h));
      n++;
    }
    if (d.node) {
      const fh = await open(join(dev, d.name), "w");
      await fh.truncate(d.size);
      await fh.close();
    }
    i++;
  }
  const setMounts = async (mounts: readonly (readonly [string, string])[]) => {
    const lines = [
      "proc /proc proc rw 0 0",
      "sysfs /sys sysfs rw 0 0",
      ...mounts.map(([src, target]) => `${escapeMount(src.startsWith("/dev/") ? join(dev, src.slice(5)) : src)} ${escapeMount(target)} vfat rw 0 0`),
    ];
    await writeFile(join(root, "proc", "self", "mounts"), `${lines.join("\n")}\n`);
  };
  await setMounts(machine.mounts ?? []);
  const swapLines = ["Filename\tType\tSize\tUsed\tPriority", ...(machine.swaps ?? []).map((s) => `${s.startsWith("/dev/") ? join(dev, s.slice(5)) : s}\tpartition\t1024\t0\t-2`)];
  await writeFile(join(root, "proc", "swaps"), `${swapLines.join("\n")}\n`);
  if (machine.rootDev !== undefined) await writeFile(join(root, "root-dev"), `${machine.rootDev}\n`);
  return {
    root,
    node: (name) => join(dev, name),
    setMounts,
    remove: () => rm(root, { recursive: true, force: true }),
  };
}

/** The first `n` bytes of a file (fake disks are large sparse files). */
export async function head(path: string, n: number): Promise<Buffer> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;

/**
 * A laptop with an internal NVMe disk (root and /boot/efi on it), a 32 GB
 * SD card in a reader (sdb), and an empty loop device.
 */
export function laptop(extra: { sdMounted?: boolean; withNodes?: boolean } = {}): FakeMachine {
  return {
    disks: [
      {
        name: "nvme0n1",
        size: 512 * GiB,
        vendor: "0x144d",
        model: "Samsung SSD 980",
        dev: "259:0",
        partitions: [
          { name: "nvme0n1p1", size: 512 * MiB, dev: "259:1" },
          { name: "nvme0n1p2", size: 400 * GiB, dev: "259:2" },
        ],
      },
      {
        name: "sdb",
        size: 29.7 * GiB - ((29.7 * GiB) % 512),
        removable: true,
        vendor: "Generic",
        model: "STORAGE DEVICE",
        dev: "8:16",
        partitions: [
          { name: "sdb1", size: 256 * MiB, dev: "8:17" },
          { name: "sdb2", size: 10 * GiB, dev: "8:18" },
        ],
        node: extra.withNodes === true,
      },
      { name: "loop0", size: 0, dev: "7:0" },
      { name: "zram0", size: 4 * GiB, dev: "252:0" },
      { name: "mmcblk0boot0", size: 4 * MiB, dev: "179:8" },
    ],
    mounts: [
      ["/dev/nvme0n1p2", "/"],
      ["/dev/nvme0n1p1", "/boot/efi"],
      ...(extra.sdMounted ? ([["/dev/sdb1", "/media/me/BOOT DISK"]] as const) : []),
    ],
    rootDev: "259:2",
  };
}
