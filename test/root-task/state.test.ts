import { describe, expect, it } from "vitest";
import { applyCommit, genesis, runningWorkers, type Commit } from "../../root-task/state.ts";

const spawn = (id: string): Commit => ({
  kind: "spawn",
  body: { id, kind: "heartbeat", role: "worker-heartbeat", budget: { ticks: 5 }, restart: false, ts_ms: 1 },
});

describe("applyCommit()", () => {
  it("numbers workers after the highest id spawned", () => {
    const s = [spawn("worker-1"), spawn("worker-2")].reduce(applyCommit, genesis);
    expect(s.nextWorker).toBe(3);
    expect(runningWorkers(s).map((w) => w.id)).toEqual(["worker-1", "worker-2"]);
  });

  it("marks a worker that exits and keeps its id taken", () => {
    const s = [spawn("worker-1"), { kind: "exit", body: { id: "worker-1", status: "revoked", reason: "tick budget exhausted" } } as Commit].reduce(applyCommit, genesis);
    expect(s.workers["worker-1"]).toMatchObject({ status: "revoked", reason: "tick budget exhausted" });
    expect(runningWorkers(s)).toEqual([]);
    expect(s.nextWorker).toBe(2);
  });

  it("merges budget defaults and replaces a bind onto the same target", () => {
    const s = [
      { kind: "budget", body: { budget: { ops: 5 } } },
      { kind: "budget", body: { budget: { ttl_s: 9 } } },
      { kind: "bind", body: { from: "/worker/worker-1", to: "/w" } },
      { kind: "bind", body: { from: "/worker/worker-2", to: "/w" } },
    ].reduce((st, c) => applyCommit(st, c as Commit), genesis);
    expect(s.defaults).toEqual({ ops: 5, ttl_s: 9 });
    expect(s.binds).toEqual([{ from: "/worker/worker-2", to: "/w" }]);
  });

  it("never lowers the signed-ctl counter and does not mutate its input", () => {
    const a = applyCommit(genesis, { kind: "ctr", body: { ctr: 9 } });
    const b = applyCommit(a, { kind: "ctr", body: { ctr: 4 } });
    expect(b.ctr).toBe(9);
    expect(genesis.ctr).toBe(0);
  });
});
