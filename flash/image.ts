/**
 * A board's flashable disk image: the initramfs built for the disk (the
 * board's modules plus the boot partition's FAT modules, and the release
 * public key at `/etc/cohesix/release.pub` for the boot-time check), the
 * kernel, U-Boot's `extlinux/extlinux.conf`, then {@link writeDiskImage}.
 *
 * The disk itself is described by `boards/<name>/disk.json` (see
 * {@link DiskSpec}): the guest's name for the disk, the data partition's
 * size, the modules that mount the boot partition, the firmware QEMU boots
 * it with, and an optional DTB.
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Board } from "../boards/index.ts";
import { InvalidError, NotFoundError } from "../nine-door/index.ts";
import { BOOT_MANIFEST_FORMAT, formatPublicKey, hashFile, publicKeyOf, readPrivateKey, signDocument, VERSION_PATTERN } from "../root-task/index.ts";
import { DEFAULT_UPDATE_LIMITS, SLOT_FILES, SLOTS, STATE_FILES, bootScript, formatBootState, initialBootState } from "../update/index.ts";
import { buildImage, findModules, type ExtraFile, type ImageArtefacts, type ImageFleet, type ImageHealth, type ImageProgram } from "../rootfs/index.ts";
import { buildEpoch, writeDiskImage, type BootFile, type WrittenDiskImage } from "./disk.ts";
import { partitionDevice } from "./partition.ts";
import { runTool } from "./tools.ts";

/** `boards/<name>/disk.json`: how the board boots a flashed disk. */
export interface DiskSpec {
  /** The guest's name for the whole disk, e.g. `/dev/vda` or `/dev/mmcblk0`. */
  readonly device: string;
  /** Size of the data partition (commit log) in MiB. */
  readonly dataMb: number;
  /** Kernel modules that mount the FAT boot partition, in load order (empty when built in). */
  readonly modules: readonly string[];
  /** The firmware QEMU boots the disk with (`-bios`), and its Debian package. */
  readonly firmware?: { readonly path: string; readonly package: string };
  /** QEMU's disk device, e.g. `virtio-blk-device`. */
  readonly qemuDevice?: string;
  /** QEMU machine options for the firmware boot, e.g. `acpi=off` (so the power key is the GPIO key a device-tree kernel sees). */
  readonly qemuMachineOptions?: string;
  /** A device tree (relative to the board folder) copied to `/board.dtb` and named by `fdt` in extlinux.conf. */
  readonly dtb?: string;
  /**
   * The hardware watchdog's kernel module an A/B image loads (after
   * `modules`), e.g. `i6300esb` for QEMU's `-device i6300esb`: the driver
   * binds when the device exists, and the root task feeds `/dev/watchdog`
   * so a hung kernel or root task reboots into U-Boot, which counts the try.
   */
  readonly watchdogModule?: string;
}

/** Where the guest mounts the boot partition (read-only) for the boot-time check. */
export const GUEST_BOOT_DIR = "/boot";
/** Where the image carries the release public key. */
export const GUEST_RELEASE_PUB = "/etc/cohesix/release.pub";

/**
 * Reads and validates a board's `disk.json`; refuses unknown fields by name.
 *
 * @example
 * ```ts
 * const disk = loadDiskSpec(loadBoard("aarch64-virt"));
 * disk.device; // "/dev/vda"
 * ```
 */
