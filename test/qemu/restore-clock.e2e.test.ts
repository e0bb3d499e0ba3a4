/**
 * End to end on the aarch64-virt board: a guest restored from a snapshot
 * far older than the tickets' allowed skew follows the host's clock, so
 * the queen attaches with a ticket minted after the restore.
 *
 * Without waiting years: the guest is first booted with its RTC on VM time
 * from the epoch (`--rtc-base 1970-01-01T00:00:00 --rtc-clock vm`), so its
 * system clock and RTC agree on 1970 and a ticket minted on the host is
 * refused as issued in the future — the clock does not move for a ticket.
 * The snapshot then carries a 1970 clock and an RTC offset of zero;
 * restored by a plain `cohesix boot --restore` (RTC on the host's clock,
 * as always), the RTC reads the host's time while the kernel's clock
 * resumes in 1970, as it would after any old snapshot. The root task must
 * step its clock to the RTC, and the queen's command must round-trip.
 *
 * Needs qemu-system-aarch64 and the board's artefacts (scripts/setup.sh).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2e, alive } from "./harness.ts";

const BOOT_MS = 300_000;
/** The epoch: with `--rtc-clock vm` the RTC's offset from VM time is then zero, and stays zero in the snapshot. */
const EPOCH_BASE = "1970-01-01T00:00:00";
/** Longer than any real snapshot's age: the clock was behind by at least this many seconds. */
const DECADES_S = 50 * 365 * 86_400;

/** The suite's harness, made in beforeAll. */
let e2e!: E2e;
let bootArgs: string[] = [];

describe("aarch64-virt guest restored from an old snapshot (QEMU)", () => {
  beforeAll(async () => {
    e2e = await E2e.create("cohesix-e2e-clock-");
    bootArgs = ["--detach", "--port", "0", "--queen-pub", e2e.queenPub];
    const r = await e2e.cohesix(["boot", ...bootArgs, "--rtc-base", EPOCH_BASE, "--rtc-clock", "vm"], { timeoutMs: BOOT_MS });
    if (r.exitCode !== 0) throw new Error(`cohesix boot failed (${r.exitCode}):\n${r.stderr}`);
    e2e.dial = r.stdout.split("\n")[0]!;
    expect(e2e.dial).toMatch(/^tcp!127\.0\.0\.1!\d+$/);
  }, BOOT_MS + 60_000);

  afterAll(async () => {
    if (e2e) await e2e.teardown();
  }, 120_000);

  it("a guest whose RTC agrees with its 1970 clock refuses a host ticket as issued in the future, and keeps its clock", async () => {
    let last = "";
    for (let i = 0; i < 10 && !last.includes("issued in the future"); i++) {
      const r = await e2e.asQueen(["cat", "/proc/boot"]);
      expect(r.exitCode, r.stdout).not.toBe(0);
      last = r.stderr;
      if (!last.includes("issued in the future")) await sleep(500);
    }
    expect(last).toMatch(/permission: ticket not valid until .*: issued in the future/);
    expect(await e2e.consoleText()).not.toContain("clock stepped");
  }, 120_000);

  it("restored with the RTC on the host's clock, the guest steps its clock to the RTC and the queen's command round-trips", async () => {
    const snap = await e2e.cohesix(["vm", "snapshot", "old"]);
    expect(snap.exitCode, snap.stderr).toBe(0);
    expect(snap.stdout).toContain("paused");
    const first = await e2e.pidOf();
    const d1 = await e2e.cohesix(["down"]);
    expect(d1.exitCode, d1.stderr).toBe(0);
    expect(first !== undefined && alive(first)).toBe(false);

    const r = await e2e.cohesix(["boot", ...bootArgs, "--restore", "old"], { timeoutMs: BOOT_MS });
    expect(r.exitCode, r.stderr).toBe(0);
    e2e.dial = r.stdout.split("\n")[0]!;

    // A ticket minted now, on the host: the root task checks it against the RTC's time.
    const reply = await e2e.queen(["ctl", '{"spawn":"heartbeat","ticks":2}']);
    const id = /worker-\d+/.exec(reply)?.[0];
    expect(id, reply).toBeDefined();
    let telemetry = "";
    for (let i = 0; i < 60 && !telemetry.includes('"tick"'); i++) {
      await sleep(1000);
      telemetry = await e2e.queen(["cat", `/worker/${id}/telemetry`]);
    }
    const tick = telemetry.split("\n").find((l) => l.includes('"tick"'));
    expect(tick, telemetry).toBeDefined();
    const { ts_ms } = JSON.parse(tick!) as { ts_ms: number };
    // The worker's clock is the guest's: now the host's, give or take the test's pace.
    expect(Math.abs(ts_ms - Date.now()), `ts_ms ${new Date(ts_ms).toISOString()}`).toBeLessThan(120_000);

    const text = await e2e.consoleText();
    const stepped = /cohesix: clock stepped forward (\d+) s to the RTC's (\S+)/.exec(text);
    expect(stepped, text.slice(-3000)).not.toBeNull();
    expect(Number(stepped![1])).toBeGreaterThan(DECADES_S);
    expect(Math.abs(Date.parse(stepped![2]!) - Date.now())).toBeLessThan(300_000);
    expect(await e2e.queen(["cat", "/log/queen.log"])).toMatch(/clock stepped forward \d+ s to the RTC's/);

    const second = await e2e.pidOf();
    const d2 = await e2e.cohesix(["down"]);
    expect(d2.exitCode, d2.stderr).toBe(0);
    expect(second !== undefined && alive(second)).toBe(false);
  }, BOOT_MS + 180_000);
});
