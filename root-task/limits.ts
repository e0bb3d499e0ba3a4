/**
 * The root task's control limits as data (STYLE habit 14): every numeric
 * field of a queen command has a range checked when the command is parsed,
 * the signed-ctl counter may only step forward by a bounded amount, and the
 * number of running workers is capped. docs/security.md lists each one with
 * its default and knob; `/proc/mem` shows the worker cap in force.
 * @module
 */
import os from "node:os";

/** An inclusive integer range. */
export interface Range {
  readonly min: number;
  readonly max: number;
}

/**
 * The range of every numeric field of DESIGN §6, by the name used in
 * errors (`budget.ttl_s`, `spawn.lease.mem_mb`, …: the last part is the key).
 *
 * @example
 * ```ts
 * CONTROL_RANGES.ttl_s; // { min: 1, max: 31_536_000 } — one year
 * ```
 */
export const CONTROL_RANGES = {
  /** Telemetry appends before revocation: up to 10^9 (one a second for 31 years). */
  ticks: { min: 1, max: 1_000_000_000 },
  /** Walk/open/read/write operations before revocation. */
  ops: { min: 1, max: 1_000_000_000_000 },
  /** Wall time of a worker or a lease, seconds: up to one year. */
  ttl_s: { min: 1, max: 31_536_000 },
  /** GPU memory of a lease, MiB (16 TiB, the bridge's own bound). */
  mem_mb: { min: 1, max: 16 * 1024 * 1024 },
  /** GPU streams of a lease. */
  streams: { min: 1, max: 1024 },
  /** GPU lease priority. */
  priority: { min: 0, max: 65_535 },
} as const satisfies Record<string, Range>;

/**
 * How far one signed-ctl envelope may move the counter past the last
 * accepted one (2^20). A counter that jumps further is refused, so a single
 * envelope (even a correctly signed one) cannot burn the counter space.
 */
export const CTR_MAX_STEP = 2 ** 20;

/** Host memory one worker process is budgeted at: measured ~16.6 MB RSS, doubled for headroom. */
export const WORKER_MEMORY_ESTIMATE = 32 * 1024 * 1024;

/** The worker cap never goes below this, however small the machine. */
export const MIN_WORKER_CAP = 4;

/** The worker cap derived from memory never goes above this. */
export const MAX_DERIVED_WORKER_CAP = 512;

/**
 * The default cap on running workers: half the machine's memory divided by
 * {@link WORKER_MEMORY_ESTIMATE}, clamped to
 * {@link MIN_WORKER_CAP}..{@link MAX_DERIVED_WORKER_CAP}.
 *
 * @example
 * ```ts
 * defaultWorkerCap(8 * 1024 ** 3); // 128 on an 8 GiB machine
 * defaultWorkerCap(512 * 1024 ** 2); // 8 in a 512 MiB guest
 * ```
 */
export function defaultWorkerCap(totalMemoryBytes: number = os.totalmem()): number {
  const derived = Math.floor(totalMemoryBytes / 2 / WORKER_MEMORY_ESTIMATE);
  return Math.min(MAX_DERIVED_WORKER_CAP, Math.max(MIN_WORKER_CAP, derived));
}

/** The upper bound of the `maxWorkers` knob. */
export const MAX_WORKER_CAP = 100_000;
