import { closeSync, fstatSync, openSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { ClosedError, InvalidError, NineError, PermissionError, TooBigError } from "../../nine-door/index.ts";
import { attachWorker, readWorkerIdentity, type Worker, type WorkerEnv } from "../../workers/index.ts";
import { bootTestAppliance, waitFor, type TestAppliance, type WorkerSlot } from "./helpers.ts";

let t: TestAppliance;
let slot: WorkerSlot;
const workers: Worker[] = [];

beforeAll(async () => {
  t = await bootTestAppliance();
  slot = t.addWorker("worker-1");
});

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop({ graceMs: 200 })));
});

afterAll(async () => {
  await t.close();
});

function envFor(sub = "worker-1", extra: WorkerEnv = {}): WorkerEnv {
  return {
    COHESIX_ADDR: t.addr,
    COHESIX_WORKER_ID: sub,
    COHESIX_WORKER_ROLE: "worker-heartbeat",
    COHESIX_TICKET: t.ticket(sub),
    ...extra,
  };
}

async function attach(env: WorkerEnv = envFor()): Promise<Worker> {
  const w = await attachWorker({ env });
  workers.push(w);
  return w;
}

function errorOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected a throw");
}

describe("readWorkerIdentity", () => {
  test("reads the ticket from an inherited descriptor, closes it, and clears the ticket variables", () => {
    const file = join(t.tmp, "ticket");
    writeFileSync(file, "TICKET-FROM-FD\n");
    const fd = openSync(file, "r");
    const env = envFor("worker-1", { COHESIX_TICKET_FD: String(fd), COHESIX_TICKET: "ignored" });
    const id = readWorkerIdentity(env);
    expect(id).toEqual({ addr: t.addr, id: "worker-1", role: "worker-heartbeat", ticket: "TICKET-FROM-FD" });
    expect(() => fstatSync(fd)).toThrow(/EBADF/);
    expect(env.COHESIX_TICKET).toBeUndefined();
    expect(env.COHESIX_TICKET_FD).toBeUndefined();
  });

  test("falls back to COHESIX_TICKET and deletes it", () => {
    const env = envFor();
    const ticket = env.COHESIX_TICKET;
    expect(readWorkerIdentity(env).ticket).toBe(ticket);
    expect("COHESIX_TICKET" in env).toBe(false);
  });

  test("a missing variable is refused with invalid: naming it", () => {
    const env = envFor();
    delete env.COHESIX_ADDR;
    const err = errorOf(() => readWorkerIdentity(env));
    expect(err).toBeInstanceOf(InvalidError);
    expect((err as Error).message).toMatch(/^invalid: worker identity: COHESIX_ADDR is not set/);
    expect(errorOf(() => readWorkerIdentity({ ...envFor(), COHESIX_TICKET: undefined }))).toBeInstanceOf(InvalidError);
    expect((errorOf(() => readWorkerIdentity({ ...envFor(), COHESIX_WORKER_ROLE: "queen" })) as Error).message).toMatch(
      /COHESIX_WORKER_ROLE must look like worker-<name>/,
    );
  });

  test("a descriptor that cannot be read is refused with invalid:", () => {
    const fd = openSync(join(t.tmp, "ticket"), "r");
    closeSync(fd);
    const err = errorOf(() => readWorkerIdentity(envFor("worker-1", { COHESIX_TICKET_FD: String(fd) })));
    expect((err as Error).message).toMatch(/^invalid: worker identity: cannot read the ticket from descriptor/);
  });
});

