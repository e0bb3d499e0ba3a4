/**
 * The guest's wall clock, kept up with the board's real-time clock.
 *
 * A QEMU guest restored from a snapshot (`cohesix boot --restore`, QMP
 * `loadvm`) resumes with the kernel's clock where the snapshot left it,
 * and a paused guest (`cohesix vm pause`) loses the pause: the kernel
 * counts time on QEMU's virtual clock, which stops with the VM and is
 * saved with it. The PL031 RTC of `virt` (`/dev/rtc0`, built into
 * Debian's arm64 kernel) reads the host's clock instead (`-rtc
 * base=utc,clock=host`: QEMU migrates only its offset), so after a
 * restore the two disagree by the age of the snapshot. Tickets minted on
 * the host would then look issued in the future, and expired ones would
 * look valid.
 *
 * {@link GuestClock} compares the two (the RTC's `since_epoch` in sysfs,
 * one small read) and, when the system clock is behind by
 * {@link DEFAULT_STEP_THRESHOLD_S} or more, has busybox set it from the
 * RTC (`hwclock -s`, see {@link hwclockCommand}): Node cannot set the
 * clock itself, and this way the value comes from the RTC, never from
 * this program nor from anything a client sent. The root task checks
 * tickets against {@link GuestClock.now} (the RTC's time while the system
 * clock is behind it; the step starts in the background, so an attach
 * right after a restore does not wait for it), runs each control command
 * after {@link GuestClock.sync} (so what a command records, and the
 * tickets of the workers it spawns, carry the host's time), and syncs
 * every second besides. It only steps the clock forward: a clock ahead of
 * the RTC is reported and left alone, because stepping back would let an
 * expired ticket pass again.
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { setTimeout as sleep } from "node:timers/promises";

/** Where the kernel shows the RTC's time, in whole seconds since the epoch. */
export const RTC_SINCE_EPOCH = "/sys/class/rtc/rtc0/since_epoch";

/** The RTC device busybox `hwclock` reads. */
export const RTC_DEVICE = "/dev/rtc0";

/**
 * The system clock is stepped when it is this many seconds or more behind
 * the RTC. The RTC counts whole seconds and the kernel sets the clock half
 * a second past the RTC's second at boot, so in normal running the two
 * differ by less than 1.5 s.
 *
 * @example
 * ```ts
 * new GuestClock({ thresholdS: DEFAULT_STEP_THRESHOLD_S * 5 });
 * ```
 */
export const DEFAULT_STEP_THRESHOLD_S = 2;

/**
 * How often the root task compares the clocks besides tickets and control
 * commands, ms: workers' telemetry and the audit log follow the host's time
 * within this long of a restore or a resume. One read of the RTC costs
 * 0.6 ms in the emulated guest.
 *
 * @example
 * ```ts
 * clock.watch({ intervalMs: CLOCK_WATCH_MS, signal });
 * ```
 */
export const CLOCK_WATCH_MS = 1000;

/**
 * After a step that failed, ms before the next try (the RTC's time still
 * goes to ticket checks meanwhile): a missing hwclock is not run every second.
 *
 * @example
 * ```ts
 * setTimeout(() => void clock.sync(), STEP_RETRY_MS);
 * ```
 */
export const STEP_RETRY_MS = 60_000;

/**
 * The command that sets the system clock from the RTC: busybox's hwclock,
 * reading `device` as UTC.
 *
 * @example
 * ```ts
 * hwclockCommand(); // ["/bin/busybox", "hwclock", "-s", "-u", "-f", "/dev/rtc0"]
 * ```
 */
export function hwclockCommand(device: string = RTC_DEVICE): readonly string[] {
  return ["/bin/busybox", "hwclock", "-s", "-u", "-f", device];
}

/**
 * The environment variable through which the guest's run script
 * (`/etc/cohesix/run`, see `rootfs/init.ts`) gives the root task its PID:
 * on SIGUSR1 it runs {@link hwclockCommand}. A shell of a megabyte forks
 * in no time, where forking Node stalls it for a third of a second under
 * emulation, right when a restored guest's first clients arrive.
 *
 * @example
 * ```ts
 * const pid = Number(process.env[HWCLOCK_PID_ENV]);
 * ```
 */
export const HWCLOCK_PID_ENV = "COHESIX_HWCLOCK_PID";

/**
 * A step that asks process `pid` (the run script) to run `hwclock -s` by
 * sending it SIGUSR1; the clock follows a moment later, which
 * {@link GuestClock} waits for.
 *
 * @example
 * ```ts
 * new GuestClock({ step: signalStep(Number(process.env[HWCLOCK_PID_ENV])) });
 * ```
 */
export function signalStep(pid: number): () => Promise<void> {
  if (!Number.isSafeInteger(pid) || pid <= 1) throw new RangeError(`the process that sets the clock must be a PID above 1, got ${pid}`);
  return async () => {
    process.kill(pid, "SIGUSR1");
  };
}

