/**
 * update: A/B slots — the boot state U-Boot and the root task share, the
 * boot script that counts tries before the kernel starts, and the signed
 * update bundle that carries a slot's next build (see docs/updates.md).
 * This entry only documents and re-exports.
 *
 * - `boot-state.ts` — {@link BootState}: the `state.env`/`state.bak` record,
 *   its one parser and one serialiser, and {@link bootStep}, the script's
 *   decision as a function.
 * - `boot-script.ts` — {@link bootScript}: the U-Boot script text.
 * - `boot-partition.ts` — {@link readBootStateFiles}, {@link writeBootStateFiles}:
 *   the state's two copies on a mounted boot partition, as the appliance reads and writes them.
 * - `bundle.ts` — the bundle format without I/O: {@link parseBundleHeader},
 *   {@link checkBundleHeader}, {@link chunkRange}, {@link verifyChunk},
 *   {@link compareVersions}.
 * - `bundle-file.ts` — {@link writeBundle}, {@link verifyBundleFile},
 *   {@link checkBundleManifest}: bundle files on disk.
 *
 * @example
 * ```ts
 * import { bootStep, chooseBootState } from "../update/index.ts";
 * const { state } = chooseBootState(envBytes, bakBytes);
 * bootStep(state); // { slot: "a", kind: "normal", write: null }
 * ```
 * @module
 */
export {
  MAX_TRIES,
  SLOTS,
  SLOT_STATUSES,
  STATE_FILES,
  STATE_FILE_BYTES,
  STATE_VARS,
  bootStep,
  chooseBootState,
  formatBootState,
  initialBootState,
  otherSlot,
  parseBootState,
  type BootDecision,
  type BootState,
  type BootStateRefusal,
  type ParsedBootState,
  type Slot,
  type SlotStatus,
} from "./boot-state.ts";
export { nextBootState, readBootStateFiles, writeBootStateFiles, type BootStateOnDisk } from "./boot-partition.ts";
export { SLOT_FILES, bootScript, type BootScriptOptions } from "./boot-script.ts";
export {
  BUNDLE_FORMAT,
  BUNDLE_MAGIC,
  BUNDLE_PAYLOADS,
  BUNDLE_PREFIX_BYTES,
  DEFAULT_CHUNK_SIZE,
  DEFAULT_MAX_BUNDLE_BYTES,
  MAX_BUNDLE_HEADER_BYTES,
  MAX_BUNDLE_MANIFEST_BYTES,
  MAX_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  bundleHeaderLength,
  bundleSize,
  checkBundleHeader,
  checkBundleSignature,
  chunkRange,
  compareVersions,
  parseBundleHeader,
  payloadOffset,
  payloadRanges,
  slotArtefactPath,
  verifyChunk,
  type BundleHeader,
  type BundlePayload,
  type BundlePayloadName,
  type CheckBundleHeaderOptions,
} from "./bundle.ts";
export { checkBundleManifest, slotManifestOf, verifyBundleFile, writeBundle, type VerifiedBundle, type WriteBundleOptions } from "./bundle-file.ts";
