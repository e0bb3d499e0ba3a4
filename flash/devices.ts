/**
 * Block-device discovery for `cohesix flash`: which disks exist, how big,
 * removable or not, mounted where, and which one holds `/`.
 *
 * Everything is read through a {@link SystemView} — a sysfs tree, a mount
 * table, a swap table and a device folder — so tests build fake trees in a
 * temp dir and never look at a real disk. On a real machine the view is the
 * running system: `/sys`, `/proc/self/mounts`, `/proc/swaps`, `/dev`, and
 * the device number of `/` from stat(2).
 *
 * @example
 * ```ts
 * const disks = await listDisks(systemView());
 * for (const d of disks) console.log(d.path, formatBytes(d.sizeBytes), d.model, d.removable);
 * ```
 * @module
 */
import { readdir, readFile, realpath, stat } from "node:fs/promises";
import { basename, join } from "node:path";

/** Where the system's facts are read from. */
export interface SystemView {
  /** The sysfs mount (`/sys`): `block/<disk>/{size,removable,ro,dev,device/model,…}`. */
  readonly sysfs: string;
  /** The mount table (`/proc/self/mounts`). */
  readonly mounts: string;
  /** The swap table (`/proc/swaps`); a missing file means no swap. */
  readonly swaps: string;
  /** The device-node folder (`/dev`): a disk `sdb` is written as `<dev>/sdb`. */
  readonly dev: string;
  /**
   * `major:minor` of the file system holding `/` (stat(2) of `/` on the
   * real system). Undefined: only the mount table says which disk holds `/`.
   */
  readonly rootDev?: string;
  /** True when this is the running system, where device nodes must be block devices. */
  readonly real: boolean;
}

/**
 * The running system, or a fake tree under `root` (`root/sys`,
 * `root/proc/self/mounts`, `root/proc/swaps`, `root/dev`; `rootDev` from
 * `root/root-dev` when that file exists).
 *
 * @example
 * ```ts
 * const real = systemView();
 * const fake = systemView("/tmp/fake-machine");
 * ```
 */
export function systemView(root = "/", options: { rootDev?: string } = {}): SystemView {
  if (root === "/") {
    return { sysfs: "/sys", mounts: "/proc/self/mounts", swaps: "/proc/swaps", dev: "/dev", rootDev: options.rootDev ?? "stat", real: true };
  }
  return {
    sysfs: join(root, "sys"),
    mounts: join(root, "proc", "self", "mounts"),
    swaps: join(root, "proc", "swaps"),
    dev: join(root, "dev"),
    rootDev: options.rootDev ?? `file:${join(root, "root-dev")}`,
    real: false,
  };
}

/** A mounted file system on a disk or one of its partitions. */
export interface Mount {
  /** The block device mounted (`/dev/sdb1`). */
  readonly source: string;
  /** Where (`/media/user/BOOT`). */
  readonly target: string;
}

/** One partition of a disk. */
export interface DiskPartition {
  readonly name: string;
  readonly path: string;
  readonly dev: string;
  readonly sizeBytes: number;
}

/** One whole disk as sysfs and the mount table describe it. */
export interface Disk {
  /** Kernel name (`sdb`, `mmcblk0`). */
  readonly name: string;
  /** Device node (`/dev/sdb`). */
  readonly path: string;
  /** `major:minor`. */
  readonly dev: string;
  readonly sizeBytes: number;
  /** Vendor and model from `device/vendor` and `device/model`, or "". */
  readonly model: string;
  /** `removable` is 1, or the disk is an SD/MMC card (`mmcblk*`). */
  readonly removable: boolean;
  /** `ro` is 1 (a write-protect switch, a locked card). */
  readonly readOnly: boolean;
  readonly partitions: readonly DiskPartition[];
  /** Mounts of the disk itself or of any of its partitions. */
  readonly mounts: readonly Mount[];
  /** Mount points among {@link SYSTEM_MOUNTS}, and `/` when the disk holds the root file system. */
  readonly systemMounts: readonly string[];
  /** Active swap on the disk or its partitions. */
  readonly swap: readonly string[];
  /** Devices stacked on it (`dm-0` for LVM/LUKS, `md0` for RAID), from `holders/`. */
  readonly holders: readonly string[];
}

