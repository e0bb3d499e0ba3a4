/**
 * The guest's A/B slot at run time: what `/proc/boot` shows of it, the
 * rollback report, and a try boot's way to a verdict — confirmed (the
 * state written through `markSlotGood`) or not (why recorded on the state
 * disk, then a reboot into U-Boot, which takes the next try or rolls back).
 * @module
 */
import { otherSlot, readBootStateFiles, slotVersion, type BootState, type Slot } from "../update/index.ts";
import { awaitHealth, markSlotGood, type HealthVerdict, type WatchedWorker } from "./slot-health.ts";
import { clearTryFailure, readTryFailure, recordTryFailure, slotLines, slotManifestDigest, slotReport, UNRECORDED_FAILURE, type SlotBoot, type SlotReport } from "./slot.ts";

/** Options of {@link GuestSlot.open}. */
export interface GuestSlotOptions {
  readonly boot: SlotBoot;
  /** Where the boot partition is mounted (read-only), e.g. `/boot`. */
  readonly bootDir: string;
  /** The state directory on the data partition (the try-failure record). */
  readonly stateDir: string;
}

/** What the verdict needs of the appliance. */
export interface SlotAppliance {
  readonly lifecycle: { readonly state: string };
  readonly state: { readonly workers: Readonly<Record<string, WatchedWorker & { readonly kind: string }>> };
  spawnWorker(kind: string): Promise<string>;
  audit(line: string): void;
}

/** Options of {@link GuestSlot.settle}. */
export interface SettleOptions {
  readonly app: SlotAppliance;
  /** Worker kinds the project marks `"required": true`. */
  readonly required: readonly string[];
  /** The project's health worker kind, if any: it must exit 0. */
  readonly healthWorker?: string;
  readonly windowMs?: number;
  readonly deadlineMs?: number;
  readonly pollMs?: number;
  /** Remounts the boot partition read-write / read-only around the state write. */
  remount?(mode: "rw" | "ro"): Promise<void>;
  /** Syncs and reboots the machine (the try failed). */
  reboot(): Promise<void>;
  readonly say: (line: string) => void;
  readonly signal?: AbortSignal;
}

/**
 * The running slot.
 *
 * @example
 * ```ts
 * const slot = await GuestSlot.open({ boot: { slot: "b", kind: "try", triesLeft: 2 }, bootDir: "/boot", stateDir: "/var/lib/cohesix" });
 * slot.lines(); // ["slot=b", "slot_version=1.2.0", "slot_state=trying", "tries_left=2"]
 * ```
 */
export class GuestSlot {
  readonly boot: SlotBoot;
  readonly #options: GuestSlotOptions;
  #state: BootState | null;
  #report: SlotReport;
  /** Digest of the running slot's manifest: which build a recorded failure is about. */
  readonly #manifest: string | undefined;

  private constructor(options: GuestSlotOptions, state: BootState | null, report: SlotReport, manifest: string | undefined) {
    this.boot = options.boot;
    this.#options = options;
    this.#state = state;
    this.#report = report;
    this.#manifest = manifest;
  }

  /**
   * Reads the boot state, the slot's version and the last try failure.
   *
   * @example
   * ```ts
   * const slot = await GuestSlot.open({ boot, bootDir: "/boot", stateDir: "/var/lib/cohesix" });
   * ```
   */
  static async open(options: GuestSlotOptions): Promise<GuestSlot> {
    const [{ state }, version, failure, manifest, otherManifest] = await Promise.all([
      readBootStateFiles(options.bootDir).catch(() => ({ state: null })),
      slotVersion(options.bootDir, options.boot.slot),
      readTryFailure(options.stateDir),
      slotManifestDigest(options.bootDir, options.boot.slot),
      slotManifestDigest(options.bootDir, otherSlot(options.boot.slot)),
    ]);
    return new GuestSlot(options, state, slotReport(options.boot, state, { version, failure, otherManifest }), manifest);
  }

  /** The report `/proc/boot` shows now. */
  get report(): SlotReport {
    return this.#report;
  }

