/**
 * The guest's clock against its RTC (root-task/guest-clock.ts), with a fake
 * RTC file and a fake system clock whose only mover is the fake `hwclock
 * -s`: behind → stepped to the RTC, within the threshold or ahead → left
 * alone, problems reported once, concurrent checks sharing one step. Then
 * the appliance: a queen ticket minted on the host is refused by a root
 * task whose clock is an old snapshot's, and accepted once the clock
 * follows the RTC — while a ticket that is really from the future is
 * still refused, and a forged one still fails its signature.
 */
import { execa } from "execa";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { NineClient, NineError, dial } from "../../nine-door/index.ts";
import {
  DEFAULT_STEP_THRESHOLD_S,
  GuestClock,
  RTC_DEVICE,
  STEP_RETRY_MS,
  hwclockCommand,
  mintTicket,
  signalStep,
  serveAppliance,
  writeKeyPair,
  type ClockStep,
} from "../../root-task/index.ts";

const scratch = mkdtempSync(join(tmpdir(), "cohesix-guest-clock-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Host time of the tests: 2026-11-28T05:00:00Z. */
const HOST_S = 1_795_842_000;
/** A snapshot taken a day before. */
const DAY_S = 86_400;

/** A fake board: an RTC file, a system clock, and a fake `hwclock -s` that sets the clock from the RTC file. */
function board(name: string, options: { rtcS: number; systemMs: number }) {
  const rtcFile = join(scratch, `${name}.since_epoch`);
  const state = { rtcS: options.rtcS, systemMs: options.systemMs, steps: 0 };
  const setRtc = (s: number): void => {
    state.rtcS = s;
    writeFileSync(rtcFile, `${s}\n`);
  };
  setRtc(options.rtcS);
  return {
    rtcFile,
    state,
    setRtc,
    now: () => state.systemMs,
    step: async () => {
      state.steps++;
      await sleep(5);
      state.systemMs = state.rtcS * 1000; // busybox hwclock -s: whole seconds of the RTC
    },
  };
}

describe("GuestClock", () => {
  it("steps a clock that is a day behind the RTC to the RTC, and reports the step", async () => {
    const b = board("behind", { rtcS: HOST_S, systemMs: (HOST_S - DAY_S) * 1000 + 250 });
    const steps: ClockStep[] = [];
    const clock = new GuestClock({ rtcFile: b.rtcFile, now: b.now, step: b.step, onStep: (s) => steps.push(s) });
    const check = await clock.sync();
    expect(check.error).toBeUndefined();
    expect(check.behindS).toBe(DAY_S);
    expect(b.state.systemMs).toBe(HOST_S * 1000);
    expect(steps).toEqual([{ fromMs: (HOST_S - DAY_S) * 1000 + 250, toMs: HOST_S * 1000, rtcS: HOST_S, behindS: DAY_S, tookMs: expect.any(Number) }]);
    expect(steps[0]!.tookMs).toBeGreaterThanOrEqual(4);
    expect(check.step).toEqual(steps[0]);
  });

  it("leaves a clock within the threshold alone", async () => {
    for (const [offsetMs, behindS] of [[0, 0], [400, 0], [-1400, 1], [1400, -1]] as const) {
      const b = board("close", { rtcS: HOST_S, systemMs: HOST_S * 1000 + offsetMs });
      const clock = new GuestClock({ rtcFile: b.rtcFile, now: b.now, step: b.step });
      const check = await clock.sync();
      expect(check, `offset ${offsetMs} ms`).toEqual({ behindS });
      expect(b.state.steps).toBe(0);
    }
  });

  it("steps a clock exactly the threshold behind", async () => {
    const b = board("threshold", { rtcS: HOST_S, systemMs: (HOST_S - DEFAULT_STEP_THRESHOLD_S) * 1000 });
    const check = await new GuestClock({ rtcFile: b.rtcFile, now: b.now, step: b.step }).sync();
    expect(check.behindS).toBe(DEFAULT_STEP_THRESHOLD_S);
    expect(b.state.steps).toBe(1);
  });

  it("never steps a clock back: one ahead of the RTC is reported once and left alone", async () => {
    const b = board("ahead", { rtcS: HOST_S - DAY_S, systemMs: HOST_S * 1000 });
    const errors: string[] = [];
    const clock = new GuestClock({ rtcFile: b.rtcFile, now: b.now, step: b.step, onError: (m) => errors.push(m) });
    const first = await clock.sync();
    await clock.sync();
    expect(first.behindS).toBe(-DAY_S);
    expect(first.error).toMatch(/ahead of the RTC .*left alone/);
    expect(b.state.systemMs).toBe(HOST_S * 1000);
    expect(b.state.steps).toBe(0);
    expect(errors).toHaveLength(1);
  });

  it("concurrent checks share one step", async () => {
    const b = board("concurrent", { rtcS: HOST_S, systemMs: (HOST_S - 3600) * 1000 });
    const clock = new GuestClock({ rtcFile: b.rtcFile, now: b.now, step: b.step });
    const checks = await Promise.all(Array.from({ length: 8 }, () => clock.sync()));
    expect(b.state.steps).toBe(1);
    for (const c of checks) expect(c.behindS).toBe(3600);
    // Once stepped, the next check finds nothing to do.
    expect(await clock.sync()).toEqual({ behindS: 0 });
  });

  it("follows the RTC again after a second restore", async () => {
    const b = board("twice", { rtcS: HOST_S, systemMs: (HOST_S - 600) * 1000 });
    const clock = new GuestClock({ rtcFile: b.rtcFile, now: b.now, step: b.step });
    await clock.sync();
    b.state.systemMs = (HOST_S - 900) * 1000; // restored from an older snapshot
    b.setRtc(HOST_S + 60);
    expect((await clock.sync()).behindS).toBe(960);
    expect(b.state.systemMs).toBe((HOST_S + 60) * 1000);
    expect(b.state.steps).toBe(2);
  });

  it("reports an RTC that cannot be read, or reads nonsense, once, and moves nothing", async () => {
    const errors: string[] = [];
    const missing = new GuestClock({ rtcFile: join(scratch, "absent"), step: () => Promise.reject(new Error("must not step")), onError: (m) => errors.push(m) });
    const a = await missing.sync();
    await missing.sync();
    expect(a.error).toMatch(/^the RTC cannot be read \(.*absent\): ENOENT/);
    expect(a.behindS).toBeUndefined();
    expect(errors).toHaveLength(1);

    for (const text of ["", "soon\n", "-5\n", "1.5\n", "99999999999999999999\n"]) {
      const file = join(scratch, "garbage");
      writeFileSync(file, text);
      let stepped = false;
      const check = await new GuestClock({ rtcFile: file, now: () => 0, step: async () => void (stepped = true) }).sync();
      expect(check.error, JSON.stringify(text)).toMatch(/reads .*, not whole seconds since the epoch/);
      expect(stepped).toBe(false);
    }
  });

  it("reports a failed step, and a step that leaves the clock behind", async () => {
    const b = board("fails", { rtcS: HOST_S, systemMs: (HOST_S - 3600) * 1000 });
    const errors: string[] = [];
    const failing = new GuestClock({
      rtcFile: b.rtcFile,
      now: b.now,
      step: () => Promise.reject(new Error("hwclock: can't open '/dev/rtc0': No such file or directory")),
      onError: (m) => errors.push(m),
    });
    const check = await failing.sync();
    expect(check.error).toBe("setting the clock from the RTC failed: hwclock: can't open '/dev/rtc0': No such file or directory");
    expect(check.behindS).toBe(3600);

    const noop = new GuestClock({ rtcFile: b.rtcFile, now: b.now, step: async () => {}, stepWaitMs: 50, onError: (m) => errors.push(m) });
    expect((await noop.sync()).error).toMatch(/^the system clock is still 3600 s behind the RTC \d+ ms after setting it from the RTC$/);
    expect(errors).toHaveLength(2);
  });

  it("now() is the RTC's time while the clock is behind, and starts one step in the background", async () => {
    const b = board("now-behind", { rtcS: HOST_S, systemMs: (HOST_S - DAY_S) * 1000 });
    const steps: ClockStep[] = [];
    const clock = new GuestClock({ rtcFile: b.rtcFile, now: b.now, step: b.step, onStep: (s) => steps.push(s) });
    expect(clock.now()).toBe(HOST_S * 1000);
    expect(clock.now()).toBe(HOST_S * 1000);
    expect(b.state.systemMs).toBe((HOST_S - DAY_S) * 1000); // not yet: the step runs in the background
    expect((await clock.sync()).step?.behindS).toBe(DAY_S); // joins the step under way
    expect(b.state.steps).toBe(1);
    expect(steps).toHaveLength(1);
    b.state.systemMs += 250;
    expect(clock.now()).toBe(HOST_S * 1000 + 250);
  });

  it("now() is the system clock when it is within the threshold, ahead, or the RTC cannot be read", () => {
    const close = board("now-close", { rtcS: HOST_S, systemMs: HOST_S * 1000 + 700 });
    expect(new GuestClock({ rtcFile: close.rtcFile, now: close.now, step: close.step }).now()).toBe(HOST_S * 1000 + 700);
    const ahead = board("now-ahead", { rtcS: HOST_S - DAY_S, systemMs: HOST_S * 1000 });
    expect(new GuestClock({ rtcFile: ahead.rtcFile, now: ahead.now, step: ahead.step }).now()).toBe(HOST_S * 1000);
    const errors: string[] = [];
    const missing = new GuestClock({ rtcFile: join(scratch, "absent-now"), now: () => 42, onError: (m) => errors.push(m) });
    expect(missing.now()).toBe(42);
    expect(errors[0]).toMatch(/the RTC cannot be read/);
    expect(close.state.steps + ahead.state.steps).toBe(0);
  });

  it("does not try a failed step again for a minute, while now() still gives the RTC's time", async () => {
    const b = board("retry", { rtcS: HOST_S, systemMs: (HOST_S - 3600) * 1000 });
    let tries = 0;
    const clock = new GuestClock({ rtcFile: b.rtcFile, now: b.now, step: () => Promise.reject(new Error(`try ${++tries}`)) });
    expect((await clock.sync()).error).toMatch(/try 1$/);
    expect((await clock.sync()).error).toMatch(/try 1$/);
    expect(clock.now()).toBe(HOST_S * 1000);
    expect(tries).toBe(1);
    expect(STEP_RETRY_MS).toBe(60_000);
  });

  it("waits for a step that finishes after it returns (a signal to the run script)", async () => {
    const b = board("later", { rtcS: HOST_S, systemMs: (HOST_S - 3600) * 1000 });
    const clock = new GuestClock({
      rtcFile: b.rtcFile,
      now: b.now,
      step: async () => {
        setTimeout(() => (b.state.systemMs = HOST_S * 1000), 100);
      },
    });
    const check = await clock.sync();
    expect(check.error).toBeUndefined();
    expect(check.step?.tookMs).toBeGreaterThanOrEqual(90);
  });

  it("signalStep() sends SIGUSR1 to the run script, and refuses PIDs 0 and 1", async () => {
    const child = execa(process.execPath, ["-e", 'process.on("SIGUSR1", () => { console.log("usr1"); process.exit(0); }); console.log("ready"); setInterval(() => {}, 1000);'], { reject: false, timeout: 20_000 });
    await new Promise<void>((resolve) => child.stdout!.once("data", () => resolve()));
    await signalStep(child.pid!)();
    expect((await child).stdout).toBe("ready\nusr1");
    expect(() => signalStep(1)).toThrow(/a PID above 1, got 1/);
    expect(() => signalStep(0)).toThrow(RangeError);
  });

  it("detect() finds no clock on a machine without an RTC", () => {
    expect(GuestClock.detect({ rtcFile: join(scratch, "no-rtc") })).toBeUndefined();
    const b = board("detect", { rtcS: HOST_S, systemMs: HOST_S * 1000 });
    expect(GuestClock.detect({ rtcFile: b.rtcFile })).toBeInstanceOf(GuestClock);
  });

  it("refuses a threshold under one second", () => {
    expect(() => new GuestClock({ thresholdS: 0 })).toThrow(/at least 1 s, got 0/);
    expect(() => new GuestClock({ thresholdS: Number.NaN })).toThrow(/at least 1 s/);
  });

  it("the step is busybox hwclock reading the RTC as UTC", () => {
    expect(hwclockCommand()).toEqual(["/bin/busybox", "hwclock", "-s", "-u", "-f", RTC_DEVICE]);
    expect(RTC_DEVICE).toBe("/dev/rtc0");
  });

  it("watch() checks until its signal aborts", async () => {
    const b = board("watch", { rtcS: HOST_S, systemMs: (HOST_S - 100) * 1000 });
    const stop = new AbortController();
    new GuestClock({ rtcFile: b.rtcFile, now: b.now, step: b.step }).watch({ signal: stop.signal, intervalMs: 10 });
    for (let i = 0; i < 200 && b.state.steps === 0; i++) await sleep(10);
    expect(b.state.steps).toBe(1);
    stop.abort();
    b.state.systemMs = (HOST_S - 100) * 1000;
    await sleep(100);
    expect(b.state.steps).toBe(1);
  });
});

describe("the appliance checks tickets against the RTC's time", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  /** Serves the host-board appliance with a fake RTC at the host's time while the system clock is `behindS` behind. */
  async function restored(name: string, behindS: number, withClock: boolean) {
    const dir = join(scratch, name);
    const queen = await writeKeyPair(join(dir, "keys"), { name: "queen" });
    const hostMs = Date.now();
    const rtcFile = join(dir, "since_epoch");
    writeFileSync(rtcFile, `${Math.floor(hostMs / 1000)}\n`);
    // Only Date is faked: the system clock of a guest restored from an old snapshot.
    vi.useFakeTimers({ toFake: ["Date"], now: hostMs - behindS * 1000 });
    const steps: ClockStep[] = [];
    const clock = new GuestClock({
      rtcFile,
      // A slow step: the command must wait for it, the attach need not.
      step: async () => {
        await sleep(300);
        vi.setSystemTime(Number(readFileSync(rtcFile, "utf8").trim()) * 1000);
      },
      onStep: (s) => steps.push(s),
    });
    const running = await serveAppliance({
      board: "host",
      listen: "127.0.0.1:0",
      stateDir: join(dir, "state"),
      queenPub: queen.publicPath,
      ...(withClock ? { clock } : {}),
    });
    return { running, queenKey: queen.privateKey, hostMs, steps };
  }

  async function attach(dialString: string, aname: string): Promise<string> {
    const client = await NineClient.connect(await dial(dialString), { dialect: "9P2000" });
    try {
      const root = await client.attach({ uname: "queen", aname });
      const f = await (await root.walk(["queen", "ctl"])).open("rw");
      await f.write('{"budget":{"ttl_s":120}}');
      return new TextDecoder().decode(await f.read(0));
    } finally {
      client.close();
    }
  }

  it("without the clock, a ticket minted on the host is refused as issued in the future", async () => {
    const { running, queenKey, hostMs } = await restored("no-clock", DAY_S, false);
    try {
      const ticket = mintTicket({ role: "queen", sub: "queen" }, queenKey, { now: hostMs });
      const err = await attach(running.dialString, ticket).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NineError);
      expect((err as NineError).message).toMatch(/^permission: ticket not valid until .*issued in the future/);
    } finally {
      await running.stop("test done");
    }
  });

  it("with the clock, the same ticket is accepted at once, and a command round-trips after the step to the RTC", async () => {
    const { running, queenKey, hostMs, steps } = await restored("clock", DAY_S, true);
    try {
      const ticket = mintTicket({ role: "queen", sub: "queen" }, queenKey, { now: hostMs });
      const reply = await attach(running.dialString, ticket);
      expect(reply).toMatch(/ttl_s/);
      // The reply came after the step: the command waited for it.
      expect(steps).toHaveLength(1);
      expect(steps[0]!.behindS).toBeGreaterThanOrEqual(DAY_S - 1);
      expect(Math.abs(Date.now() - hostMs)).toBeLessThan(5000);
    } finally {
      await running.stop("test done");
    }
  });

  it("with the clock, a ticket from beyond the RTC's time is still refused, and a forged one fails its signature", async () => {
    const { running, queenKey, hostMs, steps } = await restored("future", DAY_S, true);
    try {
      const future = mintTicket({ role: "queen", sub: "queen" }, queenKey, { now: hostMs + 3600_000 });
      const e1 = (await attach(running.dialString, future).catch((e: unknown) => e)) as NineError;
      expect(e1.message).toMatch(/issued in the future/);
      const forged = mintTicket({ role: "queen", sub: "queen" }, new Uint8Array(32).fill(9), { now: hostMs });
      const e2 = (await attach(running.dialString, forged).catch((e: unknown) => e)) as NineError;
      expect(e2.message).toMatch(/signature does not verify/);
      // The clock followed the RTC (in the background), not the tickets.
      for (let i = 0; i < 100 && steps.length === 0; i++) await sleep(20);
      expect(steps).toHaveLength(1);
      expect(Math.abs(Date.now() - hostMs)).toBeLessThan(5000);
    } finally {
      await running.stop("test done");
    }
  });

  it("with the clock, a ticket that expired while the snapshot slept is refused", async () => {
    const { running, queenKey, hostMs } = await restored("expired", DAY_S, true);
    try {
      // Valid at the snapshot's time, expired by the host's.
      const old = mintTicket({ role: "queen", sub: "queen" }, queenKey, { now: hostMs - DAY_S * 1000, ttlS: 3600 });
      const err = (await attach(running.dialString, old).catch((e: unknown) => e)) as NineError;
      expect(err.message).toMatch(/^permission: ticket expired at/);
    } finally {
      await running.stop("test done");
    }
  });
});
