/**
 * The FAT boot partition, made and read with Debian's dosfstools and
 * mtools — no root, no loop device. Made reproducible: a fixed volume id,
 * `--invariant`, and every timestamp from SOURCE_DATE_EPOCH (mtools takes
 * directory and file times from it).
 * @module
 */
import { InvalidError } from "../nine-door/index.ts";
import { runTool, runToolBytes } from "./tools.ts";

/** The smallest FAT32 partition made here: 65,525 clusters and more need about 33 MiB; 64 MiB leaves room. */
export const FAT32_MIN_BYTES = 64 << 20;

/** A file to put in the FAT partition: its absolute path there and the host file. */
export interface FatFile {
  readonly path: string;
  readonly src: string;
}

/** Options of {@link makeFat}. */
export interface MakeFatOptions {
  /** Partition size in bytes (a multiple of 1 KiB). */
  readonly size: number;
  /** Volume label, up to 11 characters. */
  readonly label: string;
  /** 32-bit volume id (serial). */
  readonly volumeId: number;
  /** Seconds since 1970 for every timestamp. */
  readonly epoch: number;
  readonly files: readonly FatFile[];
}

const mtoolsEnv = (epoch: number): Record<string, string> => ({ SOURCE_DATE_EPOCH: String(epoch), MTOOLS_SKIP_CHECK: "1" });

/**
 * Writes a FAT file system of `size` bytes to the file `out` and copies the
 * files in, parents first.
 *
 * @example
 * ```ts
 * await makeFat("boot.fat", { size: 96 << 20, label: "COHESIX", volumeId: 0x0c0e5100, epoch: 1700000000, files: [{ path: "/Image", src: "out/Image" }] });
 * ```
 */
export async function makeFat(out: string, options: MakeFatOptions): Promise<void> {
  if (options.size % 1024 !== 0) throw new InvalidError(`FAT partition size ${options.size} is not a multiple of 1 KiB`);
  if (!/^[A-Z0-9_-]{1,11}$/.test(options.label)) throw new InvalidError(`FAT label ${JSON.stringify(options.label)}: up to 11 of A-Z 0-9 _ -`);
  const env = mtoolsEnv(options.epoch);
  const volumeId = options.volumeId.toString(16).padStart(8, "0");
  if (options.size < FAT32_MIN_BYTES) throw new InvalidError(`FAT partition size ${options.size} is below ${FAT32_MIN_BYTES / (1 << 20)} MiB, the least a FAT32 file system of 512-byte clusters needs`);
  // FAT32, to match the partition type (0x0c) boot ROMs and U-Boot look for.
  await runTool("mkfs.vfat", ["-C", "-F", "32", "--invariant", "-i", volumeId, "-n", options.label, out, String(options.size / 1024)], { env });
  const dirs = new Set<string>();
  for (const f of options.files) {
    const parts = f.path.split("/").filter(Boolean);
    for (let i = 1; i < parts.length; i++) dirs.add(`/${parts.slice(0, i).join("/")}`);
  }
  const sortedDirs = [...dirs].sort((a, b) => a.split("/").length - b.split("/").length || (a < b ? -1 : 1));
  if (sortedDirs.length > 0) await runTool("mmd", ["-i", out, ...sortedDirs.map((d) => `::${d}`)], { env });
  for (const f of options.files) await runTool("mcopy", ["-i", out, f.src, `::${f.path}`], { env });
}

/** `IMAGE@@OFFSET`: mtools' way to open a partition inside a disk image. */
const at = (image: string, offset: number): string => `${image}@@${offset}`;

/**
 * The files (not directories) of a FAT partition inside a disk image,
 * recursively, as absolute paths.
 *
 * @example
 * ```ts
 * await listFat("cohesix.img", 1 << 20); // ["/Image", "/cohesix/manifest.json", "/extlinux/extlinux.conf", "/initrd.gz"]
 * ```
 */
export async function listFat(image: string, offset: number): Promise<string[]> {
  const out = await runTool("mdir", ["-i", at(image, offset), "-/", "-b", "::/"], { env: { MTOOLS_SKIP_CHECK: "1" } });
  return out
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith("::/") && !l.endsWith("/"))
    .map((l) => l.slice(2))
    .sort();
}

/**
 * Reads one file of a FAT partition inside a disk image.
 *
 * @example
 * ```ts
 * const conf = await readFat("cohesix.img", 1 << 20, "/extlinux/extlinux.conf");
 * ```
 */
export async function readFat(image: string, offset: number, path: string): Promise<Uint8Array> {
  return runToolBytes("mcopy", ["-n", "-i", at(image, offset), `::${path}`, "-"], { env: { MTOOLS_SKIP_CHECK: "1" } });
}