  /**
   * Why `slot` was rolled back, as `/proc/boot` shows it (for
   * `/update/status`); undefined when it was not.
   *
   * @example
   * ```ts
   * slot.rollbackReason("b"); // "required worker camera (worker-3) exited: exited with code 1"
   * ```
   */
  rollbackReason(slot: Slot): string | undefined {
    const r = this.#report.rolledBack;
    // With no verdict recorded, /update/status says it in its own short word (tries_ran_out).
    return r?.from === slot && r.reason !== UNRECORDED_FAILURE ? r.reason : undefined;
  }

  /** The `/proc/boot` lines (see `slotLines`). */
  lines(): string[] {
    return slotLines(this.#report);
  }

  /** True when U-Boot is trying this slot: it needs a verdict. */
  get trying(): boolean {
    const s = this.#state;
    return this.boot.kind === "try" && s !== null && s.try === this.boot.slot && s.slots[this.boot.slot] === "trying";
  }

  /**
   * After READY: reports a rollback to the audit log, starts the required
   * workers that the commit log did not already run, and on a try boot
   * waits for the verdict — confirming the slot, or recording why not and
   * rebooting. Resolves with the verdict (healthy without a try).
   *
   * @example
   * ```ts
   * void slot.settle({ app, required: ["camera"], reboot, say: console.log });
   * ```
   */
  async settle(options: SettleOptions): Promise<HealthVerdict> {
    const { app, say } = options;
    const r = this.#report;
    if (r.rolledBack && this.boot.kind === "rollback") {
      const line = `rolled_back from=${r.rolledBack.from} reason=${r.rolledBack.reason}`;
      app.audit(line);
      say(`cohesix: ${line}`);
    }
    const trying = this.trying;
    if (trying) app.audit(`slot ${r.slot} trying: version ${r.version}, ${r.triesLeft} tries left after this one`);
    let verdict: HealthVerdict;
    try {
      const required = [];
      for (const kind of options.required) required.push({ id: await this.#runningOrSpawned(app, kind), kind });
      const health = trying && options.healthWorker ? { id: await app.spawnWorker(options.healthWorker), kind: options.healthWorker } : undefined;
      if (!trying) return { healthy: true };
      verdict = await awaitHealth({
        online: () => app.lifecycle.state === "ONLINE",
        required,
        ...(health ? { healthWorker: health } : {}),
        worker: (id) => app.state.workers[id],
        ...(options.windowMs !== undefined ? { windowMs: options.windowMs } : {}),
        ...(options.deadlineMs !== undefined ? { deadlineMs: options.deadlineMs } : {}),
        ...(options.pollMs !== undefined ? { pollMs: options.pollMs } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
    } catch (err) {
      if (!trying) {
        app.audit(`required workers: ${(err as Error).message}`);
        return { healthy: false, reason: (err as Error).message };
      }
      verdict = { healthy: false, reason: `required worker not started: ${(err as Error).message}` };
    }
    if (verdict.healthy) {
      try {
        const written = await markSlotGood({ bootDir: this.#options.bootDir, slot: r.slot, ...(options.remount ? { remount: options.remount } : {}) });
        this.#state = written;
        this.#report = { ...r, state: written.slots[r.slot] };
        await clearTryFailure(this.#options.stateDir).catch(() => undefined);
        app.audit(`slot ${r.slot} confirmed good: version ${r.version}`);
        say(`cohesix: slot ${r.slot} confirmed good (version ${r.version})`);
        return verdict;
      } catch (err) {
        verdict = { healthy: false, reason: `the boot state could not be written: ${(err as Error).message}` };
      }
    }
    if (verdict.reason === "stopped") return verdict;
    await recordTryFailure(this.#options.stateDir, { slot: r.slot, ...(this.#manifest ? { manifest: this.#manifest } : {}), reason: verdict.reason }).catch((err: unknown) => say(`cohesix: try failure not recorded: ${(err as Error).message}`));
    app.audit(`slot ${r.slot} not confirmed: ${verdict.reason}; rebooting`);
    say(`cohesix: slot ${r.slot} not confirmed: ${verdict.reason}; rebooting`);
    await options.reboot();
    return verdict;
  }

  async #runningOrSpawned(app: SlotAppliance, kind: string): Promise<string> {
    const running = Object.entries(app.state.workers).find(([, w]) => w.kind === kind && w.status === "running");
    return running ? running[0] : app.spawnWorker(kind);
  }
}
