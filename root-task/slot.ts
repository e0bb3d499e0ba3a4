/**
 * The A/B slot the appliance runs from, as the boot script told it
 * (`cohesix.slot=b cohesix.slot_boot=try cohesix.tries_left=2` on the
 * kernel command line, see `update/boot-script.ts`), what `/proc/boot`
 * shows of it, the slot-aware boot manifest check, and the small record of
 * why the last try was not confirmed (on the state disk, which both slots
 * share, so the boot after a rollback can say why).
 * @module
 */
import { createHash } from "node:crypto";
import { mkdir, open, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { SLOTS, otherSlot, type BootState, type Slot, type SlotStatus } from "../update/index.ts";
import { NO_VERSION, checkDocumentSignature, hashFile, manifestVersion, parseBootManifest, type BootManifest, type BootManifestCheck } from "./boot-manifest.ts";
import { readPublicKey } from "./keys.ts";

/** How U-Boot's script chose the slot (`cohesix.slot_boot=`). */
export type SlotBootKind = "normal" | "try" | "rollback" | "fallback";
/** All kinds, as the boot script writes them. */
export const SLOT_BOOT_KINDS: readonly SlotBootKind[] = ["normal", "try", "rollback", "fallback"];

/** The slot words of the kernel command line, as one record. */
export interface SlotBoot {
  /** The slot this kernel and initramfs came from. */
  readonly slot: Slot;
  /** Why U-Boot booted it. */
  readonly kind: SlotBootKind;
  /** Try boots left after this one (0 unless `kind` is `try`). */
  readonly triesLeft: number;
}

/**
 * The slot record from the kernel command line's `cohesix.*` words (see
 * `cmdlineParams`); `undefined` on an image without A/B slots. An unknown
 * boot kind reads as `normal` and a bad count as 0: a typo must not stop
 * the appliance from booting.
 *
 * @example
 * ```ts
 * slotBootOf({ slot: "b", slot_boot: "try", tries_left: "2" }); // { slot: "b", kind: "try", triesLeft: 2 }
 * slotBootOf({}); // undefined
 * ```
 */
export function slotBootOf(params: Readonly<Record<string, string>>): SlotBoot | undefined {
  const slot = params.slot;
  if (slot !== "a" && slot !== "b") return undefined;
  const kind = (SLOT_BOOT_KINDS as readonly string[]).includes(params.slot_boot ?? "") ? (params.slot_boot as SlotBootKind) : "normal";
  const tries = /^[0-9]$/.test(params.tries_left ?? "") ? Number(params.tries_left) : 0;
  return { slot, kind, triesLeft: tries };
}

/** What `/proc/boot` shows of the running slot. */
export interface SlotReport {
  readonly slot: Slot;
  /** From the slot's manifest (`version`; `0.0.0` without one, `none` without a readable manifest). */
  readonly version: string;
  /** The running slot's status in the boot state (`unknown` when no copy of the state is whole). */
  readonly state: SlotStatus | "unknown";
  readonly triesLeft: number;
  /** The other slot was rolled back, and why. */
  readonly rolledBack?: { readonly from: Slot; readonly reason: string };
}

/**
 * The `/proc/boot` lines of a slot report.
 *
 * @example
 * ```ts
 * slotLines({ slot: "a", version: "1.0.0", state: "good", triesLeft: 0, rolledBack: { from: "b", reason: "required worker camera exited" } });
 * // ["slot=a", "slot_version=1.0.0", "slot_state=good", "tries_left=0", "rolled_back from=b reason=required worker camera exited"]
 * ```
 */
export function slotLines(report: SlotReport): string[] {
  return [
    `slot=${report.slot}`,
    `slot_version=${report.version}`,
    `slot_state=${report.state}`,
    `tries_left=${report.triesLeft}`,
    ...(report.rolledBack ? [`rolled_back from=${report.rolledBack.from} reason=${report.rolledBack.reason}`] : []),
  ];
}

/** Why a rolled-back slot failed when no try left a reason: its kernel never reached the root task's verdict. */
export const UNRECORDED_FAILURE = "its tries ran out before it was confirmed (no verdict recorded: a kernel panic, a hang ended by the watchdog, or a power cut)";

/**
 * The report for `boot` given the boot state on the partition (null when
 * no copy is whole), the slot's version and the recorded try failure (used
 * for a rolled-back other slot when it names that slot and, if it names
 * one, the digest of the manifest that slot holds now: `otherManifest`).
 *
 * @example
 * ```ts
 * slotReport({ slot: "a", kind: "rollback", triesLeft: 0 }, state, { version: "1.0.0", failure: { slot: "b", reason: "required worker camera exited" } });
 * ```
 */
export function slotReport(boot: SlotBoot, state: BootState | null, options: { version: string; failure?: TryFailure | undefined; otherManifest?: string | undefined }): SlotReport {
  const other = otherSlot(boot.slot);
  const rolledBack = state?.slots[other] === "rolled_back";
  // A record of another build in that slot (an older update's) says nothing about this rollback.
  const f = options.failure;
  const current = f !== undefined && f.slot === other && (f.manifest === undefined || f.manifest === options.otherManifest);
  const reason = current ? f.reason : UNRECORDED_FAILURE;
  return {
    slot: boot.slot,
    version: options.version,
    state: state ? state.slots[boot.slot] : "unknown",
    triesLeft: boot.triesLeft,
    ...(rolledBack ? { rolledBack: { from: other, reason } } : {}),
  };
}

/**
 * Where a slot's manifest entry lives on the boot partition: an entry
 * names the slot's file either under a slot folder (`/a/Image`, as
 * `cohesix image --ab` writes it) or alone (`/Image`); either way the file
 * checked is the one in `slot`'s folder, so a manifest written for one
 * slot checks the same build copied into the other.
 */
function slotPath(bootDir: string, slot: Slot, path: string): string {
  const parts = path.split("/").filter(Boolean);
  const rest = parts.length > 1 && (SLOTS as readonly string[]).includes(parts[0]!) ? parts.slice(1) : parts;
  return join(bootDir, slot, ...rest);
}

/** Options of {@link checkSlotManifest}. */
export interface CheckSlotManifestOptions {
  /** Where the boot partition is mounted, e.g. `/boot`. */
  readonly bootDir: string;
  /** The release public key file baked into the image. */
  readonly releasePub: string;
  /** The slot this kernel came from. */
  readonly slot: Slot;
}

/**
 * The boot-time check of an A/B image: the running slot's manifest
 * (`<bootDir>/<slot>/manifest.json`, signed by the release key) and the
 * slot's files it lists. The image-wide `/cohesix/manifest.json` is not
 * checked: it lists the slots as the image was built, and an update
 * rewrites one. Never throws; also returns the slot's version.
 *
 * @example
 * ```ts
 * const check = await checkSlotManifest({ bootDir: "/boot", releasePub: "/etc/cohesix/release.pub", slot: "b" });
 * check.status; // "ok"
 * ```
 */
export async function checkSlotManifest(options: CheckSlotManifestOptions): Promise<BootManifestCheck & { readonly version: string }> {
  const file = join(options.bootDir, options.slot, "manifest.json");
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    return { digest: "none", status: `FAILED: cannot read ${file}: ${(err as Error).message}`, version: NO_VERSION };
  }
  const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
  let version = NO_VERSION;
  try {
    const manifest = parseBootManifest(bytes.toString("utf8"), file);
    version = manifestVersion(manifest);
    const why = checkDocumentSignature(manifest as BootManifest & Record<string, unknown>, await readPublicKey(options.releasePub));
    if (why) return { digest, status: `FAILED: ${why}`, version };
    for (const a of manifest.artefacts) {
      const path = slotPath(options.bootDir, options.slot, a.path);
      const shown = path.slice(options.bootDir.length) || a.path;
      const info = await stat(path).catch(() => undefined);
      if (!info) return { digest, status: `FAILED: ${shown} is missing from the boot partition`, version };
      if (info.size !== a.size) return { digest, status: `FAILED: ${shown} is ${info.size} bytes, the manifest says ${a.size}`, version };
      const got = await hashFile(path);
      if (got.sha256 !== a.sha256) return { digest, status: `FAILED: ${shown} sha256 ${got.sha256} differs from the manifest's ${a.sha256}`, version };
    }
    return { digest, status: "ok", version };
  } catch (err) {
    return { digest, status: `FAILED: ${(err as Error).message}`, version };
  }
}

