/**
 * flash: the disk image a board's U-Boot boots, its signed manifest, and
 * (beside them) the safe writer and the serial console. This entry only
 * documents and re-exports.
 *
 * - `manifest.ts` — {@link ImageManifest}, {@link verifyImage}, {@link ManifestError}:
 *   the detached `IMAGE.manifest.json` and its check, run before any byte is flashed.
 * - `partition.ts` — the partition table as data, its sfdisk script, an MBR reader.
 * - `fat.ts` — the FAT boot partition through dosfstools and mtools.
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
