/**
 * What the sensor worker measures, kept apart from the worker's main
 * module so tests can call it without an appliance.
 */

/** One telemetry record of the sensor worker. */
export interface Reading {
  readonly tick: number;
  readonly ts_ms: number;
  /** Simulated temperature in °C: a slow sine wave around 21 °C. */
  readonly temp_c: number;
}

/**
 * The reading for tick `n` (from 1) taken at `nowMs`.
 *
 * @example
 * ```ts
 * reading(1, Date.now()); // { tick: 1, ts_ms: …, temp_c: 21.31 }
 * ```
 */
export function reading(n: number, nowMs: number): Reading {
  const temp = 21 + 2 * Math.sin(n / 10);
  return { tick: n, ts_ms: nowMs, temp_c: Math.round(temp * 100) / 100 };
}