/** Why a try boot was not confirmed, as the root task recorded it before rebooting. */
export interface TryFailure {
  readonly slot: Slot;
  /** `sha256:<hex>` of the slot's manifest when it failed: which build failed. */
  readonly manifest?: string;
  readonly reason: string;
}

/** The try-failure record's path under the state directory. */
export const TRY_FAILURE_FILE = "update/try-failure";
const DIGEST = /^sha256:[0-9a-f]{64}$/;

/**
 * `sha256:<hex>` of a slot's manifest file, undefined when it cannot be read.
 *
 * @example
 * ```ts
 * await slotManifestDigest("/boot", "b"); // "sha256:…"
 * ```
 */
export async function slotManifestDigest(bootDir: string, slot: Slot): Promise<string | undefined> {
  const bytes = await readFile(join(bootDir, slot, "manifest.json")).catch(() => undefined);
  return bytes && bytes.length <= 1 << 20 ? `sha256:${createHash("sha256").update(bytes).digest("hex")}` : undefined;
}

/** Longest reason kept (the record is read at every A/B boot). */
const MAX_REASON = 400;

/**
 * Records why slot `failure.slot` was not confirmed, durably (written,
 * fdatasync'd), before the root task reboots, so the boot after the
 * rollback can say why.
 *
 * @example
 * ```ts
 * await recordTryFailure("/var/lib/cohesix", { slot: "b", reason: "required worker camera exited with code 1" });
 * ```
 */
