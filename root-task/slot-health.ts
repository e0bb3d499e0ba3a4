/**
 * Health-confirmed boots: a slot U-Boot is trying (an update, not yet
 * confirmed) becomes the confirmed slot only once the appliance proved
 * itself on it, and never before (docs/updates.md, "Confirm and roll
 * back"). The verdict needs, all at once:
 *
 * - the lifecycle ONLINE (so the commit log was verified and replayed);
 * - every required worker (the project's `"required": true`) started at
 *   boot still running after the health window;
 * - the optional health worker exited with code 0.
 *
 * A required worker that ends, a health worker that fails, or no verdict
 * before the deadline fails the try. The caller records why and reboots;
 * U-Boot then takes the next try or rolls back.
 * @module
 */
import { setTimeout as sleep } from "node:timers/promises";
import { BusyError } from "../nine-door/index.ts";
import { nextBootState, readBootStateFiles, writeBootStateFiles, type BootState, type Slot } from "../update/index.ts";

/** Default health window: how long required workers must run, ms (`cohesix.health_window=` in seconds, or the config's `health.windowS`). */
export const DEFAULT_HEALTH_WINDOW_MS = 10_000;
/** Default deadline for a verdict, ms (`cohesix.health_deadline=` in seconds, or the config's `health.deadlineS`). */
export const DEFAULT_HEALTH_DEADLINE_MS = 120_000;

/** A worker the verdict watches, as the appliance's state shows it. */
export interface WatchedWorker {
  readonly status: "running" | "exited" | "killed" | "revoked";
  readonly reason?: string;
}

/** What {@link awaitHealth} reads and how long it waits. */
export interface HealthOptions {
  /** True once the lifecycle is ONLINE. */
  online(): boolean;
  /** Required workers started at boot, by id, with their kind (for the reason). */
  readonly required: readonly { readonly id: string; readonly kind: string }[];
  /** The health worker's id, when the config names one. */
  readonly healthWorker?: { readonly id: string; readonly kind: string };
  /** A worker's state now (undefined: not in the state). */
  worker(id: string): WatchedWorker | undefined;
  /** Required workers must run this long, ms; default {@link DEFAULT_HEALTH_WINDOW_MS}. */
  readonly windowMs?: number;
  /** No verdict by then fails, ms; default {@link DEFAULT_HEALTH_DEADLINE_MS}. */
  readonly deadlineMs?: number;
  /** How often to look, ms; default 250. */
  readonly pollMs?: number;
  /** Stops waiting (resolves `{ healthy: false, reason: "stopped" }`). */
  readonly signal?: AbortSignal;
  /** The clock, ms; default `performance.now`. */
  now?(): number;
}

/** The verdict. */
export type HealthVerdict = { readonly healthy: true } | { readonly healthy: false; readonly reason: string };

const ok = (reason?: string): boolean => reason === undefined || /^exited with code 0$/.test(reason);

/**
 * Waits for the verdict on a try boot (see the module comment).
 *
 * @example
 * ```ts
 * const verdict = await awaitHealth({ online: () => app.lifecycle.state === "ONLINE", required: [{ id: "worker-1", kind: "camera" }], worker: (id) => app.state.workers[id] });
 * if (!verdict.healthy) console.log(verdict.reason); // "required worker camera (worker-1) exited with code 1"
 * ```
 */
export async function awaitHealth(options: HealthOptions): Promise<HealthVerdict> {
  const now = options.now ?? (() => performance.now());
  const windowMs = options.windowMs ?? DEFAULT_HEALTH_WINDOW_MS;
  const deadlineMs = options.deadlineMs ?? DEFAULT_HEALTH_DEADLINE_MS;
  const started = now();
  for (;;) {
    if (options.signal?.aborted) return { healthy: false, reason: "stopped" };
    const elapsed = now() - started;
    for (const r of options.required) {
      const w = options.worker(r.id);
      if (!w || w.status !== "running") return { healthy: false, reason: `required worker ${r.kind} (${r.id}) ${w ? `${w.status}${w.reason ? `: ${w.reason}` : ""}` : "is gone"}` };
    }
    const health = options.healthWorker ? options.worker(options.healthWorker.id) : undefined;
    if (options.healthWorker && health && health.status !== "running" && !(health.status === "exited" && ok(health.reason))) {
      return { healthy: false, reason: `health worker ${options.healthWorker.kind} (${options.healthWorker.id}) ${health.status}${health.reason ? `: ${health.reason}` : ""}` };
    }
    if (options.healthWorker && !health) return { healthy: false, reason: `health worker ${options.healthWorker.kind} (${options.healthWorker.id}) is gone` };
    const online = options.online();
    const healthDone = !options.healthWorker || health?.status === "exited";
    if (online && elapsed >= windowMs && healthDone) return { healthy: true };
    if (elapsed >= deadlineMs) {
      const missing = [
        ...(online ? [] : ["the lifecycle is not ONLINE"]),
        ...(healthDone ? [] : [`health worker ${options.healthWorker!.kind} (${options.healthWorker!.id}) still running`]),
      ];
      return { healthy: false, reason: `not healthy within ${Math.round(deadlineMs / 1000)} s: ${missing.join(", ") || "the health window outlasted the deadline"}` };
    }
    await sleep(Math.min(options.pollMs ?? 250, Math.max(1, deadlineMs - elapsed)));
  }
}

/** Options of {@link markSlotGood}. */
export interface MarkSlotGoodOptions {
  /** Where the boot partition is mounted, e.g. `/boot`. */
  readonly bootDir: string;
  /** The slot that passed its health check. */
  readonly slot: Slot;
  /**
   * Remounts the boot partition (`rw` before the write, `ro` after, also
   * after a failed write); default nothing (a host folder).
   */
  remount?(mode: "rw" | "ro"): Promise<void>;
}

/**
 * Confirms a trying slot: `ab_active=S, ab_S=good, ab_try=none` through
 * the one writer (`writeBootStateFiles`: `state.env` then `state.bak`,
 * each synced), on a read-write remount of the boot partition held only
 * for the write. Refuses with `busy:` when the state does not say `slot`
 * is being tried (nothing to confirm; nothing is written). Resolves with
 * the state written.
 *
 * @example
 * ```ts
 * await markSlotGood({ bootDir: "/boot", slot: "b", remount: (mode) => busybox(["mount", "-o", `remount,${mode}`, "/boot"]) });
 * // state.env: ab_active=b ab_b=good ab_try=none
 * ```
 */
export async function markSlotGood(options: MarkSlotGoodOptions): Promise<BootState> {
  const { state } = await readBootStateFiles(options.bootDir);
  const slot = options.slot;
  if (!state) throw new BusyError(`slot ${slot} not confirmed: no whole copy of the boot state in ${options.bootDir}`);
  if (state.try !== slot || state.slots[slot] !== "trying") {
    throw new BusyError(`slot ${slot} not confirmed: the boot state does not try it (active=${state.active} try=${state.try ?? "none"} ${slot}=${state.slots[slot]})`);
  }
  const next = nextBootState(state, { active: slot, try: null, tries: 0, slots: { ...state.slots, [slot]: "good" } });
  await options.remount?.("rw");
  try {
    await writeBootStateFiles(options.bootDir, next);
  } finally {
    await options.remount?.("ro");
  }
  return next;
}
