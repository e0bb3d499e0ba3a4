/**
 * Deadlines past Node's timer limit: `setTimeout` turns a delay above
 * 2^31−1 ms into 1 ms, so a worker's ttl must be armed in steps.
 */
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { Deadline, MAX_TIMER_STEP_MS } from "../../root-task/deadline.ts";

const DAY_MS = 24 * 3600 * 1000;

describe("Deadline", () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 1_700_000_000_000 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  test("a deadline 2,147,484 s away (past 2^31-1 ms) fires at the deadline, not before", () => {
    const fn = vi.fn();
    new Deadline(Date.now() + 2_147_484_000, fn);
    vi.advanceTimersByTime(1000);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(2_147_484_000 - 1000 - 1);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  test("a year away, it re-arms in steps of at most a day", () => {
    const fn = vi.fn();
    new Deadline(Date.now() + 365 * DAY_MS, fn);
    for (let day = 1; day < 365; day++) {
      vi.advanceTimersByTime(DAY_MS);
      expect(vi.getTimerCount()).toBe(1);
    }
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(DAY_MS);
    expect(fn).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(0);
    expect(MAX_TIMER_STEP_MS).toBeLessThan(2 ** 31 - 1);
  });

  test("a deadline in the past fires at once; a cancelled one never does", () => {
    const past = vi.fn();
    new Deadline(Date.now() - 5000, past);
    const cancelled = vi.fn();
    const d = new Deadline(Date.now() + 10, cancelled);
    d.cancel();
    vi.advanceTimersByTime(100);
    expect(past).toHaveBeenCalledTimes(1);
    expect(cancelled).not.toHaveBeenCalled();
  });
});