export async function recordTryFailure(stateDir: string, failure: TryFailure): Promise<void> {
  const path = join(stateDir, TRY_FAILURE_FILE);
  await mkdir(join(path, ".."), { recursive: true });
  const reason = failure.reason.replace(/\s+/g, " ").slice(0, MAX_REASON);
  const handle = await open(path, "w");
  try {
    await handle.writeFile(`slot=${failure.slot}${failure.manifest && DIGEST.test(failure.manifest) ? ` manifest=${failure.manifest}` : ""} reason=${reason}\n`);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

/**
 * The recorded try failure, or undefined (none, or unreadable).
 *
 * @example
 * ```ts
 * await readTryFailure("/var/lib/cohesix"); // { slot: "b", reason: "required worker camera exited with code 1" }
 * ```
 */
export async function readTryFailure(stateDir: string): Promise<TryFailure | undefined> {
  const text = await readFile(join(stateDir, TRY_FAILURE_FILE), "utf8").catch(() => "");
  const m = /^slot=([ab])(?: manifest=(sha256:[0-9a-f]{64}))? reason=(.*)$/m.exec(text.slice(0, MAX_REASON + 160));
  return m ? { slot: m[1] as Slot, ...(m[2] ? { manifest: m[2] } : {}), reason: m[3]! } : undefined;
}

/**
 * Forgets the recorded try failure (a slot was confirmed since).
 *
 * @example
 * ```ts
 * await clearTryFailure("/var/lib/cohesix");
 * ```
 */
export async function clearTryFailure(stateDir: string): Promise<void> {
  await rm(join(stateDir, TRY_FAILURE_FILE), { force: true });
}
