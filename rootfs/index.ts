/**
 * rootfs: building the appliance's initramfs.
 *
 * - `cpio`: archive entries as plain data, the newc writer and reader, the
 *   reproducibility transform, compression and the size guard.
 * - `artefacts`: {@link fetchArtefacts} gets a board's pinned pieces (Node
 *   from npm; glibc, busybox and the kernel from Debian) into the per-user
 *   cache (`cache.ts`), verified by sha256 and unpacked (`unpack.ts`),
 *   from npm/apt or a `--from` folder (`sources.ts`); {@link fetchNatives}
 *   gets the board's pinned native addon packages (sharp's linux-arm64 builds).
 * - `natives`: which pinned native packages a bundle needs
 *   ({@link nativesFor}), the version check against the installed loader
 *   ({@link checkNativeVersions}) and their layout under `node_modules`
 *   ({@link nativeFiles}) — for the built-in workers and users' own.
 * - `image`: {@link buildImage} with the workers an image carries
 *   ({@link DEFAULT_IMAGE_WORKERS}, `workers: [...DEFAULT_IMAGE_WORKERS, "inference"]`).
 *
 * @example
 * ```ts
 * import { writeCpio, readCpio, compress, checkSize } from "../rootfs/index.ts";
 * const cpio = writeCpio([
 *   { type: "char", path: "/dev/console", major: 5, minor: 1 },
 *   { type: "file", path: "/init", data: new TextEncoder().encode("#!/bin/sh\n"), mode: 0o755 },
 * ]);
 * const initrd = compress(cpio, "gzip");
 * checkSize(initrd, { limit: 64 * 1024 * 1024, what: "initramfs (gzip)" });
 * console.log(readCpio(cpio).map((e) => e.path)); // ["dev", "dev/console", "init"]
 * ```
 * @module
 */

// --- cpio: entries, newc writer/reader, reproducibility, compression, size guard ---
export {
  comparePaths,
  makeReproducible,
  normaliseCpioPath,
  sourceDateEpoch,
  type CpioEntry,
  type DeviceEntry,
  type DirEntry,
  type FileData,
  type FileEntry,
  type HardlinkEntry,
  type ReproducibleOptions,
  type SymlinkEntry,
} from "./cpio-entry.ts";
export { readCpio, writeCpio, type WriteCpioOptions } from "./cpio.ts";
export { decodeNewc, encodeNewc, type CpioRecord } from "./newc.ts";
export { checkSize, compress, decompress, type CheckSizeOptions, type Compression } from "./compress.ts";
// --- end cpio ---

// --- artefacts: pinned downloads, per-user cache, unpacking ---
export { fetchArtefacts, fetchNatives, type Artefacts, type FetchArtefactsOptions, type FetchedNative, type ModuleFile } from "./artefacts.ts";
export { ArtefactCache, defaultCacheDir, sha256File, type BlobState } from "./cache.ts";
export { fileNames, howToGet, pinLabel, type Pin } from "./sources.ts";
export { debDataMember, unpackDeb, type UnpackDebOptions } from "./unpack.ts";
// --- end artefacts ---

// --- image: guest bundles, boot scripts, image assembly ---
export { NATIVE_PACKAGES, bundleGuest, stripElf, workerEntries, type BundleFile, type BundleGuestOptions, type GuestBundle, type StripOptions } from "./bundle.ts";
export {
  FLOOR_READY,
  HWCLOCK_PID_ENV,
  HWCLOCK_STEP,
  LOADER,
  SELFTEST_BEGIN,
  SELFTEST_END,
  STAGE_PATTERN,
  SYSTEM_READY,
  floorInitScript,
  initScript,
  inittab,
  loaderScript,
  runScript,
  type InitOptions,
} from "./init.ts";
export {
  APPLETS,
  DEFAULT_IMAGE_WORKERS,
  GUEST,
  applianceEntries,
  buildImage,
  findModules,
  runtimeEntries,
  runtimePart,
  type BuildImageOptions,
  type BuiltImage,
  type ExtraFile,
  type ImageHealth,
  type ImageProgram,
  type ImageArtefacts,
  type ImageBoard,
  type ImageManifest,
  type ManifestFile,
  type NativeSource,
  type RuntimePart,
  type RuntimePartOptions,
} from "./image.ts";
export { buildFloorImage, floorEntries, type FloorImage, type FloorImageOptions } from "./floor.ts";
export { GUEST_FLEET_FILES, fleetImageEntries, type GuestFleetConfig, type ImageFleet } from "./fleet-files.ts";
export { checkNativeVersions, nativeFiles, nativesFor, packageOfInput, type NativePinLike } from "./natives.ts";
// --- end image ---
