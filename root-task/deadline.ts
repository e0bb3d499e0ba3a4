/**
 * A timer for a wall-clock deadline of any distance. Node's `setTimeout`
 * takes at most 2^31−1 ms (24.8 days) and turns anything longer into 1 ms,
 * so a worker with `ttl_s` ≥ 2,147,484 would be revoked at once. A deadline
 * arms the timer in steps of at most {@link MAX_TIMER_STEP_MS} and checks
 * the clock each time it wakes, so it fires at the deadline and never
 * before, however far away it is.
 * @module
 */

/** The longest single timer step (one day): well under Node's 2^31−1 ms. */
export const MAX_TIMER_STEP_MS = 24 * 3600 * 1000;

/**
 * Calls `fn` once the clock (`Date.now()`) reaches `atMs`; `cancel()` stops
 * it. The timer does not keep the process alive.
 *
 * @example
 * ```ts
 * const ttl = new Deadline(Date.now() + 30 * 24 * 3600 * 1000, () => void pool.revoke(id, "ttl expired"));
 * ttl.cancel();
 * ```
 */
export class Deadline {
  readonly atMs: number;
  readonly #fn: () => void;
  #timer: NodeJS.Timeout | undefined;

  constructor(atMs: number, fn: () => void) {
    this.atMs = atMs;
    this.#fn = fn;
    this.#arm();
  }

  /** Stops the deadline; `fn` will not be called. Idempotent. */
  cancel(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(): void {
    const left = this.atMs - Date.now();
    this.#timer = setTimeout(
      () => {
        if (this.#timer === undefined) return;
        if (Date.now() >= this.atMs) {
          this.#timer = undefined;
          this.#fn();
        } else {
          this.#arm();
        }
      },
      Math.min(Math.max(0, left), MAX_TIMER_STEP_MS),
    );
    this.#timer.unref();
  }
}