/**
 * A step of the system clock to the RTC.
 *
 * @example
 * ```ts
 * const onStep = (s: ClockStep) => console.log(`clock was ${s.behindS} s behind; now ${new Date(s.toMs).toISOString()}`);
 * ```
 */
export interface ClockStep {
  /** The system clock before the step, ms since the epoch. */
  readonly fromMs: number;
  /** The system clock after the step, ms since the epoch. */
  readonly toMs: number;
  /** What the RTC read before the step, seconds since the epoch. */
  readonly rtcS: number;
  /** Seconds the system clock was behind the RTC, rounded. */
  readonly behindS: number;
  /** How long the step took, ms (by the monotonic clock). */
  readonly tookMs: number;
}

/**
 * The outcome of one {@link GuestClock.sync}.
 *
 * @example
 * ```ts
 * const check: ClockCheck = await clock.sync();
 * if (check.error) console.log(check.error);
 * ```
 */
export interface ClockCheck {
  /** Seconds the system clock was behind the RTC, rounded (negative: ahead); absent when the RTC could not be read. */
  readonly behindS?: number;
  /** The step, when the clock was stepped. */
  readonly step?: ClockStep;
  /** What went wrong: the RTC could not be read, or the step failed or fell short. */
  readonly error?: string;
}

/**
 * Options of `new GuestClock(options)`.
 *
 * @example
 * ```ts
 * const options: GuestClockOptions = { onStep: (s) => console.log(`clock stepped ${s.behindS} s`) };
 * ```
 */
export interface GuestClockOptions {
  /** The RTC's seconds since the epoch; default {@link RTC_SINCE_EPOCH}. */
  readonly rtcFile?: string;
  /** Sets the system clock from the RTC (or starts to: see `stepWaitMs`); default runs {@link hwclockCommand}. */
  readonly step?: () => Promise<void>;
  /** The system clock, ms since the epoch; default `Date.now`. */
  readonly now?: () => number;
  /** Step when the clock is this many seconds or more behind; default {@link DEFAULT_STEP_THRESHOLD_S}. */
  readonly thresholdS?: number;
  /** Called after each step. */
  readonly onStep?: (step: ClockStep) => void;
  /** Called with each new problem (a problem that repeats is told once). */
  readonly onError?: (message: string) => void;
  /** How long to wait for the clock to follow a step that has returned, ms; default 3000. */
  readonly stepWaitMs?: number;
}

/**
 * The system clock checked against the RTC.
 *
 * @example
 * ```ts
 * const clock = GuestClock.detect({ onStep: (s) => say(`cohesix: clock stepped forward ${s.behindS} s to the RTC`) });
 * verifyTicket(aname, { keys, now: clock?.now() ?? Date.now() });
 * await clock?.sync(); // before a control command
 * clock?.watch({ signal });
 * ```
 */
export class GuestClock {
  readonly #rtcFile: string;
  readonly #step: () => Promise<void>;
  readonly #now: () => number;
  readonly #thresholdS: number;
  readonly #onStep: ((step: ClockStep) => void) | undefined;
  readonly #onError: ((message: string) => void) | undefined;
  readonly #stepWaitMs: number;
  #stepping: Promise<ClockCheck> | undefined;
  #lastError = "";
  /** performance.now() before which a failed step is not tried again. */
  #retryAt = 0;

  constructor(options: GuestClockOptions = {}) {
    const thresholdS = options.thresholdS ?? DEFAULT_STEP_THRESHOLD_S;
    if (!Number.isFinite(thresholdS) || thresholdS < 1) throw new RangeError(`clock step threshold must be at least 1 s, got ${thresholdS}`);
    this.#rtcFile = options.rtcFile ?? RTC_SINCE_EPOCH;
    this.#step = options.step ?? runHwclock;
    this.#now = options.now ?? Date.now;
    this.#thresholdS = thresholdS;
    this.#onStep = options.onStep;
    this.#onError = options.onError;
    this.#stepWaitMs = options.stepWaitMs ?? 3000;
  }

  /**
   * A clock for this machine, or undefined when it has no RTC (the file
   * `options.rtcFile` is missing): then there is nothing to follow.
   *
   * @example
   * ```ts
   * const clock = GuestClock.detect(); // undefined on a board without an RTC
   * ```
   */
  static detect(options: GuestClockOptions = {}): GuestClock | undefined {
    return existsSync(options.rtcFile ?? RTC_SINCE_EPOCH) ? new GuestClock(options) : undefined;
  }