export function loadDiskSpec(board: Pick<Board, "name" | "dir">): DiskSpec {
  const source = join(board.dir, "disk.json");
  if (!existsSync(source)) throw new NotFoundError(`board ${board.name} has no disk image description (${source}): it cannot be flashed`);
  const fail = (detail: string): never => {
    throw new InvalidError(`board ${source}: ${detail}`);
  };
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(source, "utf8"));
  } catch (err) {
    return fail(`not valid JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return fail("must be a JSON object");
  const o = raw as Record<string, unknown>;
  const known = ["description", "device", "dataMb", "modules", "firmware", "qemuDevice", "qemuMachineOptions", "dtb", "watchdogModule"];
  for (const k of Object.keys(o)) if (!known.includes(k)) fail(`${k} is not a known field (known: ${known.join(", ")})`);
  if (typeof o.device !== "string" || !/^\/dev\/[A-Za-z0-9]+$/.test(o.device)) fail("device must be a device path such as /dev/vda or /dev/mmcblk0");
  if (typeof o.dataMb !== "number" || !Number.isSafeInteger(o.dataMb) || o.dataMb < 8 || o.dataMb > 1 << 20) fail("dataMb must be an integer from 8 to 1048576");
  if (!Array.isArray(o.modules) || o.modules.some((m) => typeof m !== "string" || !/^[A-Za-z0-9_-]+$/.test(m))) fail("modules must be an array of module names");
  let firmware: DiskSpec["firmware"];
  if (o.firmware !== undefined) {
    const f = o.firmware as Record<string, unknown>;
    if (typeof f !== "object" || f === null || typeof f.path !== "string" || typeof f.package !== "string") fail("firmware must be { path, package }");
    firmware = { path: f.path as string, package: f.package as string };
  }
  if (o.qemuDevice !== undefined && typeof o.qemuDevice !== "string") fail("qemuDevice must be a string");
  if (o.qemuMachineOptions !== undefined && (typeof o.qemuMachineOptions !== "string" || !/^[a-z0-9_-]+=[A-Za-z0-9_-]+(,[a-z0-9_-]+=[A-Za-z0-9_-]+)*$/.test(o.qemuMachineOptions))) fail("qemuMachineOptions must be KEY=VALUE[,KEY=VALUE…]");
  if (o.dtb !== undefined && (typeof o.dtb !== "string" || o.dtb.includes(".."))) fail("dtb must be a file in the board folder");
  if (o.watchdogModule !== undefined && (typeof o.watchdogModule !== "string" || !/^[A-Za-z0-9_-]+$/.test(o.watchdogModule))) fail("watchdogModule must be a module name");
  return {
    device: o.device as string,
    dataMb: o.dataMb as number,
    modules: o.modules as string[],
    ...(firmware ? { firmware } : {}),
    ...(typeof o.qemuDevice === "string" ? { qemuDevice: o.qemuDevice } : {}),
    ...(typeof o.qemuMachineOptions === "string" ? { qemuMachineOptions: o.qemuMachineOptions } : {}),
    ...(typeof o.dtb === "string" ? { dtb: o.dtb } : {}),
    ...(typeof o.watchdogModule === "string" ? { watchdogModule: o.watchdogModule } : {}),
  };
}

/**
 * U-Boot's `extlinux/extlinux.conf` (the distro boot format): one entry,
 * booted at once.
 *
 * @example
 * ```ts
 * extlinuxConf({ append: "console=ttyAMA0 rdinit=/init" });
 * // "default cohesix\ntimeout 0\n\nlabel cohesix\n  kernel /Image\n  initrd /initrd.gz\n  append console=ttyAMA0 rdinit=/init\n"
 * ```
 */
export function extlinuxConf(options: { append: string; kernel?: string; initrd?: string; fdt?: string; label?: string }): string {
  const label = options.label ?? "cohesix";
  return [
    "# Cohesix: generated by `cohesix image`.",
    `default ${label}`,
    "timeout 0",
    "",
    `label ${label}`,
    `  kernel ${options.kernel ?? "/Image"}`,
    `  initrd ${options.initrd ?? "/initrd.gz"}`,
    ...(options.fdt ? [`  fdt ${options.fdt}`] : []),
    `  append ${options.append}`,
    "",
  ].join("\n");
}

/** Options of {@link buildBoardImage}. */
export interface BuildBoardImageOptions {
  readonly board: Board;
  /** The board's fetched artefacts (`fetchArtefacts`). */
  readonly artefacts: ImageArtefacts;
  /** The queen public key baked into the initramfs. */
  readonly queenPub: string;
  /** The release private key file that signs the manifests. */
  readonly releaseKey: string;
  /** The cohesix package root (sources of the bundles). */
  readonly root: string;
  /** Folder for the initramfs, kernel and extlinux.conf of this build. */
  readonly workDir: string;
  /** Cache of the runtime part and the stripped Node. */
  readonly cacheDir?: string;
  readonly extra?: readonly ExtraFile[];
  /** An appliance project's own workers, carried besides the built-in ones (see `buildImage`). */
  readonly programs?: Readonly<Record<string, ImageProgram>>;
  /** A try boot's health check (the project's `health`). */
  readonly health?: ImageHealth;
  /** The project's fleet block, baked into the initramfs (see `buildImage`). */
  readonly fleet?: ImageFleet;
  readonly policy?: "open" | "signed-ctl";
  /** Data partition size in MiB; default the board's. */
  readonly dataMb?: number;
  /** Extra kernel command line words. */
  readonly append?: string;
  /**
   * Two boot slots (`/a/…`, `/b/…`, both from this build, A active) and the
   * try-counting `/boot.scr` with its state files instead of
   * `extlinux.conf` (see docs/updates.md).
   */
  readonly ab?: boolean;
  /** Seconds since 1970 for every timestamp; default SOURCE_DATE_EPOCH. */
  readonly epoch?: number;
  /** The release version written into the boot manifests (each slot's and the image's); none by default (read as 0.0.0). */
  readonly version?: string;
  /** The arm64 strip program, or false to keep Node as fetched (see `buildImage`). */
  readonly strip?: string | false;
  readonly say?: (line: string) => void;
}

/** What {@link buildBoardImage} made. */
export interface BuiltBoardImage extends WrittenDiskImage {
  /** The kernel command line in extlinux.conf (or in boot.scr, before the slot words). */
  readonly cmdline: string;
  readonly disk: DiskSpec;
}

/** Options of {@link buildSlot}: what an image's boot slot and a bundle share. */
export type BuildSlotOptions = Omit<BuildBoardImageOptions, "dataMb" | "ab" | "epoch" | "version"> & {
  /** A slot of an A/B image (or a bundle for one): its init also loads the board's watchdog driver (`disk.json`'s `watchdogModule`). */
  readonly abSlot?: boolean;
};

/** A slot's build: the disk initramfs and kernel, and the kernel command line a disk boot passes. */
export interface BuiltSlot {
  readonly kernel: string;
  readonly initrd: string;
  /** The initramfs manifest's digest (`sha256:…`). */
  readonly initramfsDigest: string;
  readonly cmdline: string;
  readonly disk: DiskSpec;
  readonly releaseKey: Uint8Array;
}

/**
 * Builds what one boot slot holds: the initramfs for a disk boot (the
 * board's modules plus the boot partition's, and the release public key
 * for the boot-time check) and the kernel. `cohesix image` writes it into
 * a disk image, `cohesix bundle` into an update bundle.
 *
 * @example
 * ```ts
 * const slot = await buildSlot({ board, artefacts, queenPub, releaseKey: "release.key", root: packageRoot(), workDir: ".cohesix/disk/aarch64-virt" });
 * slot.initrd; // ".cohesix/disk/aarch64-virt/initramfs/initramfs.cpio.gz"
 * ```
 */
export async function buildSlot(options: BuildSlotOptions): Promise<BuiltSlot> {
  const { board } = options;
  const say = options.say ?? (() => {});
  const disk = loadDiskSpec(board);
  const releaseKey = await readPrivateKey(options.releaseKey);
  await mkdir(options.workDir, { recursive: true });
  const releasePub = join(options.workDir, "release.pub");
  await writeFile(releasePub, formatPublicKey(publicKeyOf(releaseKey)));

  // The disk's initramfs loads the board's modules, then the boot partition's.
  const known = new Set(board.kernel.modules.map((m) => m.replaceAll("-", "_")));
  // An A/B image also loads the watchdog's driver, so a try that hangs reboots
  // (a kernel without that module builds, with a note: it has no watchdog).
  const watchdog = options.abSlot && disk.watchdogModule ? disk.watchdogModule : undefined;
  const hasWatchdog = watchdog !== undefined && (await findModules(options.artefacts.modules, [watchdog], options.artefacts.kernelVersion).then(() => true, () => false));
  if (watchdog !== undefined && !hasWatchdog) say(`note: kernel ${options.artefacts.kernelVersion} has no ${watchdog} module: a hung try boot is not rebooted by a watchdog`);
  const wanted = [...disk.modules, ...(hasWatchdog ? [watchdog] : [])];
  const modules = [...board.kernel.modules, ...wanted.filter((m) => !known.has(m.replaceAll("-", "_")))];
  const built = await buildImage({
    board: { ...board, kernel: { ...board.kernel, modules } },
    artefacts: options.artefacts,
    queenPub: options.queenPub,
    outDir: join(options.workDir, "initramfs"),
    root: options.root,
    ...(options.cacheDir ? { cacheDir: options.cacheDir } : {}),
    extra: [...(options.extra ?? []), { src: releasePub, dest: GUEST_RELEASE_PUB, mode: 0o644 }],
    ...(options.policy ? { policy: options.policy } : {}),
    ...(options.programs ? { programs: options.programs } : {}),
    ...(options.health ? { health: options.health } : {}),
    ...(options.fleet ? { fleet: options.fleet } : {}),
    ...(options.strip !== undefined ? { strip: options.strip } : {}),
    say: (line) => say(`initramfs: ${line}`),
  });

  const cmdline = [
    built.manifest.cmdline,
    `cohesix.boot=${partitionDevice(disk.device, 1)}`,
    `cohesix.state=${partitionDevice(disk.device, 2)}`,
    ...(options.append ? [options.append] : []),
  ].join(" ");
  return { kernel: built.kernel, initrd: built.initrd, initramfsDigest: built.manifest.digest, cmdline, disk, releaseKey };
}

/**
 * Builds the board's disk image at `out` (and `out.manifest.json`).
 *
 * @example
 * ```ts
 * const artefacts = await fetchArtefacts(board);
 * const built = await buildBoardImage("cohesix.img", { board, artefacts, queenPub, releaseKey: "~/.config/cohesix/release.key", root: packageRoot(), workDir: ".cohesix/disk/aarch64-virt" });
 * built.manifest.bootManifest; // "sha256:…"
 * ```
 */
export async function buildBoardImage(out: string, options: BuildBoardImageOptions): Promise<BuiltBoardImage> {
  const { board } = options;
  const say = options.say ?? (() => {});
  if (options.version !== undefined && !VERSION_PATTERN.test(options.version)) throw new InvalidError(`disk image: version ${JSON.stringify(options.version)} must be dotted whole numbers such as 1.2.0 (one to four parts)`);
  const built = await buildSlot({ ...options, abSlot: options.ab === true });
  const { cmdline, disk, releaseKey } = built;
  const bootFiles: BootFile[] = [];
  const stateFiles: BootFile[] = [];
  if (options.ab) {
    bootFiles.push(...(await abBootFiles({ workDir: options.workDir, board: board.name, kernel: built.kernel, initrd: built.initrd, releaseKey, cmdline, ...(disk.dtb ? { fdt: "/board.dtb" } : {}), epoch: options.epoch, version: options.version })));
    const state = join(options.workDir, "state.env");
    await writeFile(state, formatBootState(initialBootState({ active: "a", other: "good" })));
    stateFiles.push(...STATE_FILES.map((name) => ({ path: `/${name}`, src: state })));
  } else {
    const conf = join(options.workDir, "extlinux.conf");
    await writeFile(conf, extlinuxConf({ append: cmdline, ...(disk.dtb ? { fdt: "/board.dtb" } : {}) }));
    bootFiles.push({ path: "/Image", src: built.kernel }, { path: "/initrd.gz", src: built.initrd }, { path: "/extlinux/extlinux.conf", src: conf });
  }
  if (disk.dtb) {
    const dtb = join(board.dir, disk.dtb);
    if (!existsSync(dtb)) throw new NotFoundError(`board ${board.name}: device tree ${dtb} is missing`);
    bootFiles.push({ path: "/board.dtb", src: dtb });
  }
  const slotBytes = (await stat(built.kernel)).size + (await stat(built.initrd)).size;
  const written = await writeDiskImage(out, {
    board: board.name,
    bootFiles,
    // A/B: room for a slot's next build to be up to half as large again.
    ...(stateFiles.length > 0 ? { stateFiles, bootHeadroomBytes: Math.ceil(slotBytes / 2) } : {}),
    releaseKey,
    initramfsDigest: built.initramfsDigest,
    ...(options.version !== undefined ? { version: options.version } : {}),
    dataBytes: (options.dataMb ?? defaultDataMb(disk.dataMb, options.ab === true ? slotBytes : 0)) * (1 << 20),
    ...(options.epoch !== undefined ? { epoch: options.epoch } : {}),
    say,
  });
  return { ...written, cmdline, disk };
}


/**
 * The data partition's size when the user gives none: the board's, and on
 * an A/B image room to stage an update bundle there as well (a slot's
 * build up to half as large again, like the boot partition's headroom,
 * plus the space the update service keeps free).
 *
 * @example
 * ```ts
 * defaultDataMb(64, 80 << 20); // 200
 * ```
 */
export function defaultDataMb(boardDataMb: number, slotBytes: number): number {
  if (slotBytes === 0) return boardDataMb;
  return boardDataMb + Math.ceil((slotBytes * 1.5 + DEFAULT_UPDATE_LIMITS.reserveBytes) / (1 << 20));
}

/**
 * The A/B boot files: each slot's kernel, initramfs and signed slot
 * manifest (`/a/manifest.json`, listing that slot's two files), and
 * `/boot.scr` compiled by mkimage. No `extlinux.conf`: distro boot would
 * take it before `boot.scr`.
 */
async function abBootFiles(o: { workDir: string; board: string; kernel: string; initrd: string; releaseKey: Uint8Array; cmdline: string; fdt?: string; epoch: number | undefined; version: string | undefined }): Promise<BootFile[]> {
  const files: BootFile[] = [];
  for (const slot of SLOTS) {
    const kernel = { path: `/${slot}/${SLOT_FILES.kernel}`, src: o.kernel };
    const initrd = { path: `/${slot}/${SLOT_FILES.initrd}`, src: o.initrd };
    const artefacts = [];
    for (const f of [kernel, initrd]) artefacts.push({ path: f.path, ...(await hashFile(f.src)) });
    const manifest = join(o.workDir, `slot-${slot}.manifest.json`);
    await writeFile(manifest, `${JSON.stringify(signDocument({ format: BOOT_MANIFEST_FORMAT, board: o.board, ...(o.version !== undefined ? { version: o.version } : {}), artefacts }, o.releaseKey), null, 2)}\n`);
    files.push(kernel, initrd, { path: `/${slot}/${SLOT_FILES.manifest}`, src: manifest });
  }
  const text = join(o.workDir, "boot.txt");
  const scr = join(o.workDir, "boot.scr");
  await writeFile(text, bootScript({ cmdline: o.cmdline, ...(o.fdt ? { fdt: o.fdt } : {}) }));
  // mkimage stamps the header with SOURCE_DATE_EPOCH: the same build gives the same bytes.
  await runTool("mkimage", ["-A", "arm64", "-T", "script", "-C", "none", "-n", "cohesix A/B", "-d", text, scr], { env: { SOURCE_DATE_EPOCH: String(o.epoch ?? buildEpoch()) } });
  files.push({ path: "/boot.scr", src: scr });
  return files;
}
