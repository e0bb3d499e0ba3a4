/**
 * Acceptance of the root task's workers through the real program (issue 3):
 * `cohesix serve --board host` as a child process, `cohesix ctl`/`cat`/
 * `write` as the queen, and worker processes checked by the PIDs the
 * appliance reports in /proc/workers. Every wait polls with a generous
 * deadline; every process is stopped by its PID.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { Queen, pidAlive, recordCount, signalPid, stopServed, useServedSuite, waitFor } from "./appliance-helpers.ts";
import { cohesix, makeScratch, serve, type Scratch, type Served } from "./helpers.ts";

/** Worker pids seen by a suite, killed by PID after it if still there. */
const seenPids = new Set<number>();
afterAll(() => {
  for (const pid of seenPids) if (pidAlive(pid)) signalPid(pid, "SIGKILL");
});

describe("spawn and revoke", () => {
  const suite = useServedSuite();
  const state = () => join(suite.scratch.dir, "state");

  test("ctl spawn heartbeat with 5 ticks prints worker-1; telemetry, revocation, pid gone", { timeout: 60_000 }, async () => {
    const r = await suite.queen.run(["ctl", '{"spawn":"heartbeat","ticks":5}']);
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe("worker-1");

    const pid = await suite.queen.pid("worker-1");
    seenPids.add(pid);
    expect(pidAlive(pid)).toBe(true);

    // Within 10 s, at least two JSON lines of telemetry.
    const lines = await waitFor("two telemetry lines", async () => ((await suite.queen.telemetry("worker-1")).length >= 2 ? suite.queen.telemetry("worker-1") : undefined), { timeoutMs: 10_000 });
    expect(lines[0]).toMatchObject({ tick: 1 });
    expect(typeof lines[0]!.ts_ms).toBe("number");
    expect(typeof lines[0]!.load1).toBe("number");
    expect(typeof lines[0]!.rss_kb).toBe("number");

    // After 5 ticks the worker is revoked and its process goes away.
    await waitFor("the revocation line", async () => (await suite.queen.cat("/log/queen.log")).includes("revoked worker-1: tick budget exhausted"));
    await waitFor(`worker-1's pid ${pid} to exit`, () => !pidAlive(pid));
    expect((await suite.queen.telemetry("worker-1")).length).toBe(5);
    const w = (await suite.queen.workers()).get("worker-1");
    expect(w).toMatchObject({ status: "revoked", reason: "tick budget exhausted", pid: "-" });
    // The worker's stderr (it hears `closed:` or the SIGTERM that follows) is kept in /log/worker-1.log.
    await waitFor("worker-1's stderr", async () => /heartbeat worker-1: (closed: tick budget exhausted|stopping on SIGTERM)/.test(await suite.queen.cat("/log/worker-1.log")));
  });

  test("/worker/<id>/ctl accepts kill from the queen and the worker's pid goes away", { timeout: 60_000 }, async () => {
    const r = await suite.queen.run(["ctl", '{"spawn":"heartbeat","ticks":1000}']);
    expect(r.stdout).toBe("worker-2");
    const pid = await suite.queen.pid("worker-2");
    seenPids.add(pid);
    const k = await suite.queen.run(["write", "/worker/worker-2/ctl", "kill"]);
    expect(k.stderr).toBe("");
    expect(k.exitCode).toBe(0);
    await waitFor(`worker-2's pid ${pid} to exit`, () => !pidAlive(pid));
    expect((await suite.queen.workers()).get("worker-2")).toMatchObject({ status: "killed", reason: "killed by queen" });
    expect(await suite.queen.cat("/log/queen.log")).toContain("killed worker-2 by queen");
  });

  test("kill of an unknown worker answers not found: and commits nothing", async () => {
    const before = await recordCount(state());
    const r = await suite.queen.run(["ctl", '{"kill":"worker-99"}']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^not found: .*worker-99/);
    expect(await recordCount(state())).toBe(before);
  });
});

