/**
 * The root task's control limits through the real program: `cohesix serve
 * --max-workers N` caps running workers (a spawn past it answers `busy:`
 * with the cap and leaves no record), and `{"unbind":…}` takes back a bind.
 */
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { recordCount, useServedSuite } from "./appliance-helpers.ts";
import { cohesix } from "./helpers.ts";

describe("cohesix serve --max-workers", () => {
  const suite = useServedSuite(["--max-workers", "1"]);

  test("a spawn past the cap answers busy: with the cap and commits nothing", { timeout: 60_000 }, async () => {
    expect((await suite.queen.run(["ctl", '{"spawn":"heartbeat","ticks":100000}'])).stdout).toBe("worker-1");
    const before = await recordCount(join(suite.scratch.dir, "state"));
    const r = await suite.queen.run(["ctl", '{"spawn":"heartbeat","ticks":100000}']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^busy: worker cap 1 reached \(1 running; kill one, or raise the maxWorkers option\)/);
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
