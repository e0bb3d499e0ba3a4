/**
 * Queen control in process: the appliance served on 127.0.0.1 with
 * in-test 9P clients attached as the queen. Covers what the command line
 * cannot pin down: the vocabulary of DESIGN §6 parses as written, commands
 * from concurrent sessions are serialised (no duplicate worker id, no
 * counter accepted twice), and /proc/state is the replay of the log.
 */
import { describe, expect, test } from "vitest";
import {
  applyCommit,
  genesis,
  parseQueenCommand,
  showLog,
  signEnvelope,
  type ApplianceState,
  type Commit,
  type RunningAppliance,
} from "../../root-task/index.ts";
import { run, useAppliances } from "./fixture.ts";

const appliances = useAppliances({ prefix: "cohesix-control-", defaults: { intervalMs: 200, graceMs: 500 } });
const { queenCtl } = appliances;

async function start(policy: "open" | "signed-ctl" = "open"): Promise<{ app: RunningAppliance; stateDir: string }> {
  return appliances.start({ policy });
}

describe("parseQueenCommand()", () => {
  test("accepts every example of DESIGN §6 as written", () => {
    expect(parseQueenCommand('{"spawn":"heartbeat","ticks":100,"budget":{"ttl_s":120,"ops":500}}')).toEqual({
      kind: "spawn",
      worker: "heartbeat",
      ticks: 100,
      budget: { ttl_s: 120, ops: 500 },
    });
    expect(parseQueenCommand('{"spawn":"gpu","lease":{"gpu_id":"GPU-0","mem_mb":4096,"streams":2,"ttl_s":120,"priority":1}}')).toMatchObject({ kind: "spawn", worker: "gpu" });
    expect(parseQueenCommand('{"kill":"worker-7"}')).toEqual({ kind: "kill", worker: "worker-7" });
    expect(parseQueenCommand('{"budget":{"ttl_s":120,"ops":1000}}')).toEqual({ kind: "budget", budget: { ttl_s: 120, ops: 1000 } });
    expect(parseQueenCommand('{"bind":{"from":"/worker/worker-1","to":"/w1"}}')).toEqual({ kind: "bind", from: "/worker/worker-1", to: "/w1" });
    expect(parseQueenCommand('{"mount":{"service":"gpu","at":"/gpu"}}')).toEqual({ kind: "mount", service: "gpu", at: "/gpu" });
  });

  test("still refuses two verbs in one write", () => {
    expect(() => parseQueenCommand('{"kill":"worker-1","budget":{"ops":1}}')).toThrow(/^invalid: one command per write, got kill and budget/);
  });
});

describe("commands from concurrent sessions", () => {
  test("two queens spawning at once get different worker ids", { timeout: 60_000 }, async () => {
    const { app } = await start();
    const a = await queenCtl(app);
    const b = await queenCtl(app);
    const replies = await Promise.all([run(a.ctl, '{"spawn":"heartbeat","ticks":1}'), run(b.ctl, '{"spawn":"heartbeat","ticks":1}')]);
    const ids = replies.map((r) => (JSON.parse(r) as { worker: string }).worker).sort();
    expect(ids).toEqual(["worker-1", "worker-2"]);
    expect(app.app.state.nextWorker).toBe(3);
  });

  test("under signed-ctl, one counter sent on two sessions at once is accepted once", { timeout: 60_000 }, async () => {
    const { app, stateDir } = await start("signed-ctl");
    const a = await queenCtl(app);
    const b = await queenCtl(app);
    const replies = await Promise.all([
      run(a.ctl, signEnvelope('{"budget":{"ops":11}}', appliances.queenKey, { ctr: 1 })),
      run(b.ctl, signEnvelope('{"budget":{"ops":22}}', appliances.queenKey, { ctr: 1 })),
    ]);
    expect(replies.filter((r) => r.startsWith('{"ok":true'))).toHaveLength(1);
    expect(replies.filter((r) => r.startsWith("Error: permission: replay"))).toHaveLength(1);
    const { records } = await showLog(stateDir);
    expect(records.filter((r) => r.kind === "ctr")).toHaveLength(1);
    expect(records.filter((r) => r.kind === "budget")).toHaveLength(1);
  });
});

describe("envelopes under the open policy", () => {
  test("an accepted envelope records its counter; a refused one leaves no record", async () => {
    const { app, stateDir } = await start();
    const { ctl } = await queenCtl(app);
    expect(await run(ctl, signEnvelope('{"budget":{"ops":3}}', appliances.queenKey, { ctr: 1 }))).toMatch(/^\{"ok":true/);
    expect(app.app.state.ctr).toBe(1);
    const before = (await showLog(stateDir)).records.length;
    expect(await run(ctl, signEnvelope('{"kill":"worker-9"}', appliances.queenKey, { ctr: 2 }))).toMatch(/^Error: not found: no worker worker-9/);
    expect((await showLog(stateDir)).records.length).toBe(before);
    expect(app.app.state.ctr).toBe(1);
    // The refused counter was not consumed: the next command may use it.
    expect(await run(ctl, signEnvelope('{"budget":{"ops":4}}', appliances.queenKey, { ctr: 2 }))).toMatch(/^\{"ok":true/);
  });
});

describe("/proc/state", () => {
  test("is the replay of the log up to the seq it names", { timeout: 60_000 }, async () => {
    const { app, stateDir } = await start();
    const { root, ctl } = await queenCtl(app);
    for (const c of ['{"budget":{"ops":50}}', '{"spawn":"heartbeat","ticks":2}', '{"bind":{"from":"/proc","to":"/p"}}']) {
      expect(await run(ctl, c)).toMatch(/^\{"ok":true/);
    }
    const snap = JSON.parse(await root.readText("proc/state")) as { seq: number; state: ApplianceState };
    const { records } = await showLog(stateDir);
    const replayed = records.filter((r) => r.seq <= snap.seq).reduce((s, r) => applyCommit(s, { kind: r.kind, body: r.body } as Commit), genesis);
    expect(snap.state).toEqual(JSON.parse(JSON.stringify(replayed)));
    expect(snap.state.defaults).toEqual({ ops: 50 });
    expect(snap.state.binds).toEqual([{ from: "/proc", to: "/p" }]);
    expect(Object.keys(snap.state.workers)).toEqual(["worker-1"]);
  });
});