describe("restart after kill -9 of serve", () => {
  let scratch: Scratch;
  let served: Served | undefined;
  const state = () => join(scratch.dir, "state");

  beforeAll(async () => {
    scratch = await makeScratch();
  });
  afterAll(async () => {
    await stopServed(served);
    await scratch?.remove();
  });

  test("the running worker comes back with its id and a new pid, telemetry and the logs continue", { timeout: 90_000 }, async () => {
    served = await serve(scratch);
    const queen = new Queen(scratch, served);
    expect((await queen.run(["ctl", '{"spawn":"heartbeat","ticks":100000}'])).stdout).toBe("worker-1");
    const oldPid = await queen.pid("worker-1");
    seenPids.add(oldPid);
    await waitFor("two telemetry lines", async () => (await queen.telemetry("worker-1")).length >= 2);
    const recordsBefore = await recordCount(state());

    signalPid(served.pid, "SIGKILL");
    const dead = await served.child;
    expect(dead.signal).toBe("SIGKILL");
    // The orphaned worker must not hold on: it leaves once its NineDoor connection is gone.
    await waitFor(`the old worker's pid ${oldPid} to exit`, () => !pidAlive(oldPid), { timeoutMs: 15_000 });

    served = await serve(scratch);
    queen.served = served;
    const newPid = await queen.pid("worker-1");
    seenPids.add(newPid);
    expect(newPid).not.toBe(oldPid);
    expect((await queen.workers()).get("worker-1")).toMatchObject({ status: "running", kind: "heartbeat" });
    await waitFor("telemetry from the new process", async () => (await queen.telemetry("worker-1")).length >= 2);

    const log = await queen.cat("/log/queen.log");
    expect(log).toMatch(new RegExp(`boot board=host version=\\S+ records=${recordsBefore} head=${recordsBefore}`));
    expect(log).toMatch(/spawned worker-1 role=heartbeat pid=\d+/);

    // The commit log continues the chain: a new command gets the next seq, and it verifies.
    expect((await queen.run(["ctl", '{"budget":{"ops":900}}'])).exitCode).toBe(0);
    expect(await recordCount(state())).toBeGreaterThan(recordsBefore);
    const v = await cohesix(["log", "verify", state()], { env: scratch.env });
    expect(v.stderr).toBe("");
    expect(v.exitCode).toBe(0);
    expect(v.stdout).toMatch(/^ok=true$/m);
    expect(v.stdout).toMatch(/^hmac=verified$/m);
  });
});

