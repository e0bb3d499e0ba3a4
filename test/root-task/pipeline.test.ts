/**
 * The control pipeline: commands are ordered and applied before their
 * fsync, several share one fsync, and a reply or effect waits for its
 * record to be durable. A log that cannot fsync fails the commands behind
 * it with busy:, rolls the state back to the last durable record, makes the
 * appliance DEGRADED with the reason, and recovers once fsync works again.
 */
import { describe, expect, test } from "vitest";
import { type Fid } from "../../nine-door/index.ts";
import { showLog, type CommitLogFs, type RunningAppliance } from "../../root-task/index.ts";
import { withDatasync } from "./commit-log-fs.ts";
import { run, useAppliances } from "./fixture.ts";

const appliances = useAppliances({ prefix: "cohesix-pipeline-", defaults: { intervalMs: 200, graceMs: 500 } });
const { queenCtl } = appliances;

async function start(commitLogFs?: CommitLogFs): Promise<{ app: RunningAppliance; stateDir: string }> {
  return appliances.start(commitLogFs ? { commitLogFs } : {});
}

interface ProcState {
  seq: number;
  state: { nextWorker: number; defaults: { ops?: number } };
  log: { appends: number; fsyncs: number; records_per_fsync: number; head: number; failure?: string };
}

async function procState(root: Fid): Promise<ProcState> {
  return JSON.parse(await root.readText("proc/state")) as ProcState;
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A file layer whose fdatasync can be made to fail (and is slowed, so commands pile up behind it). */
function faultyFs(): { fs: CommitLogFs; failing: { on: boolean } } {
  const failing = { on: false };
  const fs = withDatasync(async (real) => {
    await new Promise((r) => setTimeout(r, 5));
    if (failing.on) throw Object.assign(new Error("ENOSPC: no space left on device, fdatasync"), { code: "ENOSPC" });
    await real();
  });
  return { fs, failing };
}

describe("the control pipeline", () => {
  test("16 sessions share fsyncs: /proc/state's log counters show more than one record per fsync", { timeout: 120_000 }, async () => {
    const { fs } = faultyFs();
    const { app, stateDir } = await start(fs);
    const sessions = await Promise.all(Array.from({ length: 16 }, () => queenCtl(app)));
    const replies = await Promise.all(
      sessions.map(async ({ ctl }, i) => {
        const out: string[] = [];
        for (let k = 1; k <= 20; k++) out.push(await run(ctl, `{"budget":{"ops":${i * 100 + k}}}`));
        return out;
      }),
    );
    for (const r of replies.flat()) expect(r).toMatch(/^\{"ok":true,"defaults":/);
    const s = await procState(sessions[0]!.root);
    expect(s.log.appends).toBeGreaterThanOrEqual(320);
    expect(s.log.records_per_fsync).toBeGreaterThan(1);
    expect(s.log.appends / s.log.fsyncs).toBeGreaterThan(1);
    // Every acknowledged command is in the log.
    const { records } = await showLog(stateDir);
    expect(records.filter((r) => r.kind === "budget")).toHaveLength(320);
  });

  test("two sessions spawning at once never get the same worker id", { timeout: 120_000 }, async () => {
    const { app } = await start();
    const sessions = await Promise.all(Array.from({ length: 4 }, () => queenCtl(app)));
    const replies = await Promise.all(sessions.map(({ ctl }) => run(ctl, '{"spawn":"heartbeat","ticks":50}')));
    const ids = replies.map((r) => (JSON.parse(r) as { worker: string }).worker);
    expect(new Set(ids).size).toBe(4);
    expect(ids.sort()).toEqual(["worker-1", "worker-2", "worker-3", "worker-4"]);
  });

  test("a failing fsync answers busy:, rolls back, makes the appliance DEGRADED with the reason, and recovers", { timeout: 120_000 }, async () => {
    const { fs, failing } = faultyFs();
    const { app, stateDir } = await start(fs);
    const sessions = await Promise.all(Array.from({ length: 8 }, () => queenCtl(app)));
    const { root, ctl } = sessions[0]!;
    expect(await run(ctl, '{"budget":{"ops":7}}')).toMatch(/^\{"ok":true/);
    const before = await procState(root);

    failing.on = true;
    const replies = await Promise.all(sessions.map(({ ctl: c }, i) => run(c, i % 2 === 0 ? `{"budget":{"ops":${1000 + i}}}` : '{"spawn":"heartbeat","ticks":50}')));
    for (const r of replies) expect(r).toMatch(/^Error: (busy|closed): /);
    expect(replies.some((r) => /no space left on device/.test(r))).toBe(true);
    expect((await root.readText("proc/lifecycle/state")).trim()).toBe("DEGRADED");
    expect(await root.readText("proc/lifecycle/reason")).toMatch(/^state disk: commit log cannot write \(.*no space left on device.*\); retrying/);
    const during = await procState(root);
    expect(during.seq).toBe(before.seq);
    expect(during.state).toEqual(before.state);
    expect(app.app.state.nextWorker).toBe(before.state.nextWorker);
    expect(app.app.state.defaults).toEqual({ ops: 7 });
    expect(await root.readText("proc/workers")).not.toMatch(/worker-/);

    failing.on = false;
    let reply = "";
    await until(async () => {
      reply = await run(ctl, '{"budget":{"ops":8}}');
      return reply.startsWith('{"ok":true');
    }, "a command to be accepted once fsync works again");
    expect((await root.readText("proc/lifecycle/state")).trim()).toBe("ONLINE");
    expect(JSON.parse(await run(ctl, '{"spawn":"heartbeat","ticks":50}'))).toMatchObject({ ok: true, worker: `worker-${before.state.nextWorker}` });
    const after = await procState(root);
    expect(after.seq).toBe(before.seq + 2);
    expect(after.state.defaults).toEqual({ ops: 8 });

    // After a restart the log holds exactly the acknowledged commands.
    await appliances.stop(app);
    const { records } = await showLog(stateDir);
    expect(records.map((r) => r.kind).slice(-3)).toEqual(["budget", "budget", "spawn"]);
    expect(records.filter((r) => r.kind === "budget").map((r) => (r.body as { budget: { ops: number } }).budget.ops)).toEqual([7, 8]);
  });
});
