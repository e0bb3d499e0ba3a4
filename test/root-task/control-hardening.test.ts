/**
 * Queen control under hostile or careless commands, in process: the
 * appliance served on 127.0.0.1 with in-test 9P clients. Each case is one of
 * the ways control could be abused — too many workers, a burnt counter,
 * binds that move rights or hide the root task's files, numbers too large
 * for their fields, a ttl past Node's timer limit, a commit that fails —
 * and each must be refused with the bound in the error, leave nothing
 * behind, and keep the appliance usable.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { type Fid } from "../../nine-door/index.ts";
import { mintTicket, showLog, signEnvelope, type Commit, type RunningAppliance } from "../../root-task/index.ts";
import { fill, run, useAppliances } from "./fixture.ts";

const appliances = useAppliances({ prefix: "cohesix-hardening-", defaults: { intervalMs: 200, graceMs: 500 } });
const { queenCtl, stop } = appliances;

async function start(options: { policy?: "open" | "signed-ctl"; maxWorkers?: number; stateDir?: string } = {}): Promise<{ app: RunningAppliance; stateDir: string }> {
  return appliances.start({ policy: "open", ...options });
}

/** A session attached as worker `id` with a ticket minted by the appliance's boot key. */
async function workerRoot(app: RunningAppliance, id: string): Promise<Fid> {
  const client = await appliances.dial(app);
  return client.attach({ uname: `worker-heartbeat:${id}`, aname: mintTicket({ role: "worker-heartbeat", sub: id }, app.app.bootKey) });
}

async function records(stateDir: string): Promise<number> {
  return (await showLog(stateDir)).records.length;
}

async function names(root: Fid, path: string): Promise<string[]> {
  return (await root.list(path)).map((f) => f.name).sort();
}