describe("lifecycle", () => {
  const suite = useServedSuite();

  test("/proc/lifecycle/{state,reason,since} start ONLINE", async () => {
    expect(await suite.queen.cat("/proc/lifecycle/state")).toBe("ONLINE");
    expect((await suite.queen.cat("/proc/lifecycle/reason")).trim()).not.toBe("");
    expect(Number.isNaN(Date.parse((await suite.queen.cat("/proc/lifecycle/since")).trim()))).toBe(false);
  });

  test("cordon makes a spawn fail with busy: cordoned; workers keep running", { timeout: 60_000 }, async () => {
    expect((await suite.queen.run(["ctl", '{"spawn":"heartbeat","ticks":100000}'])).stdout).toBe("worker-1");
    const pid = await suite.queen.pid("worker-1");
    seenPids.add(pid);
    const c = await suite.queen.run(["write", "/queen/lifecycle/ctl", "cordon"]);
    expect(c.exitCode).toBe(0);
    const r = await suite.queen.run(["ctl", '{"spawn":"heartbeat","ticks":3}']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toBe("busy: cordoned");
    expect(pidAlive(pid)).toBe(true);
    expect(await suite.queen.cat("/proc/lifecycle/reason")).toBe("cordoned by queen");
  });

  test("drain stops every worker within its grace period and leaves QUIESCED", { timeout: 60_000 }, async () => {
    // cordon refuses spawns: resume to start a second worker, then drain both.
    expect((await suite.queen.run(["write", "/queen/lifecycle/ctl", "resume"])).exitCode).toBe(0);
    expect((await suite.queen.run(["ctl", '{"spawn":"heartbeat","ticks":100000}'])).stdout).toBe("worker-2");
    const pids = [await suite.queen.pid("worker-1"), await suite.queen.pid("worker-2")];
    pids.forEach((p) => seenPids.add(p));
    await waitFor("worker-2's telemetry", async () => (await suite.queen.telemetry("worker-2")).length >= 1);

    const started = Date.now();
    const d = await suite.queen.run(["write", "/queen/lifecycle/ctl", "drain"]);
    expect(d.stderr).toBe("");
    expect(d.exitCode).toBe(0);
    // The drain answers once the workers are gone: no process is left when it returns.
    for (const pid of pids) expect(pidAlive(pid)).toBe(false);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(await suite.queen.cat("/proc/lifecycle/state")).toBe("QUIESCED");
    expect(await suite.queen.cat("/proc/lifecycle/reason")).toBe("drained");
    const workers = await suite.queen.workers();
    for (const id of ["worker-1", "worker-2"]) expect(workers.get(id)).toMatchObject({ status: "exited", reason: "drained" });
    // Gracefully: each worker heard `closed: drained` and left by itself before any SIGKILL.
    for (const id of ["worker-1", "worker-2"]) expect(await suite.queen.cat(`/log/${id}.log`)).toMatch(/closed: drained|stopping on SIGTERM/);
    const spawnRefused = await suite.queen.run(["ctl", '{"spawn":"heartbeat","ticks":3}']);
    expect(spawnRefused.stderr).toMatch(/^busy: /);
  });

  test("resume allows spawns again and the state is ONLINE", { timeout: 60_000 }, async () => {
    expect((await suite.queen.run(["write", "/queen/lifecycle/ctl", "resume"])).exitCode).toBe(0);
    expect(await suite.queen.cat("/proc/lifecycle/state")).toBe("ONLINE");
    expect(await suite.queen.cat("/proc/lifecycle/reason")).toBe("resume by queen");
    const r = await suite.queen.run(["ctl", '{"spawn":"heartbeat","ticks":2}']);
    expect(r.stdout).toBe("worker-3");
    seenPids.add(await suite.queen.pid("worker-3"));
  });

  test("an unknown lifecycle word is refused with invalid: and changes nothing", async () => {
    // worker-3 (ticks:2) from the test before ends by itself, and its end is a commit:
    // count the records only once it has ended, so that commit is not taken for the refusal's.
    await waitFor("worker-3 to end", async () => (await suite.queen.workers()).get("worker-3")?.status.match(/^(exited|revoked|killed)$/) != null);
    const before = await recordCount(join(suite.scratch.dir, "state"));
    const r = await suite.queen.run(["write", "/queen/lifecycle/ctl", "explode"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^invalid: unknown lifecycle command "explode"/);
    expect(await recordCount(join(suite.scratch.dir, "state"))).toBe(before);
  });
});

describe("watchdog and restart policy", () => {
  const suite = useServedSuite();

  test("a SIGSTOPped worker with restart:true goes stale, is restarted with a new pid, and the stopped one is gone", { timeout: 90_000 }, async () => {
    expect((await suite.queen.run(["ctl", '{"spawn":"heartbeat","ticks":100000,"restart":true}'])).stdout).toBe("worker-1");
    const oldPid = await suite.queen.pid("worker-1");
    seenPids.add(oldPid);
    await waitFor("telemetry", async () => (await suite.queen.telemetry("worker-1")).length >= 1);
    signalPid(oldPid, "SIGSTOP");
    try {
      await waitFor("the stale audit line", async () => (await suite.queen.cat("/log/queen.log")).includes("worker-1 stale: no heartbeat for 3 intervals; restarting"), { timeoutMs: 30_000 });
      const newPid = await waitFor("a new pid for worker-1", async () => {
        const pid = Number((await suite.queen.workers()).get("worker-1")?.pid);
        return Number.isSafeInteger(pid) && pid !== oldPid ? pid : undefined;
      }, { timeoutMs: 30_000 });
      seenPids.add(newPid);
      const before = (await suite.queen.telemetry("worker-1")).length;
      await waitFor("telemetry from the restarted process", async () => (await suite.queen.telemetry("worker-1")).length > before);
    } finally {
      signalPid(oldPid, "SIGCONT");
    }
    // Woken up, the old process is not there to write anything.
    await waitFor(`the stopped pid ${oldPid} to be gone`, () => !pidAlive(oldPid), { timeoutMs: 10_000 });
    expect((await suite.queen.workers()).get("worker-1")).toMatchObject({ status: "running", stale: "false" });
  });

  test("a worker with restart:true whose process is SIGKILLed comes back with a new pid; its stderr is in /log/<id>.log", { timeout: 90_000 }, async () => {
    expect((await suite.queen.run(["ctl", '{"spawn":"heartbeat","ticks":100000,"restart":true}'])).stdout).toBe("worker-2");
    const oldPid = await suite.queen.pid("worker-2");
    seenPids.add(oldPid);
    signalPid(oldPid, "SIGKILL");
    const newPid = await waitFor("a new pid for worker-2", async () => {
      const pid = Number((await suite.queen.workers()).get("worker-2")?.pid);
      return Number.isSafeInteger(pid) && pid !== oldPid ? pid : undefined;
    }, { timeoutMs: 30_000 });
    seenPids.add(newPid);
    expect(await suite.queen.cat("/log/queen.log")).toContain("worker-2 exited with signal SIGKILL; restarting");
    expect((await suite.queen.workers()).get("worker-2")).toMatchObject({ status: "running", restarts: "1" });

    // Killed by the queen, the worker says why on its stderr, kept in /log/worker-2.log.
    expect((await suite.queen.run(["write", "/worker/worker-2/ctl", "kill"])).exitCode).toBe(0);
    await waitFor(`worker-2's pid ${newPid} to exit`, () => !pidAlive(newPid));
    await waitFor("worker-2's stderr in /log/worker-2.log", async () => /heartbeat worker-2: (closed: killed by queen|stopping on SIGTERM)/.test(await suite.queen.cat("/log/worker-2.log")));
  });

  test("a worker without restart that dies is marked exited and not restarted", { timeout: 60_000 }, async () => {
    expect((await suite.queen.run(["ctl", '{"spawn":"heartbeat","ticks":100000}'])).stdout).toBe("worker-3");
    const pid = await suite.queen.pid("worker-3");
    seenPids.add(pid);
    signalPid(pid, "SIGKILL");
    await waitFor("worker-3 marked exited", async () => (await suite.queen.workers()).get("worker-3")?.status.match(/^(exited|revoked|killed)$/) != null);
    expect((await suite.queen.workers()).get("worker-3")).toMatchObject({ reason: "exited with signal SIGKILL", pid: "-" });
  });
});