  /**
   * The time to check tickets against, ms since the epoch: the system
   * clock, or the RTC's second when the system clock is behind it by the
   * threshold or more — a step to the RTC then starts in the background
   * (see {@link GuestClock.sync}). One small synchronous read; when the RTC
   * cannot be read, the system clock (and the problem goes to `onError`).
   *
   * @example
   * ```ts
   * verifyTicket(aname, { keys, now: clock.now() });
   * ```
   */
  now(): number {
    const m = this.#measure();
    if (m.error !== undefined) {
      this.#failed(m.error);
      return this.#now();
    }
    if (m.behindS < this.#thresholdS) return m.nowMs;
    void this.#startStep(m);
    return m.rtcS * 1000;
  }

  /**
   * Reads the RTC and, when the system clock is behind it by the threshold
   * or more, steps the clock to it. Never rejects: problems are in the
   * result (and told to `onError`). While a step runs, callers share it.
   *
   * @example
   * ```ts
   * const { behindS, step } = await clock.sync();
   * ```
   */
  async sync(): Promise<ClockCheck> {
    if (this.#stepping) return this.#stepping;
    // A synchronous read: one small sysfs file, and no gap between reading
    // the RTC and reading the system clock.
    const before = this.#measure();
    if (before.error !== undefined) return this.#failed(before.error);
    if (before.behindS < this.#thresholdS) {
      if (-before.behindS > this.#thresholdS) {
        return this.#failed(`the system clock is ${-before.behindS} s ahead of the RTC (${this.#rtcFile}); it is left alone, since stepping back would revive expired tickets`, before.behindS);
      }
      this.#lastError = "";
      return { behindS: before.behindS };
    }
    return this.#startStep(before);
  }

  /**
   * Calls {@link GuestClock.sync} every `intervalMs` until `signal` aborts.
   * The timer does not keep the process alive.
   *
   * @example
   * ```ts
   * clock.watch({ signal: stop.signal }); // every CLOCK_WATCH_MS
   * ```
   */
  watch(options: { readonly signal: AbortSignal; readonly intervalMs?: number }): void {
    if (options.signal.aborted) return;
    const timer = setInterval(() => void this.sync(), options.intervalMs ?? CLOCK_WATCH_MS);
    timer.unref();
    options.signal.addEventListener("abort", () => clearInterval(timer), { once: true });
  }

  /** Starts a step, or joins the one under way; after a failed step, not again for {@link STEP_RETRY_MS}. */
  #startStep(before: { rtcS: number; nowMs: number; behindS: number }): Promise<ClockCheck> {
    if (!this.#stepping && performance.now() < this.#retryAt) return Promise.resolve({ behindS: before.behindS, error: this.#lastError });
    this.#stepping ??= this.#stepTo(before).finally(() => {
      this.#stepping = undefined;
    });
    return this.#stepping;
  }

  async #stepTo(before: { rtcS: number; nowMs: number; behindS: number }): Promise<ClockCheck> {
    const started = performance.now();
    this.#retryAt = started + STEP_RETRY_MS; // cleared on success
    try {
      await this.#step();
    } catch (err) {
      return this.#failed(`setting the clock from the RTC failed: ${err instanceof Error ? err.message : String(err)}`, before.behindS);
    }
    // A step may finish after it returns (a signal to the run script): wait for the clock.
    let after = this.#measure();
    while (after.error === undefined && after.behindS >= this.#thresholdS && performance.now() - started < this.#stepWaitMs) {
      await sleep(10);
      after = this.#measure();
    }
    if (after.error !== undefined) return this.#failed(after.error, before.behindS);
    if (after.behindS >= this.#thresholdS) {
      return this.#failed(`the system clock is still ${after.behindS} s behind the RTC ${Math.round(performance.now() - started)} ms after setting it from the RTC`, before.behindS);
    }
    this.#lastError = "";
    this.#retryAt = 0;
    const step: ClockStep = { fromMs: before.nowMs, toMs: after.nowMs, rtcS: before.rtcS, behindS: before.behindS, tookMs: Math.round(performance.now() - started) };
    this.#onStep?.(step);
    return { behindS: before.behindS, step };
  }

  /** The RTC and the system clock, read back to back. */
  #measure(): { rtcS: number; nowMs: number; behindS: number; error?: undefined } | { error: string } {
    let text: string;
    try {
      text = readFileSync(this.#rtcFile, "utf8");
    } catch (err) {
      return { error: `the RTC cannot be read (${this.#rtcFile}): ${(err as Error).message}` };
    }
    const nowMs = this.#now();
    const rtcS = Number(text.trim());
    if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(rtcS)) return { error: `the RTC (${this.#rtcFile}) reads ${JSON.stringify(text.trim().slice(0, 40))}, not whole seconds since the epoch` };
    return { rtcS, nowMs, behindS: Math.round(rtcS - nowMs / 1000) || 0 };
  }

  #failed(error: string, behindS?: number): ClockCheck {
    if (error !== this.#lastError) this.#onError?.(error);
    this.#lastError = error;
    return behindS === undefined ? { error } : { behindS, error };
  }
}

/** Runs busybox `hwclock -s`: child_process is loaded on the first step only. */
async function runHwclock(): Promise<void> {
  const { execFile } = createRequire(import.meta.url)("node:child_process") as typeof import("node:child_process");
  const [file, ...args] = hwclockCommand();
  await new Promise<void>((resolve, reject) => {
    execFile(file!, args, { timeout: 10_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`${hwclockCommand().join(" ")}: ${String(stderr).trim() || err.message}`));
      else resolve();
    });
  });
}
