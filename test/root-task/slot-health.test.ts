/**
 * Health-confirmed boots: a slot being tried is confirmed only once the
 * appliance is ONLINE, its required workers ran through the health window
 * and the health worker exited 0; a required worker that ends, a failing
 * health worker or no verdict before the deadline fail the try. The
 * confirmation goes through the boot state's one writer on a read-write
 * remount held only for the write, and a normal boot never writes. The
 * hardware watchdog is fed, and disarmed only by a clean stop.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GuestSlot, Watchdog, awaitHealth, markSlotGood, readTryFailure, UNRECORDED_FAILURE, type SlotAppliance, type WatchedWorker } from "../../root-task/index.ts";
import { formatBootState, readBootStateFiles, writeBootStateFiles, type BootState } from "../../update/index.ts";

let dir = "";
let n = 0;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-slot-health-"));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const trying: BootState = { seq: 3, active: "a", try: "b", tries: 1, slots: { a: "good", b: "trying" } };
const normal: BootState = { seq: 1, active: "a", try: null, tries: 0, slots: { a: "good", b: "good" } };

async function bootDir(state: BootState): Promise<string> {
  const boot = join(dir, `boot-${++n}`);
  await mkdir(boot, { recursive: true });
  await writeBootStateFiles(boot, state);
  return boot;
}

/** A clock that moves 100 ms each time it is read: the verdict's timing without waiting. */
function steppingClock(): () => number {
  let t = 0;
  return () => (t += 100);
}

const running: WatchedWorker = { status: "running" };

describe("awaitHealth", () => {
  it("is healthy once ONLINE and the required workers outlived the window", async () => {
    let online = false;
    let looks = 0;
    const verdict = await awaitHealth({
      online: () => (++looks > 3 ? (online = true) : online),
      required: [{ id: "worker-1", kind: "camera" }],
      worker: () => running,
      windowMs: 1000,
      deadlineMs: 60_000,
      pollMs: 1,
      now: steppingClock(),
    });
    expect(verdict).toEqual({ healthy: true });
    expect(online).toBe(true);
  });

  it("fails at once when a required worker exits, naming it and why", async () => {
    const verdict = await awaitHealth({
      online: () => true,
      required: [{ id: "worker-2", kind: "crash" }],
      worker: () => ({ status: "exited", reason: "exited with code 1" }),
      windowMs: 10_000,
      pollMs: 1,
      now: steppingClock(),
    });
    expect(verdict).toEqual({ healthy: false, reason: "required worker crash (worker-2) exited: exited with code 1" });
  });

  it("waits for the health worker and needs its exit code 0", async () => {
    let looks = 0;
    const health = (reason: string) => (): WatchedWorker => (++looks > 5 ? { status: "exited", reason } : running);
    const base = { online: () => true, required: [], windowMs: 0, pollMs: 1, now: steppingClock(), healthWorker: { id: "worker-3", kind: "selfcheck" } };
    expect(await awaitHealth({ ...base, worker: health("exited with code 0") })).toEqual({ healthy: true });
    looks = 0;
    expect(await awaitHealth({ ...base, worker: health("exited with code 2") })).toEqual({ healthy: false, reason: "health worker selfcheck (worker-3) exited: exited with code 2" });
  });

  it("fails when there is no verdict by the deadline, saying what was missing", async () => {
    const verdict = await awaitHealth({ online: () => false, required: [], worker: () => running, windowMs: 1000, deadlineMs: 5000, pollMs: 1, now: steppingClock() });
    expect(verdict).toEqual({ healthy: false, reason: "not healthy within 5 s: the lifecycle is not ONLINE" });
  });
});

