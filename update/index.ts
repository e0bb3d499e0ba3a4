/**
 * update: A/B slots — the boot state U-Boot and the root task share, the
 * boot script that counts tries before the kernel starts, the signed
 * update bundle that carries a slot's next build, and the appliance's
 * `/update/` service that streams a bundle into the inactive slot (see
 * docs/updates.md). This entry only documents and re-exports.
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
 * - `update-service.ts` — {@link UpdateService}: `/update/ctl` commands, `data`
 *   writes and `status`; `staging.ts` stages a transfer on the state disk,
 *   `payloads.ts` checks it whole, `slot-writer.ts` writes the inactive slot
 *   and then the state; `update-files.ts` — {@link updateDirectory}, the 9P files.
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
export { DEFAULT_STAGING_LIMITS, Staging, stagingDir, type HeaderCheck, type StagingLimits, type TransferId, type TransferState } from "./staging.ts";
export { checkStagedBundle } from "./payloads.ts";
export { slotFits, writeSlot, type WriteSlotOptions } from "./slot-writer.ts";
export { DEFAULT_UPDATE_LIMITS, UpdateService, parseUpdateCommand, slotVersion, type UpdateCommand, type UpdateLimits, type UpdateServiceOptions } from "./update-service.ts";
export { updateDirectory } from "./update-files.ts";
export { UPDATE_LIMIT_NAMES, parseUpdateLimits } from "./update-limits.ts";
