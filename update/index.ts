/**
 * update: A/B slots — the boot state U-Boot and the root task share, and
 * the boot script that counts tries before the kernel starts (update
 * bundles and the appliance's `/update/` service come later; see
 * docs/updates.md). This entry only documents and re-exports.
 *
 * - `boot-state.ts` — {@link BootState}: the `state.env`/`state.bak` record,
 *   its one parser and one serialiser, and {@link bootStep}, the script's
 *   decision as a function.
 * - `boot-script.ts` — {@link bootScript}: the U-Boot script text.
 * - `boot-partition.ts` — {@link readBootStateFiles}, {@link writeBootStateFiles}:
 *   the state's two copies on a mounted boot partition, as the appliance reads and writes them.
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
