/**
 * Disk image assembly from boot files: the signed boot manifest, the FAT
 * boot partition (dosfstools + mtools), the ext4 data partition for the
 * commit log (e2fsprogs), the MBR (sfdisk), all in plain files — no root,
 * no loop device — then the detached signed `IMAGE.manifest.json`.
 *
 * Reproducible: every timestamp is the build's SOURCE_DATE_EPOCH; the
 * disk id, FAT volume id and ext4 UUID and hash seed are derived from the
 * boot manifest's digest, so the same inputs give the same bytes and two
 * different images do not share ids.
 * @module
 */
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, open, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { BOOT_MANIFEST_FORMAT, BOOT_MANIFEST_PATH, hashFile, signDocument, VERSION_PATTERN, type BootArtefact, type BootManifest } from "../root-task/index.ts";
import { InvalidError } from "../nine-door/index.ts";
import { FAT32_MIN_BYTES, makeFat } from "./fat.ts";
import { IMAGE_MANIFEST_FORMAT, manifestPathOf, sha256OfFile, type ImageManifest } from "./manifest.ts";
import { ALIGN_BYTES, layoutDisk, sfdiskScript, type PartitionTable } from "./partition.ts";
import { runTool } from "./tools.ts";

/** A file for the boot partition: its absolute path there and the host file. */
export interface BootFile {
  readonly path: string;
  readonly src: string;
}

/** Options of {@link writeDiskImage}. */
export interface WriteDiskImageOptions {
  /** Board name, recorded in both manifests. */
  readonly board: string;
  /** The files U-Boot reads (kernel, initramfs, extlinux.conf, a DTB). */
  readonly bootFiles: readonly BootFile[];
  /**
   * Files the appliance rewrites (the A/B boot state): on the boot partition
   * and in the image manifest (checked before flashing), never in the boot
   * manifest (checked at every boot).
   */
  readonly stateFiles?: readonly BootFile[];
  /** The release private key (32-byte seed) that signs both manifests. */
  readonly releaseKey: Uint8Array;
  /** `sha256:<hex>` of the initramfs, recorded in the image manifest. */
  readonly initramfsDigest: string;
  /** Free room in the boot partition beyond its files and slack, e.g. for an A/B slot's next, larger build. */
  readonly bootHeadroomBytes?: number;
  /** Size of the data partition in bytes; default 64 MiB. */
  readonly dataBytes?: number;
  /** Seconds since 1970 for every timestamp; default SOURCE_DATE_EPOCH or 0. */
  readonly epoch?: number;
  /** The release version, written into both manifests; none by default (the appliance reads 0.0.0). */
  readonly version?: string;
  /** Progress lines. */
  readonly say?: (line: string) => void;
}

/** What {@link writeDiskImage} wrote. */
export interface WrittenDiskImage {
  readonly image: string;
  readonly manifestPath: string;
  readonly manifest: ImageManifest;
  readonly bootManifest: BootManifest;
  readonly table: PartitionTable;
}

/** Room in the boot partition beyond its files: FAT tables, directories, cluster slack. */
const BOOT_SLACK_BYTES = 8 << 20;
const DEFAULT_DATA_BYTES = 64 << 20;

/**
 * SOURCE_DATE_EPOCH from the environment, or 0; refuses a malformed one.
 *
 * @example
 * ```ts
 * buildEpoch({ SOURCE_DATE_EPOCH: "1700000000" }); // 1700000000
 * ```
 */
export function buildEpoch(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === "") return 0;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidError(`SOURCE_DATE_EPOCH ${JSON.stringify(v)} must be a whole number of seconds`);
  return n;
}

/** FAT cannot store dates before 1980: timestamps are clamped to 1980-01-01. */
const FAT_EPOCH = 315532800;