describe("markSlotGood", () => {
  it("writes ab_active=b ab_b=good ab_try=none through the one writer, between a rw and a ro remount", async () => {
    const boot = await bootDir(trying);
    const mounts: string[] = [];
    const written = await markSlotGood({ bootDir: boot, slot: "b", remount: async (mode) => void mounts.push(mode) });
    const expected: BootState = { seq: 4, active: "b", try: null, tries: 0, slots: { a: "good", b: "good" } };
    expect(written).toEqual(expected);
    expect(mounts).toEqual(["rw", "ro"]);
    for (const name of ["state.env", "state.bak"]) expect(Buffer.compare(await readFile(join(boot, name)), formatBootState(expected))).toBe(0);
  });

  it("refuses a slot the state does not try, and then neither remounts nor writes", async () => {
    const boot = await bootDir(normal);
    const before = await readFile(join(boot, "state.env"));
    const mounts: string[] = [];
    await expect(markSlotGood({ bootDir: boot, slot: "b", remount: async (mode) => void mounts.push(mode) })).rejects.toThrow(/^busy: slot b not confirmed: the boot state does not try it/);
    expect(mounts).toEqual([]);
    expect(Buffer.compare(await readFile(join(boot, "state.env")), before)).toBe(0);
  });

  it("remounts read-only again when the write fails", async () => {
    const boot = join(dir, "no-such-boot");
    const mounts: string[] = [];
    await expect(markSlotGood({ bootDir: boot, slot: "b", remount: async (mode) => void mounts.push(mode) })).rejects.toThrow(/^busy: slot b not confirmed: no whole copy/);
    const real = await bootDir(trying);
    await expect(
      markSlotGood({ bootDir: real, slot: "b", remount: async (mode) => {
        mounts.push(mode);
        if (mode === "rw") await rm(real, { recursive: true });
      } }),
    ).rejects.toThrow();
    expect(mounts).toEqual(["rw", "ro"]);
  });
});

/** A stand-in appliance: ONLINE, workers as given, spawns recorded. */
function fakeApp(workers: Record<string, WatchedWorker & { kind: string }>): SlotAppliance & { audits: string[]; spawned: string[]; workers: Record<string, WatchedWorker & { kind: string }> } {
  const audits: string[] = [];
  const spawned: string[] = [];
  let next = 10;
  return {
    audits,
    spawned,
    workers,
    lifecycle: { state: "ONLINE" },
    state: { workers },
    async spawnWorker(kind) {
      const id = `worker-${next++}`;
      spawned.push(kind);
      workers[id] = { kind, status: "running" };
      return id;
    },
    audit: (line) => void audits.push(line),
  };
}

