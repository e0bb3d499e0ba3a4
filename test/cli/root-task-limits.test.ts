/**
 * The root task's control limits through the real program: `cohesix serve
 * --max-workers N` caps running workers (a spawn past it answers `busy:`
 * with the cap and leaves no record), `{"unbind":…}` takes back a bind, and
 * `--limit audit.NAME=N` sets the audit's limits.
 */
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { NOFID } from "../../nine-door/index.ts";
import { RawConn } from "../nine-door/harness.ts";
import { recordCount, useServedSuite } from "./appliance-helpers.ts";
import { cohesix } from "./helpers.ts";

describe("cohesix serve --max-workers", () => {
  const suite = useServedSuite(["--max-workers", "1"]);

  test("a spawn past the cap answers busy: with the cap and commits nothing", { timeout: 60_000 }, async () => {
    expect((await suite.queen.run(["ctl", '{"spawn":"heartbeat","ticks":100000}'])).stdout).toBe("worker-1");
    const before = await recordCount(join(suite.scratch.dir, "state"));
    const r = await suite.queen.run(["ctl", '{"spawn":"heartbeat","ticks":100000}']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^busy: worker cap 1 reached \(1 running; kill one, or raise the maxWorkers option, cohesix serve --max-workers N\)/);
    expect(await recordCount(join(suite.scratch.dir, "state"))).toBe(before);
    expect(await suite.queen.cat("/proc/mem")).toMatch(/ max_workers=1 /);
  });

  test("unbind takes back a bind", async () => {
    expect((await suite.queen.run(["ctl", '{"bind":{"from":"/log","to":"/lg"}}'])).exitCode).toBe(0);
    expect(await suite.queen.cat("/lg/queen.log")).toContain("boot board=host");
    expect((await suite.queen.run(["ctl", '{"unbind":"/lg"}'])).exitCode).toBe(0);
    const r = await suite.queen.run(["cat", "/lg/queen.log"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/not found/);
  });
});

describe("cohesix serve --max-workers with a bad value", () => {
  test("is a usage error (exit 2)", async () => {
    const r = await cohesix(["serve", "--listen", "127.0.0.1:0", "--state", "/tmp/unused-cohesix-state", "--max-workers", "0"]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--max-workers must be a whole number 1\.\.100000, got "0"/);
  });
});

describe("cohesix serve --limit audit.NAME=N", () => {
  const suite = useServedSuite(["--limit", "audit.view_burst=1", "--limit", "audit.burst=2"]);

  test("sets the audit's limits: with view_burst=1 one refusal of a peer without a ticket reaches /log/queen.log in full, the rest go to /log/refused.log", { timeout: 60_000 }, async () => {
    for (let i = 0; i < 6; i++) {
      const conn = await RawConn.open(suite.served.port);
      expect((await conn.call({ type: "Tversion", msize: 65536, version: "9P2000.L" }, 0xffff)).type).toBe("Rversion");
      expect((await conn.call({ type: "Tattach", fid: 0, afid: NOFID, uname: "queen", aname: `forged-${i}`, nUname: 0 })).type).toBe("Rlerror");
      conn.close();
    }
    const refusedInView = (text: string) => text.split("\n").filter((l) => /forged-|malformed ticket/.test(l) && !/^refused \d+ more/.test(l));
    const view = await suite.queen.cat("/log/queen.log");
    expect(refusedInView(view)).toHaveLength(1);
    // burst=2 per peer: two written in full to refused.log, the others counted.
    const refused = await suite.queen.cat("/log/refused.log");
    expect(refusedInView(refused).length).toBe(2);
  });
});

describe("cohesix serve --limit with a bad audit limit", () => {
  test("an unknown name or a value out of bounds is a usage error naming the known names or the bound (exit 2, one line)", async () => {
    const unknown = await cohesix(["serve", "--listen", "127.0.0.1:0", "--state", "/tmp/unused-cohesix-state", "--limit", "audit.nope=1"]);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr.trim().split("\n")).toHaveLength(1);
    expect(unknown.stderr).toMatch(/expected audit\.NAME=N with NAME one of burst, refill_ms, window_ms/);
    const zero = await cohesix(["serve", "--listen", "127.0.0.1:0", "--state", "/tmp/unused-cohesix-state", "--limit", "audit.burst=0"]);
    expect(zero.exitCode).toBe(2);
    expect(zero.stderr).toMatch(/audit\.burst must be 1\.\.1073741824, got 0/);
  });
});