/**
 * Mount points that make a disk the system's own: a disk holding one of
 * them is refused even with `--unmount`.
 */
export const SYSTEM_MOUNTS: readonly string[] = ["/", "/boot", "/boot/efi", "/efi", "/usr", "/var", "/home", "/opt", "/srv"];

/** Kernel names that are never disks to flash: RAM disks, zram, eMMC boot and RPMB areas. */
const NOT_DISKS = /^(ram\d+|zram\d+|mmcblk\d+(boot\d+|rpmb))$/;

const SECTOR = 512;

async function readText(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, "utf8")).trim();
  } catch {
    return undefined;
  }
}

async function listDir(path: string): Promise<string[]> {
  try {
    return (await readdir(path)).sort();
  } catch {
    return [];
  }
}

/** Decodes the octal escapes of /proc/mounts fields (`\040` is a space). */
function unescapeMount(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parses a mount table: one `source target type options …` line per mount. */
export function parseMounts(text: string): Mount[] {
  const out: Mount[] = [];
  for (const line of text.split("\n")) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 2 || fields[0] === "") continue;
    out.push({ source: unescapeMount(fields[0]!), target: unescapeMount(fields[1]!) });
  }
  return out;
}

/** Parses /proc/swaps: a header line, then `filename type size used priority`. */
export function parseSwaps(text: string): string[] {
  return text
    .split("\n")
    .slice(1)
    .map((l) => l.trim().split(/\s+/)[0] ?? "")
    .filter((f) => f !== "")
    .map(unescapeMount);
}

/** `major:minor` of a stat(2) device number (Linux's encoding). */
export function devNumber(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n);
  const minor = (dev & 0xffn) | ((dev >> 12n) & 0xffffff00n);
  return `${major}:${minor}`;
}

async function resolveRootDev(view: SystemView): Promise<string | undefined> {
  const spec = view.rootDev;
  if (spec === undefined) return undefined;
  if (spec === "stat") return devNumber((await stat("/", { bigint: true })).dev);
  if (spec.startsWith("file:")) return readText(spec.slice(5));
  return spec;
}

/** The kernel name a mount or swap source names, when it is a node in the view's device folder. */
async function sourceName(view: SystemView, source: string): Promise<string | undefined> {
  if (!source.startsWith("/")) return undefined;
  let path = source;
  if (view.real) {
    // /dev/disk/by-uuid/… and /dev/mapper/… are symlinks to the kernel name.
    try {
      path = await realpath(source);
    } catch {
      return undefined;
    }
  }
  const dev = view.dev.endsWith("/") ? view.dev : `${view.dev}/`;
  return path.startsWith(dev) ? path.slice(dev.length) : undefined;
}

interface RawDisk {
  readonly name: string;
  readonly dev: string;
  readonly sizeBytes: number;
  readonly model: string;
  readonly removable: boolean;
  readonly readOnly: boolean;
  readonly partitions: DiskPartition[];
  readonly holders: string[];
  readonly slaves: string[];
}

async function readDisk(view: SystemView, name: string): Promise<RawDisk> {
  const dir = join(view.sysfs, "block", name);
  const sectors = Number(await readText(join(dir, "size")) ?? "0");
  // virtio and NVMe give a PCI vendor id (0x1af4) here, not a name.
  const vendor = ((await readText(join(dir, "device", "vendor"))) ?? "").replace(/^0x[0-9a-f]+$/i, "");
  const model = (await readText(join(dir, "device", "model"))) ?? (await readText(join(dir, "device", "name"))) ?? "";
  const partitions: DiskPartition[] = [];
  const holders = await listDir(join(dir, "holders"));
  for (const entry of await listDir(dir)) {
    if ((await readText(join(dir, entry, "partition"))) === undefined) continue;
    const partSectors = Number((await readText(join(dir, entry, "size"))) ?? "0");
    partitions.push({ name: entry, path: join(view.dev, entry), dev: (await readText(join(dir, entry, "dev"))) ?? "", sizeBytes: partSectors * SECTOR });
    holders.push(...(await listDir(join(dir, entry, "holders"))));
  }
  return {
    name,
    dev: (await readText(join(dir, "dev"))) ?? "",
    sizeBytes: Number.isFinite(sectors) ? sectors * SECTOR : 0,
    model: [vendor, model].filter((s) => s !== "").join(" "),
    removable: (await readText(join(dir, "removable"))) === "1" || /^mmcblk\d+$/.test(name),
    readOnly: (await readText(join(dir, "ro"))) === "1",
    partitions,
    holders,
    slaves: await listDir(join(dir, "slaves")),
  };
}

