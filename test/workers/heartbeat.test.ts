import { execa } from "execa";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { Supervisor, type WorkerExit } from "../../root-task/index.ts";
import { workerProgram } from "../../root-task/index.ts";
import { bootTestAppliance, waitFor, type TestAppliance, type WorkerSlot } from "./helpers.ts";

let t: TestAppliance;
let supervisor: Supervisor;
const stale: string[] = [];
let nextId = 1;

beforeAll(async () => {
  // The worker runs from its bundle, as on an appliance: build it from these sources.
  const root = fileURLToPath(new URL("../..", import.meta.url));
  await execa(process.execPath, ["scripts/build.mjs", "--workers"], { cwd: root });
  t = await bootTestAppliance();
  supervisor = new Supervisor({ onStale: (id) => stale.push(id) });
});

afterEach(async () => {
  await supervisor.stopAll(500);
});

afterAll(async () => {
  await t.close();
});

interface Running {
  readonly id: string;
  readonly slot: WorkerSlot;
  readonly pid: number;
  readonly ticket: string;
  stderr(): string;
  readonly exit: Promise<WorkerExit>;
  records(): Array<Record<string, unknown>>;
}

function startHeartbeat(intervalMs: number): Running {
  const id = `worker-${nextId++}`;
  const slot = t.addWorker(id);
  slot.telemetry.onAppend(() => supervisor.heartbeat(id));
  const ticket = t.ticket(id);
  const chunks: Buffer[] = [];
  let done!: (e: WorkerExit) => void;
  const exit = new Promise<WorkerExit>((r) => (done = r));
  const pid = supervisor.spawn({
    id,
    kind: "heartbeat",
    ticket,
    addr: t.addr,
    intervalMs,
    onStderr: (c) => chunks.push(c),
    onExit: (code, signal) => done({ code, signal }),
  });
  return {
    id,
    slot,
    pid,
    ticket,
    exit,
    stderr: () => Buffer.concat(chunks).toString(),
    records: () => slot.telemetry.lines().map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe("heartbeat worker", () => {
  test("the program resolves inside the package, not the current directory", () => {
    const p = workerProgram("heartbeat");
    expect(p.role).toBe("worker-heartbeat");
    expect(p.entry).toBe(fileURLToPath(new URL("../../dist/workers/heartbeat.mjs", import.meta.url)));
  });

  test("appends at least 2 telemetry lines within 10 s, with tick, ts_ms, load1 and rss_kb", async () => {
    const w = startHeartbeat(200);
    await waitFor(() => w.slot.telemetry.lines().length >= 2, 10_000, "2 telemetry lines");
    const [first, second] = w.records();
    expect(Object.keys(first!).sort()).toEqual(["load1", "rss_kb", "tick", "ts_ms"]);
    expect(first!.tick).toBe(1);
    expect(second!.tick).toBe(2);
    expect(Number.isInteger(first!.ts_ms)).toBe(true);
    expect(Math.abs((first!.ts_ms as number) - Date.now())).toBeLessThan(10_000);
    expect(second!.ts_ms as number).toBeGreaterThan(first!.ts_ms as number);
    expect(typeof first!.load1).toBe("number");
    expect(Number.isInteger(first!.rss_kb)).toBe(true);
    expect(first!.rss_kb as number).toBeGreaterThan(1000);
  });

  test("the ticket is in neither the command line nor the environment of the process", async () => {
    const w = startHeartbeat(200);
    await waitFor(() => w.slot.telemetry.lines().length >= 1, 10_000, "the worker to attach");
    const cmdline = readFileSync(`/proc/${w.pid}/cmdline`, "utf8");
    const environ = readFileSync(`/proc/${w.pid}/environ`, "utf8");
    expect(cmdline).toContain("heartbeat.mjs");
    expect(cmdline).not.toContain(w.ticket);
    expect(environ).toContain(`COHESIX_WORKER_ID=${w.id}`);
    expect(environ).not.toContain(w.ticket);
  });

  test("a revoked session makes the worker exit 0 with the reason on stderr", async () => {
    const w = startHeartbeat(200);
    await waitFor(() => w.slot.telemetry.lines().length >= 1, 10_000, "the worker to attach");
    expect(t.app.server.revoke((c) => c.subject === w.id, "tick budget exhausted")).toBe(1);
    expect(await w.exit).toEqual({ code: 0, signal: null });
    expect(w.stderr()).toContain("closed: tick budget exhausted");
    expect(supervisor.pid(w.id)).toBeUndefined();
  });

  test("SIGTERM stops it cleanly with exit 0", async () => {
    const w = startHeartbeat(200);
    await waitFor(() => w.slot.telemetry.lines().length >= 1, 10_000, "the worker to attach");
    expect(await supervisor.stop(w.id, { graceMs: 5000 })).toEqual({ code: 0, signal: null });
    expect(w.stderr()).toContain("stopping on SIGTERM");
  });

  test("a bad ticket is a failure: stderr and exit 1", async () => {
    const id = `worker-${nextId++}`;
    t.addWorker(id);
    const chunks: Buffer[] = [];
    const exit = new Promise<WorkerExit>((resolve) => {
      supervisor.spawn({
        id,
        kind: "heartbeat",
        ticket: t.ticket("someone-else"),
        addr: t.addr,
        intervalMs: 200,
        onStderr: (c) => chunks.push(c),
        onExit: (code, signal) => resolve({ code, signal }),
      });
    });
    expect(await exit).toEqual({ code: 1, signal: null });
    expect(Buffer.concat(chunks).toString()).toMatch(/permission: uname "worker-heartbeat:worker-\d+" does not match the ticket/);
  });

  test("the watchdog reports a worker whose beats stop, once, and beats resume after it continues", async () => {
    const w = startHeartbeat(100);
    await waitFor(() => w.slot.telemetry.lines().length >= 2, 10_000, "beats");
    const episodes = () => stale.filter((s) => s === w.id).length;
    process.kill(w.pid, "SIGSTOP");
    try {
      // A line already on its way still lands (and counts as a beat); wait until none does.
      let seen = -1;
      while (seen !== w.slot.telemetry.lines().length) {
        seen = w.slot.telemetry.lines().length;
        await new Promise((r) => setTimeout(r, 120));
      }
      const before = episodes();
      await waitFor(() => episodes() === before + 1, 5000, "onStale");
      await new Promise((r) => setTimeout(r, 500));
      expect(episodes()).toBe(before + 1);
      expect(w.slot.telemetry.lines().length).toBe(seen);
    } finally {
      process.kill(w.pid, "SIGCONT");
    }
    const n = w.slot.telemetry.lines().length;
    await waitFor(() => w.slot.telemetry.lines().length > n, 5000, "beats to resume");
  });
});
