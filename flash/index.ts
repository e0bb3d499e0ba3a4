/**
 * flash: the disk image a board's U-Boot boots, its signed manifest, and
 * (beside them) the safe writer and the serial console. This entry only
 * documents and re-exports.
 *
 * - `manifest.ts` — {@link ImageManifest}, {@link verifyImage}, {@link ManifestError}:
 *   the detached `IMAGE.manifest.json` and its check, run before any byte is flashed.
 * - `partition.ts` — the partition table as data, its sfdisk script, an MBR reader.
 * - `fat.ts` — the FAT boot partition through dosfstools and mtools.
 * - `image.ts` — {@link buildBoardImage}: a board's image (initramfs for the
 *   disk, kernel, extlinux.conf; `boards/<name>/disk.json`).
 * - `bundle.ts` — {@link buildBoardBundle}: the same slot build as an
 *   update bundle (`cohesix bundle`).
 * - `disk.ts` — {@link writeDiskImage}: boot files → signed boot manifest,
 *   FAT boot partition, ext4 data partition, MBR, detached manifest.
 * - `devices.ts` — block-device discovery through a {@link SystemView}
 *   (sysfs, mount and swap tables, the device of `/`), real or a fake tree.
 * - `rules.ts` — which disks may be flashed: refusals, the candidate table,
 *   auto-selection only of a single candidate.
 * - `writer.ts` — write, fsync, read back and compare sha256.
 * - `flash.ts` — {@link flashImage}: verify, choose, confirm, unmount, write,
 *   re-read the partition table (`cohesix flash`).
 * - `progress.ts` — the progress bar (a terminal line, or plain lines).
 * - `console.ts` — {@link runConsole}: the serial console over serialport.
 *
 * @example
 * ```ts
 * import { verifyImage } from "../flash/index.ts";
 * const manifest = await verifyImage("cohesix.img", { pubKeyFile: "release.pub" });
 * console.log(manifest.image.sha256, manifest.bootManifest);
 * ```
 * @module
 */
export {
  IMAGE_MANIFEST_FORMAT,
  ManifestError,
  manifestPathOf,
  parseImageManifest,
  sha256OfFile,
  verifyImage,
  type ImageManifest,
  type ManifestArtefact,
  type ManifestPartition,
  type VerifyImageOptions,
} from "./manifest.ts";
export { ALIGN_BYTES, PARTITION_TYPES, SECTOR, layoutDisk, partitionDevice, readMbr, sfdiskScript, type MbrEntry, type Partition, type PartitionTable } from "./partition.ts";
export { listFat, makeFat, readFat, type FatFile, type MakeFatOptions } from "./fat.ts";
export { SYSTEM_MOUNTS, deviceName, devNumber, formatBytes, listDisks, parseMounts, parseSwaps, systemView, type Disk, type Mount, type DiskPartition, type SystemView } from "./devices.ts";
export { DEFAULT_MAX_BYTES, RefusedError, assessDisks, chooseDisk, formatCandidates, refusalsOf, type Assessed, type Refusal, type RefusalCode, type Rules } from "./rules.ts";
export { WriteError, writeImage, type Progress, type WriteOptions, type WriteResult } from "./writer.ts";
export { flashImage, runCommand, type FlashOptions, type Flashed, type Runner } from "./flash.ts";
export { progressBar, type ProgressBar, type ProgressOptions } from "./progress.ts";
export { ConsoleError, ESCAPE_BYTE, StreamMatcher, runConsole, type ConsoleInput, type ConsoleOptions, type ConsoleResult } from "./console.ts";
export { buildEpoch, writeDiskImage, type BootFile, type WriteDiskImageOptions, type WrittenDiskImage } from "./disk.ts";
export {
  GUEST_BOOT_DIR,
  GUEST_RELEASE_PUB,
  buildBoardImage,
  defaultDataMb,
  buildSlot,
  extlinuxConf,
  loadDiskSpec,
  type BuildBoardImageOptions,
  type BuildSlotOptions,
  type BuiltBoardImage,
  type BuiltSlot,
  type DiskSpec,
} from "./image.ts";
export { buildBoardBundle, type BuildBoardBundleOptions, type BuiltBoardBundle } from "./bundle.ts";