/**
 * Every disk in the view with a non-zero size (unused loop devices and RAM
 * disks are left out), with its partitions, mounts, swap, holders and
 * whether it holds a system mount such as `/`.
 *
 * The disk holding `/` is found twice over: the `rootDev` device number
 * mapped to a disk or partition (following `slaves/` through LVM or LUKS),
 * and the mount table's source for `/`. Either is enough to mark it.
 */
export async function listDisks(view: SystemView): Promise<Disk[]> {
  const names = (await listDir(join(view.sysfs, "block"))).filter((n) => !NOT_DISKS.test(n));
  const raw = await Promise.all(names.map((n) => readDisk(view, n)));

  // Kernel name (disk, partition or stacked device) → the disks under it.
  const byName = new Map<string, RawDisk>(raw.map((d) => [d.name, d]));
  const diskOf = (name: string, seen = new Set<string>()): string[] => {
    if (seen.has(name)) return [];
    seen.add(name);
    const disk = byName.get(name) ?? raw.find((d) => d.partitions.some((p) => p.name === name));
    if (disk === undefined) return [];
    if (disk.slaves.length > 0 && disk.name === name) return disk.slaves.flatMap((s) => diskOf(s, seen));
    return [disk.name];
  };
  const byDev = new Map<string, string>();
  for (const d of raw) {
    if (d.dev) byDev.set(d.dev, d.name);
    for (const p of d.partitions) if (p.dev) byDev.set(p.dev, p.name);
  }

  const mounts = parseMounts((await readText(view.mounts)) ?? "");
  const swaps = parseSwaps((await readText(view.swaps)) ?? "");
  const mountsOf = new Map<string, Mount[]>();
  const systemOf = new Map<string, Set<string>>();
  const mark = (disk: string, what: string) => {
    const set = systemOf.get(disk) ?? new Set<string>();
    set.add(what);
    systemOf.set(disk, set);
  };
  for (const m of mounts) {
    const name = await sourceName(view, m.source);
    if (name === undefined) continue;
    for (const disk of diskOf(name)) {
      mountsOf.set(disk, [...(mountsOf.get(disk) ?? []), m]);
      if (SYSTEM_MOUNTS.includes(m.target)) mark(disk, m.target);
    }
  }
  const rootDev = await resolveRootDev(view);
  const rootName = rootDev === undefined ? undefined : byDev.get(rootDev);
  if (rootName !== undefined) for (const disk of diskOf(rootName)) mark(disk, "/");
  const swapOf = new Map<string, string[]>();
  for (const s of swaps) {
    const name = await sourceName(view, s);
    if (name === undefined) continue;
    for (const disk of diskOf(name)) swapOf.set(disk, [...(swapOf.get(disk) ?? []), s]);
  }

  return raw
    .filter((d) => d.sizeBytes > 0)
    .map((d) => ({
      name: d.name,
      path: join(view.dev, d.name),
      dev: d.dev,
      sizeBytes: d.sizeBytes,
      model: d.model,
      removable: d.removable,
      readOnly: d.readOnly,
      partitions: d.partitions,
      mounts: mountsOf.get(d.name) ?? [],
      systemMounts: [...(systemOf.get(d.name) ?? [])].sort(),
      swap: swapOf.get(d.name) ?? [],
      holders: d.holders,
    }));
}

/**
 * The kernel name a `--device` argument names: `/dev/sdb`, `sdb`, or a
 * symlink such as `/dev/disk/by-id/usb-…` on the real system.
 */
export async function deviceName(view: SystemView, arg: string): Promise<string> {
  if (!arg.includes("/")) return arg;
  const name = await sourceName(view, arg);
  return name ?? basename(arg);
}

/** Human size in binary units: `29.7 GiB`, `512 MiB`, `900 B`. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  if (u === 0) return `${n} B`;
  return `${v >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1)} ${units[u]}`;
}