describe("GuestSlot.settle", () => {
  it("confirms a try boot whose required worker keeps running: state written, /proc/boot says good, audited", async () => {
    const boot = await bootDir(trying);
    const state = join(dir, `state-${++n}`);
    const slot = await GuestSlot.open({ boot: { slot: "b", kind: "try", triesLeft: 0 }, bootDir: boot, stateDir: state });
    expect(slot.lines()).toEqual(["slot=b", "slot_version=none", "slot_state=trying", "tries_left=0"]);
    const app = fakeApp({ "worker-1": { kind: "camera", status: "running" } });
    let reboots = 0;
    const verdict = await slot.settle({ app, required: ["camera"], windowMs: 50, pollMs: 5, reboot: async () => void reboots++, say: () => {} });
    expect(verdict).toEqual({ healthy: true });
    expect(app.spawned).toEqual([]); // the commit log already ran it
    expect(reboots).toBe(0);
    expect((await readBootStateFiles(boot)).state).toEqual({ seq: 4, active: "b", try: null, tries: 0, slots: { a: "good", b: "good" } });
    expect(slot.lines()).toContain("slot_state=good");
    expect(app.audits).toContain("slot b confirmed good: version none");
  });

  it("a rollback with no verdict recorded (a panic, a hang) is said in /proc/boot, and left to /update/status's own word", async () => {
    const boot = await bootDir(trying);
    await writeBootStateFiles(boot, { seq: 5, active: "a", try: null, tries: 0, slots: { a: "good", b: "rolled_back" } });
    const slot = await GuestSlot.open({ boot: { slot: "a", kind: "rollback", triesLeft: 0 }, bootDir: boot, stateDir: join(dir, `state-${++n}`) });
    expect(slot.lines()).toContain(`rolled_back from=b reason=${UNRECORDED_FAILURE}`);
    expect(slot.rollbackReason("b")).toBeUndefined();
  });

  it("does not confirm a try whose required worker exits: records why, reboots, and leaves the state to U-Boot", async () => {
    const boot = await bootDir(trying);
    const before = await readFile(join(boot, "state.env"));
    const state = join(dir, `state-${++n}`);
    const slot = await GuestSlot.open({ boot: { slot: "b", kind: "try", triesLeft: 0 }, bootDir: boot, stateDir: state });
    const app = fakeApp({});
    const spawn = app.spawnWorker.bind(app);
    app.spawnWorker = async (kind) => {
      const id = await spawn(kind);
      app.workers[id] = { kind, status: "exited", reason: "exited with code 1" };
      return id;
    };
    let reboots = 0;
    const verdict = await slot.settle({ app, required: ["crash"], windowMs: 10_000, pollMs: 5, reboot: async () => void reboots++, say: () => {} });
    expect(verdict).toEqual({ healthy: false, reason: "required worker crash (worker-10) exited: exited with code 1" });
    expect(app.spawned).toEqual(["crash"]);
    expect(reboots).toBe(1);
    expect(Buffer.compare(await readFile(join(boot, "state.env")), before)).toBe(0);
    expect(await readTryFailure(state)).toEqual({ slot: "b", reason: "required worker crash (worker-10) exited: exited with code 1" });
    expect(app.audits).toContain("slot b not confirmed: required worker crash (worker-10) exited: exited with code 1; rebooting");

    // U-Boot rolls back when the tries run out; the next boot of A says why.
    await writeBootStateFiles(boot, { seq: 5, active: "a", try: null, tries: 0, slots: { a: "good", b: "rolled_back" } });
    const after = await GuestSlot.open({ boot: { slot: "a", kind: "rollback", triesLeft: 0 }, bootDir: boot, stateDir: state });
    expect(after.lines()).toContain("rolled_back from=b reason=required worker crash (worker-10) exited: exited with code 1");
    expect(after.rollbackReason("b")).toBe("required worker crash (worker-10) exited: exited with code 1");
    expect(after.rollbackReason("a")).toBeUndefined();
    const app2 = fakeApp({});
    expect(await after.settle({ app: app2, required: [], reboot: async () => void reboots++, say: () => {} })).toEqual({ healthy: true });
    expect(app2.audits).toEqual(["rolled_back from=b reason=required worker crash (worker-10) exited: exited with code 1"]);
    expect(reboots).toBe(1);
  });

  it("never writes the state on a normal boot of a good slot, but starts its required workers", async () => {
    const boot = await bootDir(normal);
    const before = await readFile(join(boot, "state.env"));
    const slot = await GuestSlot.open({ boot: { slot: "a", kind: "normal", triesLeft: 0 }, bootDir: boot, stateDir: join(dir, `state-${++n}`) });
    const app = fakeApp({});
    const mounts: string[] = [];
    const verdict = await slot.settle({ app, required: ["camera"], remount: async (m) => void mounts.push(m), reboot: async () => {}, say: () => {} });
    expect(verdict).toEqual({ healthy: true });
    expect(app.spawned).toEqual(["camera"]);
    expect(mounts).toEqual([]);
    expect(Buffer.compare(await readFile(join(boot, "state.env")), before)).toBe(0);
    expect(slot.lines()).toEqual(["slot=a", "slot_version=none", "slot_state=good", "tries_left=0"]);
  });
});

describe("Watchdog", () => {
  it("feeds the device at once and on every interval, and a clean stop writes the magic V", async () => {
    const device = join(dir, "watchdog");
    await writeFile(device, "");
    const dog = await Watchdog.open({ device, feedMs: 10 });
    expect(dog).toBeDefined();
    for (let i = 0; i < 500 && dog!.feeds < 3; i++) await new Promise((r) => setTimeout(r, 10));
    expect(dog!.feeds).toBeGreaterThanOrEqual(3);
    await dog!.close();
    const bytes = await readFile(device);
    expect(bytes.at(-1)).toBe("V".charCodeAt(0));
    expect([...bytes.subarray(0, -1)].every((b) => b === 0)).toBe(true);
  });

  it("is absent without a device", async () => {
    expect(await Watchdog.open({ device: join(dir, "no-watchdog-here") })).toBeUndefined();
  });
});