/** Waits (polling, generous) until `check` holds. */
async function until(check: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Makes every later commit of `app` fail, as a full disk would; returns the undo. */
function failCommits(app: RunningAppliance): () => void {
  // Commands stage their records (`stage`); the worker pool commits (`commit`).
  const target = app.app as unknown as { commit: (c: Commit) => Promise<void>; stage: (c: Commit) => Promise<void> };
  target.commit = () => Promise.reject(new Error("too big: commit log: no space left on device (ENOSPC)"));
  target.stage = () => Promise.reject(new Error("too big: commit log: no space left on device (ENOSPC)"));
  return () => {
    delete (target as Partial<typeof target>).commit;
    delete (target as Partial<typeof target>).stage;
  };
}

describe("the worker cap", () => {
  test("a spawn past the cap answers busy: with the cap and commits nothing", { timeout: 60_000 }, async () => {
    const { app, stateDir } = await start({ maxWorkers: 2 });
    const { root, ctl } = await queenCtl(app);
    expect(await run(ctl, '{"spawn":"heartbeat"}')).toMatch(/^\{"ok":true/);
    expect(await run(ctl, '{"spawn":"heartbeat"}')).toMatch(/^\{"ok":true/);
    const before = await records(stateDir);
    expect(await run(ctl, '{"spawn":"heartbeat"}')).toMatch(/^Error: busy: worker cap 2 reached \(2 running; .*maxWorkers/);
    expect(await records(stateDir)).toBe(before);
    expect(await names(root, "worker")).toEqual(["worker-1", "worker-2"]);
    expect(app.app.state.nextWorker).toBe(3);
    expect(await root.readText("proc/mem")).toMatch(/ max_workers=2 /);
    // A killed worker frees its place.
    expect(await run(ctl, '{"kill":"worker-1"}')).toMatch(/^\{"ok":true/);
    expect(await run(ctl, '{"spawn":"heartbeat"}')).toMatch(/^\{"ok":true,"worker":"worker-3"/);
  });

  test("the default cap is derived from memory and shown in /proc/mem", async () => {
    const { app } = await start();
    const { root } = await queenCtl(app);
    const cap = Number(/max_workers=(\d+)/.exec(await root.readText("proc/mem"))?.[1]);
    expect(cap).toBeGreaterThanOrEqual(4);
    expect(cap).toBeLessThanOrEqual(512);
  });

  test("a cap outside 1..100000 is refused at boot", async () => {
    await expect(start({ maxWorkers: 0 })).rejects.toThrow(/^invalid: maxWorkers must be an integer 1\.\.100000, got 0/);
  });
});

describe("the signed-ctl counter", () => {
  test("an envelope with ctr 2^53-1 is refused with the allowed range, and the next counter still works", async () => {
    const { app, stateDir } = await start({ policy: "signed-ctl" });
    const { ctl } = await queenCtl(app);
    expect(await run(ctl, signEnvelope('{"budget":{"ops":5}}', appliances.queenKey, { ctr: 1 }))).toMatch(/^\{"ok":true/);
    const before = await records(stateDir);
    expect(await run(ctl, signEnvelope('{"budget":{"ops":6}}', appliances.queenKey, { ctr: Number.MAX_SAFE_INTEGER }))).toMatch(
      /^Error: invalid: envelope\.ctr 9007199254740991 jumps more than 1048576 past the last accepted 1: use a counter from 2 to 1048577/,
    );
    expect(await records(stateDir)).toBe(before);
    expect(app.app.state.ctr).toBe(1);
    expect(await run(ctl, signEnvelope('{"budget":{"ops":7}}', appliances.queenKey, { ctr: 2 }))).toMatch(/^\{"ok":true/);
    // The largest step is allowed.
    expect(await run(ctl, signEnvelope('{"budget":{"ops":8}}', appliances.queenKey, { ctr: 2 + 2 ** 20 }))).toMatch(/^\{"ok":true/);
  });
});

describe("binds", () => {
  test("a queen-only file bound where a worker can reach it is refused", { timeout: 60_000 }, async () => {
    const { app, stateDir } = await start();
    const { root, ctl } = await queenCtl(app);
    expect(await run(ctl, '{"spawn":"heartbeat"}')).toMatch(/^\{"ok":true/);
    expect(await run(ctl, '{"spawn":"heartbeat"}')).toMatch(/^\{"ok":true/);
    const before = await records(stateDir);
    expect(await run(ctl, '{"bind":{"from":"/queen/ctl","to":"/worker/worker-1/telemetry"}}')).toMatch(
      /^Error: permission: bind would let worker-heartbeat worker-1 \w+ \/queen\/ctl through \/worker\/worker-1\/telemetry/,
    );
    expect(await run(ctl, '{"bind":{"from":"/queen","to":"/worker/worker-1/q"}}')).toMatch(/^Error: permission: bind would let worker-heartbeat worker-1/);
    expect(await run(ctl, '{"bind":{"from":"/worker/worker-2","to":"/worker/worker-1/peer"}}')).toMatch(/^Error: permission: bind would let worker-heartbeat worker-1/);
    expect(await records(stateDir)).toBe(before);
    expect(app.app.state.binds).toEqual([]);
    expect(await names(root, "worker/worker-1")).toEqual(["ctl", "telemetry"]);
  });

  test("through a bind a worker reaches only what it could reach without it", { timeout: 60_000 }, async () => {
    const { app } = await start();
    const { ctl } = await queenCtl(app);
    expect(await run(ctl, '{"spawn":"heartbeat"}')).toMatch(/^\{"ok":true/);
    expect(await run(ctl, '{"spawn":"heartbeat"}')).toMatch(/^\{"ok":true/);
    // /log is walkable by workers (for /log/queen.log), so this bind is allowed…
    expect(await run(ctl, '{"bind":{"from":"/log","to":"/worker/worker-1/l"}}')).toMatch(/^\{"ok":true/);
    const w1 = await workerRoot(app, "worker-1");
    expect(await w1.readText("worker/worker-1/l/queen.log")).toContain("spawned worker-1");
    expect(await names(w1, "worker/worker-1/l")).toEqual(["queen.log"]);
    // …but another worker's log stays out of reach through it.
    await expect(w1.readText("worker/worker-1/l/worker-2.log")).rejects.toThrow(/^(permission: worker-heartbeat worker-1 may not \w+ \/log\/worker-2\.log|not found: worker\/worker-1\/l\/worker-2\.log)/);
    // Without the bind, the same file is there for the queen.
    const { root } = await queenCtl(app);
    expect(await root.readText("log/worker-2.log")).toBe("");
  });

  test("/queen and /proc cannot be covered, and a bind with a missing or nonsensical path is refused", async () => {
    const { app, stateDir } = await start();
    const { root, ctl } = await queenCtl(app);
    const before = await records(stateDir);
    const refused: [string, RegExp][] = [
      ['{"bind":{"from":"/proc","to":"/queen"}}', /^Error: invalid: bind\.to \/queen: \/queen, \/proc, \/log cannot be covered/],
      ['{"bind":{"from":"/log","to":"/proc"}}', /^Error: invalid: bind\.to \/proc: .* cannot be covered/],
      ['{"bind":{"from":"/log","to":"/queen/x"}}', /^Error: invalid: bind\.to \/queen\/x: .* cannot be covered/],
      ['{"bind":{"from":"/nope","to":"/n"}}', /^Error: not found: bind\.from \/nope does not exist/],
      ['{"bind":{"from":"/proc","to":"/missing/p"}}', /^Error: not found: bind\.to \/missing\/p: its parent \/missing does not exist/],
      ['{"bind":{"from":"/log","to":"/worker/queen.log/x"}}', /^Error: not found: bind\.to \/worker\/queen\.log\/x: its parent/],
      ['{"bind":{"from":"/log","to":"/gpu/x"}}', /^Error: /],
      ['{"bind":{"from":"/worker","to":"/worker/w"}}', /^Error: invalid: bind\.from \/worker contains bind\.to \/worker\/w/],
      ['{"bind":{"from":"/log","to":"/worker"}}', /^Error: invalid: bind\.to \/worker already exists/],
    ];
    for (const [command, expected] of refused) expect(await run(ctl, command), command).toMatch(expected);
    // A target under a file.
    expect(await run(ctl, '{"bind":{"from":"/log","to":"/l"}}')).toMatch(/^\{"ok":true/);
    expect(await run(ctl, '{"bind":{"from":"/proc","to":"/l/queen.log/p"}}')).toMatch(/^Error: invalid: bind\.to \/l\/queen\.log\/p: \/l\/queen\.log is a file, not a directory/);
    // Through an earlier bind, a source that contains its target.
    expect(await run(ctl, '{"bind":{"from":"/worker","to":"/wk"}}')).toMatch(/^\{"ok":true/);
    expect(await run(ctl, '{"bind":{"from":"/wk","to":"/worker/again"}}')).toMatch(/^Error: invalid: bind \/wk onto \/worker\/again makes a loop/);
    expect(await records(stateDir)).toBe(before + 2);
    expect(await root.readText("queen/ctr")).toBe("0\n");
  });

  test("unbind is a committed operation that survives a restart", { timeout: 60_000 }, async () => {
    const { app, stateDir } = await start();
    const { root, ctl } = await queenCtl(app);
    expect(await run(ctl, '{"bind":{"from":"/log","to":"/lg"}}')).toMatch(/^\{"ok":true/);
    expect(await names(root, "/")).toContain("lg");
    expect(await run(ctl, '{"unbind":"/lg"}')).toBe('{"ok":true,"unbind":"/lg"}');
    expect(await names(root, "/")).not.toContain("lg");
    expect(app.app.state.binds).toEqual([]);
    expect(await run(ctl, '{"unbind":"/lg"}')).toMatch(/^Error: not found: no bind on \/lg \(binds: none\)/);
    expect((await showLog(stateDir)).records.map((r) => r.kind)).toContain("unbind");
    await stop(app);
    const again = await start({ stateDir });
    const q = await queenCtl(again.app);
    expect(await names(q.root, "/")).not.toContain("lg");
  });

  test("a bind over /queen left by an older version is not applied at boot, and can be unbound", { timeout: 60_000 }, async () => {
    const { app, stateDir } = await start();
    // What an older root task accepted and committed.
    await app.app.commit({ kind: "bind", body: { from: "/proc", to: "/queen" } });
    await stop(app);
    const again = await start({ stateDir });
    const { root, ctl } = await queenCtl(again.app);
    expect(await root.readText("queen/ctr")).toBe("0\n");
    expect(await root.readText("log/queen.log")).toMatch(/bind \/proc onto \/queen not applied: \/queen cannot be covered; remove it with \{"unbind":"\/queen"\}/);
    expect(await run(ctl, '{"unbind":"/queen"}')).toMatch(/^\{"ok":true/);
    expect(again.app.app.state.binds).toEqual([]);
  });
});

describe("numeric fields", () => {
  test("every numeric field is bounded at parse time, with the bound in the error, and nothing is committed", async () => {
    const { app, stateDir } = await start();
    const { ctl } = await queenCtl(app);
    const before = await records(stateDir);
    const refused: [string, RegExp][] = [
      ['{"budget":{"ttl_s":9007199254740991}}', /^Error: invalid: budget\.ttl_s must be an integer 1\.\.31536000, got 9007199254740991/],
      ['{"budget":{"ticks":1000000001}}', /^Error: invalid: budget\.ticks must be an integer 1\.\.1000000000/],
      ['{"budget":{"ops":1000000000001}}', /^Error: invalid: budget\.ops must be an integer 1\.\.1000000000000/],
      ['{"spawn":"heartbeat","ticks":1e12}', /^Error: invalid: spawn\.ticks must be an integer 1\.\.1000000000/],
      ['{"spawn":"heartbeat","budget":{"ttl_s":31536001}}', /^Error: invalid: spawn\.budget\.ttl_s must be an integer 1\.\.31536000/],
      ['{"spawn":"gpu","lease":{"gpu_id":"GPU-0","mem_mb":99999999999,"streams":1,"ttl_s":60}}', /^Error: invalid: spawn\.lease\.mem_mb must be an integer 1\.\.16777216/],
      ['{"spawn":"gpu","lease":{"gpu_id":"GPU-0","mem_mb":1,"streams":5000,"ttl_s":60}}', /^Error: invalid: spawn\.lease\.streams must be an integer 1\.\.1024/],
      ['{"spawn":"gpu","lease":{"gpu_id":"GPU-0","mem_mb":1,"streams":1,"ttl_s":99999999}}', /^Error: invalid: spawn\.lease\.ttl_s must be an integer 1\.\.31536000/],
      ['{"spawn":"gpu","lease":{"gpu_id":"GPU-0","mem_mb":1,"streams":1,"ttl_s":60,"priority":70000}}', /^Error: invalid: spawn\.lease\.priority must be an integer 0\.\.65535/],
      ['{"spawn":"gpu","lease":{"gpu_id":"GPU-0","mem_mb":1,"streams":1,"ttl_s":60,"priority":-1}}', /^Error: invalid: spawn\.lease\.priority must be a non-negative integer, got -1 \(range 0\.\.65535\)/],
    ];
    for (const [command, expected] of refused) expect(await run(ctl, command), command).toMatch(expected);
    expect(await records(stateDir)).toBe(before);
    expect(app.app.state.defaults).toEqual({});
  });

  test("budget defaults an older version accepted out of bounds make a spawn fail before anything is committed", async () => {
    const { app, stateDir } = await start();
    const { root, ctl } = await queenCtl(app);
    await app.app.commit({ kind: "budget", body: { budget: { ttl_s: Number.MAX_SAFE_INTEGER } } });
    const before = await records(stateDir);
    expect(await run(ctl, '{"spawn":"heartbeat"}')).toMatch(/^Error: invalid: spawn budget \(with defaults\)\.ttl_s must be an integer 1\.\.31536000/);
    expect(await records(stateDir)).toBe(before);
    expect(await names(root, "worker")).toEqual([]);
    // New defaults within bounds repair it.
    expect(await run(ctl, '{"budget":{"ttl_s":600}}')).toMatch(/^\{"ok":true/);
    expect(await run(ctl, '{"spawn":"heartbeat"}')).toMatch(/^\{"ok":true,"worker":"worker-1"/);
  });
});

describe("long ttls", () => {
  test("a worker with ttl_s 2,147,484 (past Node's 24.8-day timer limit) keeps running", { timeout: 60_000 }, async () => {
    const { app } = await start();
    const { root, ctl } = await queenCtl(app);
    expect(await run(ctl, '{"spawn":"heartbeat","budget":{"ttl_s":2147484}}')).toMatch(/^\{"ok":true/);
    // Several heartbeats later (the interval is 200 ms) it must still run.
    await until(
      async () => app.app.state.workers["worker-1"]?.status !== "running" || Number(/ticks=(\d+)/.exec(await root.readText("proc/workers"))?.[1] ?? 0) >= 3,
      "three heartbeats",
    );
    expect(app.app.state.workers["worker-1"]?.status).toBe("running");
    expect(await root.readText("proc/workers")).toMatch(/status=running .*ttl_s=2147484/);
  });
});

describe("a failed commit leaves nothing behind", () => {
  test("bind, unbind, budget, spawn and kill change nothing when their commit fails", { timeout: 60_000 }, async () => {
    const { app } = await start();
    const { root, ctl } = await queenCtl(app);
    expect(await run(ctl, '{"spawn":"heartbeat"}')).toMatch(/^\{"ok":true/);
    expect(await run(ctl, '{"bind":{"from":"/log","to":"/kept"}}')).toMatch(/^\{"ok":true/);
    const pid = Number(/pid=(\d+)/.exec(await root.readText("proc/workers"))?.[1]);
    const stateBefore = await root.readText("proc/state");
    const restore = failCommits(app);

    expect(await run(ctl, '{"bind":{"from":"/proc","to":"/halfbind"}}')).toMatch(/^Error: .*no space left on device/);
    expect(await names(root, "/")).not.toContain("halfbind");
    await expect(root.walk("halfbind")).rejects.toThrow(/not found/);
    expect(await run(ctl, '{"unbind":"/kept"}')).toMatch(/^Error: .*no space left/);
    expect(await names(root, "/")).toContain("kept");
    expect(await run(ctl, '{"budget":{"ops":9}}')).toMatch(/^Error: .*no space left/);
    expect(await run(ctl, '{"spawn":"heartbeat"}')).toMatch(/^Error: .*no space left/);
    expect(await names(root, "worker")).toEqual(["worker-1"]);
    expect(app.app.state.nextWorker).toBe(2);
    expect(await run(ctl, '{"kill":"worker-1"}')).toMatch(/^Error: .*no space left/);
    expect(await root.readText("proc/state")).toBe(stateBefore);
    expect(await root.readText("proc/workers")).toMatch(new RegExp(`status=running pid=${pid} `));
    expect(() => process.kill(pid, 0)).not.toThrow();

    // Once commits work again, the same kill does what it says.
    restore();
    expect(await run(ctl, '{"kill":"worker-1"}')).toMatch(/^\{"ok":true,"worker":"worker-1","status":"killed"/);
    expect(app.app.state.workers["worker-1"]?.status).toBe("killed");
    await until(() => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    }, "the killed worker's process to end");
  });
});

let disks = 0;
/** Mounts a tmpfs of `size` at a fresh folder; undefined when this machine does not allow it (not root). */
function tinyDisk(size: string): { dir: string; unmount: () => void } | undefined {
  const at = join(appliances.dir, `disk-${++disks}`);
  mkdirSync(at, { recursive: true });
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", at], { stdio: "ignore" });
  } catch {
    return undefined;
  }
  return { dir: at, unmount: () => execFileSync("umount", ["-l", at], { stdio: "ignore" }) };
}

describe("a full state disk", () => {
  test("a bind or spawn refused because the disk is full leaves nothing behind", { timeout: 60_000 }, async (ctx) => {
    const disk = tinyDisk("8m");
    if (!disk) return ctx.skip();
    try {
      const { app } = await start({ stateDir: join(disk.dir, "state") });
      const { root, ctl } = await queenCtl(app);
      const filler = fill(disk.dir);
      // The log's last page may still take a few records: bind until one is refused.
      let refused = 0;
      for (let i = 1; i <= 500 && refused === 0; i++) {
        if ((await run(ctl, `{"bind":{"from":"/proc","to":"/half${i}"}}`)).startsWith("Error: ")) refused = i;
      }
      expect(refused).toBeGreaterThan(0);
      const halfbind = `half${refused}`;
      expect(await names(root, "/")).not.toContain(halfbind);
      const binds = (JSON.parse(await root.readText("proc/state")) as { state: { binds: { to: string }[] } }).state.binds;
      expect(binds.map((b) => b.to)).not.toContain(`/${halfbind}`);
      expect(binds).toHaveLength(refused - 1);
      expect(await run(ctl, '{"spawn":"heartbeat"}')).toMatch(/^Error: /);
      expect(await names(root, "worker")).toEqual([]);
      expect(await root.readText("proc/workers")).toBe("");
      // Freeing room and carrying on is the commit log's recovery, tested with it.
      rmSync(filler);
      await stop(app);
    } finally {
      disk.unmount();
    }
  });
});