describe("attachWorker", () => {
  test("attaches as <role>:<id> and appends one JSON line per record", async () => {
    const w = await attach();
    expect(w.id).toBe("worker-1");
    expect(w.role).toBe("worker-heartbeat");
    expect(t.app.server.sessionInfo().some((s) => s.callers.includes("worker-heartbeat:worker-1") && s.dialect === "9P2000")).toBe(true);
    const before = slot.telemetry.lines().length;
    await Promise.all([w.telemetry.append({ tick: 1 }), w.telemetry.append({ tick: 2, note: "a\nb" })]);
    await w.telemetry.append({ tick: 3 });
    const lines = slot.telemetry.lines().slice(before);
    expect(lines.map((l) => JSON.parse(l) as unknown)).toEqual([{ tick: 1 }, { tick: 2, note: "a\nb" }, { tick: 3 }]);
  });

  test("keeps one fid open for telemetry however many appends", async () => {
    const w = await attach();
    const fids = () => t.app.server.sessionInfo().find((s) => s.callers.includes("worker-heartbeat:worker-1"))!.fids;
    await w.telemetry.append({ tick: 1 });
    const after1 = fids();
    for (let i = 2; i <= 10; i++) await w.telemetry.append({ tick: i });
    expect(fids()).toBe(after1);
    expect(after1).toBe(2); // the attach root and the telemetry fid
  });

  test("refuses records that are not JSON objects, or too big, without sending", async () => {
    const w = await attach();
    await expect(w.telemetry.append([1, 2] as unknown as object)).rejects.toBeInstanceOf(InvalidError);
    await expect(w.telemetry.append({ blob: "x".repeat(2 << 20) })).rejects.toBeInstanceOf(TooBigError);
    await w.telemetry.append({ still: "works" });
  });

  test("readCtl reads the worker's own ctl; the namespace is the worker's view", async () => {
    const w = await attach();
    expect(await w.readCtl()).toBe("");
    expect(await w.root.readText("proc/boot")).toMatch(/^cohesix /);
    const refused = await w.root.writeFile("queen/ctl", '{"spawn":"heartbeat"}').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(NineError);
    expect((refused as NineError).errorClass).toBe("permission");
  });

  test("a ticket for another worker is refused with PermissionError", async () => {
    const env = envFor("worker-1", { COHESIX_TICKET: t.ticket("worker-2") });
    const err = await attachWorker({ env }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermissionError);
    expect((err as Error).message).toMatch(/^permission: uname "worker-heartbeat:worker-1" does not match the ticket/);
  });

  test("an address nobody listens on rejects with a NineError", async () => {
    const env = envFor("worker-1", { COHESIX_ADDR: `unix!${join(t.tmp, "nobody.sock")}` });
    const err = await attachWorker({ env, dialAttempts: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NineError);
  });
});

describe("Worker.onClosed and stop", () => {
  test("a revoked session fires onClosed once with the reason, and later appends reject ClosedError", async () => {
    const w = await attach();
    await w.telemetry.append({ tick: 1 });
    const reasons: string[] = [];
    w.onClosed((r) => reasons.push(r));
    expect(t.app.server.revoke((c) => c.subject === "worker-1", "tick budget exhausted")).toBeGreaterThan(0);
    const err = await w.telemetry.append({ tick: 2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ClosedError);
    expect((err as Error).message).toBe("closed: tick budget exhausted");
    await expect(w.readCtl()).rejects.toThrow("closed: tick budget exhausted");
    await waitFor(() => w.root.client.closed, 5000, "the connection to drop");
    expect(reasons).toEqual(["tick budget exhausted"]);
    expect(w.closedReason).toBe("tick budget exhausted");
    const late: string[] = [];
    w.onClosed((r) => late.push(r));
    await waitFor(() => late.length === 1, 1000, "a late listener");
    expect(late).toEqual(["tick budget exhausted"]);
  });

  test("a dropped connection fires onClosed", async () => {
    const w = await attach();
    const reasons: string[] = [];
    w.onClosed((r) => reasons.push(r));
    for (const s of t.app.server.sessions) if (s.callers.some((a) => a.caller.subject === "worker-1")) s.close();
    await waitFor(() => reasons.length > 0, 5000, "onClosed");
    expect(reasons).toEqual(["connection closed by server"]);
  });

  test("stop clunks and closes without firing onClosed; later appends reject", async () => {
    const w = await attach();
    await w.telemetry.append({ tick: 1 });
    let fired = false;
    w.onClosed(() => (fired = true));
    const pending = w.telemetry.append({ tick: 2 });
    await w.stop({ graceMs: 1000 });
    await pending;
    expect(w.root.client.closed).toBe(true);
    await expect(w.telemetry.append({ tick: 3 })).rejects.toBeInstanceOf(ClosedError);
    await new Promise((r) => setTimeout(r, 50));
    expect(fired).toBe(false);
    await w.stop();
  });
});