/** A UUID (version 4 layout) from 16 bytes of a digest. */
function uuidOf(bytes: Buffer): string {
  const b = Buffer.from(bytes.subarray(0, 16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * Copies `src` into `image` at `offset`, skipping all-zero blocks: the image
 * was created by truncation, so skipped blocks read as zeros and the file
 * stays sparse.
 */
async function copyInto(image: string, offset: number, src: string): Promise<void> {
  const out = await open(image, "r+");
  const input = await open(src, "r");
  const buf = Buffer.alloc(1 << 20);
  try {
    for (let pos = 0; ; ) {
      const { bytesRead } = await input.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      const chunk = buf.subarray(0, bytesRead);
      for (let at = 0; at < bytesRead; at += 65536) {
        const block = chunk.subarray(at, Math.min(bytesRead, at + 65536));
        if (block.some((b) => b !== 0)) await out.write(block, 0, block.length, offset + pos + at);
      }
      pos += bytesRead;
    }
  } finally {
    await input.close();
    await out.close();
  }
}

/**
 * Writes the disk image `out` and `out.manifest.json`: the boot partition
 * holds `bootFiles` and the signed boot manifest at
 * `/cohesix/manifest.json`; the data partition is an empty ext4 file
 * system labelled `cohesix-state`. The image appears by rename, so a
 * reader never sees half of one.
 *
 * @example
 * ```ts
 * const written = await writeDiskImage("out/cohesix.img", {
 *   board: "aarch64-virt", releaseKey, initramfsDigest: "sha256:…",
 *   bootFiles: [{ path: "/Image", src: "Image" }, { path: "/initrd.gz", src: "initramfs.cpio.gz" }, { path: "/extlinux/extlinux.conf", src: "extlinux.conf" }],
 * });
 * written.manifest.bootManifest; // "sha256:…", shown in /proc/boot once booted
 * ```
 */
export async function writeDiskImage(out: string, options: WriteDiskImageOptions): Promise<WrittenDiskImage> {
  const say = options.say ?? (() => {});
  const epoch = Math.max(options.epoch ?? buildEpoch(), FAT_EPOCH);
  if (options.version !== undefined && !VERSION_PATTERN.test(options.version)) throw new InvalidError(`disk image: version ${JSON.stringify(options.version)} must be dotted whole numbers such as 1.2.0 (one to four parts)`);
  const version = options.version !== undefined ? { version: options.version } : {};
  const paths = new Set<string>();
  for (const f of [...options.bootFiles, ...(options.stateFiles ?? [])]) {
    if (!/^\/[A-Za-z0-9._/-]+$/.test(f.path) || f.path.split("/").includes("..")) throw new InvalidError(`disk image: boot file path ${JSON.stringify(f.path)} must be absolute, letters, digits, . _ - /`);
    if (f.path === BOOT_MANIFEST_PATH) throw new InvalidError(`disk image: ${BOOT_MANIFEST_PATH} is written by the builder`);
    if (paths.has(f.path)) throw new InvalidError(`disk image: boot file ${f.path} given twice`);
    paths.add(f.path);
  }
  await mkdir(dirname(out), { recursive: true });
  const work = await mkdtemp(join(dirname(out), `.${basename(out)}.work-`));
  try {
    const artefacts: BootArtefact[] = [];
    for (const f of options.bootFiles) {
      const h = await hashFile(f.src).catch((err: Error) => {
        throw new InvalidError(`disk image: boot file ${f.src}: ${err.message}`);
      });
      artefacts.push({ path: f.path, size: h.size, sha256: h.sha256 });
    }
    artefacts.sort((a, b) => (a.path < b.path ? -1 : 1));
    const bootManifest = signDocument({ format: BOOT_MANIFEST_FORMAT, board: options.board, ...version, artefacts }, options.releaseKey) as BootManifest;
    const bootManifestText = `${JSON.stringify(bootManifest, null, 2)}\n`;
    const bootManifestSrc = join(work, "boot-manifest.json");
    await writeFile(bootManifestSrc, bootManifestText);
    const seed = createHash("sha256").update(bootManifestText).digest();
    const bootDigest = `sha256:${seed.toString("hex")}`;

    const stateArtefacts: BootArtefact[] = [];
    for (const f of options.stateFiles ?? []) stateArtefacts.push({ path: f.path, ...(await hashFile(f.src)) });
    const files = [...options.bootFiles, ...(options.stateFiles ?? []), { path: BOOT_MANIFEST_PATH, src: bootManifestSrc }];
    const contentBytes = [...artefacts, ...stateArtefacts].reduce((n, a) => n + a.size, 0) + bootManifestText.length;
    const table = layoutDisk({ bootBytes: Math.max(FAT32_MIN_BYTES, Math.ceil(contentBytes * 1.02) + BOOT_SLACK_BYTES + Math.ceil((options.bootHeadroomBytes ?? 0) / 1024) * 1024), dataBytes: options.dataBytes ?? DEFAULT_DATA_BYTES, diskId: seed.readUInt32LE(0) });
    const [boot, data] = table.partitions as [PartitionTable["partitions"][0], PartitionTable["partitions"][0]];

    say(`boot partition: FAT, ${(boot.size / ALIGN_BYTES).toFixed(0)} MiB, ${files.length} files`);
    const bootFat = join(work, "boot.fat");
    await makeFat(bootFat, { size: boot.size, label: "COHESIX", volumeId: seed.readUInt32LE(4), epoch, files });

    say(`data partition: ext4 (cohesix-state), ${(data.size / ALIGN_BYTES).toFixed(0)} MiB`);
    const dataFs = join(work, "data.ext4");
    const fh = await open(dataFs, "w");
    await fh.truncate(data.size);
    await fh.close();
    await runTool(
      "mkfs.ext4",
      ["-q", "-F", "-L", "cohesix-state", "-U", uuidOf(seed.subarray(8)), "-E", `hash_seed=${uuidOf(seed.subarray(16))},lazy_itable_init=0,lazy_journal_init=0`, "-T", "default", dataFs],
      { env: { E2FSPROGS_FAKE_TIME: String(epoch) } },
    );

    say(`partition table: MBR, disk id 0x${table.diskId.toString(16).padStart(8, "0")}, ${(table.size / ALIGN_BYTES).toFixed(0)} MiB`);
    const tmpImage = join(work, "disk.img");
    const img = await open(tmpImage, "w");
    await img.truncate(table.size);
    await img.close();
    await runTool("sfdisk", ["--quiet", "--no-reread", "--no-tell-kernel", tmpImage], { input: sfdiskScript(table) });
    await copyInto(tmpImage, boot.start, bootFat);
    await copyInto(tmpImage, data.start, dataFs);

    const whole = await sha256OfFile(tmpImage);
    const bootArtefacts = [...artefacts, ...stateArtefacts, { path: BOOT_MANIFEST_PATH, size: bootManifestText.length, sha256: seed.toString("hex") }].sort((a, b) => (a.path < b.path ? -1 : 1));
    const manifest = signDocument(
      {
        format: IMAGE_MANIFEST_FORMAT,
        board: options.board,
        ...version,
        created: new Date(epoch * 1000).toISOString(),
        image: { file: basename(out), size: whole.size, sha256: whole.sha256 },
        partitions: table.partitions.map((p) => ({ ...p })),
        bootManifest: bootDigest,
        initramfs: options.initramfsDigest,
        artefacts: bootArtefacts,
      },
      options.releaseKey,
    ) as ImageManifest;
    const manifestPath = manifestPathOf(out);
    await writeFile(join(work, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    await rename(tmpImage, out);
    await rename(join(work, "manifest.json"), manifestPath);
    say(`image ${out}: ${(whole.size / ALIGN_BYTES).toFixed(0)} MiB, sha256 ${whole.sha256}`);
    return { image: out, manifestPath, manifest, bootManifest, table };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

