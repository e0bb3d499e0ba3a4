/**
 * `cohesix write` and `cohesix ctl --file` sign commands for the ctl files
 * that change state when the appliance runs `--policy signed-ctl`, so the
 * queen types the same words as under the open policy.
 */
import { describe, expect, test } from "vitest";
import { useServedSuite, waitFor } from "./appliance-helpers.ts";

describe("the command line under --policy signed-ctl", () => {
  const suite = useServedSuite(["--policy", "signed-ctl"]);

  test("cohesix write /queen/lifecycle/ctl cordon is signed and runs", async () => {
    const before = Number(await suite.queen.cat("/queen/ctr"));
    const r = await suite.queen.run(["write", "/queen/lifecycle/ctl", "cordon"]);
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(await suite.queen.cat("/proc/state")).state.cordoned).toBe(true);
    expect(Number(await suite.queen.cat("/queen/ctr"))).toBe(before + 1);
    expect((await suite.queen.run(["ctl", "--file", "/queen/lifecycle/ctl", '{"lifecycle":"resume"}'])).exitCode).toBe(0);
    expect(JSON.parse(await suite.queen.cat("/proc/state")).state.cordoned).toBe(false);
  });

  test("cohesix write /worker/<id>/ctl kill is signed and kills the worker", { timeout: 60_000 }, async () => {
    const id = (await suite.queen.run(["ctl", '{"spawn":"heartbeat","ticks":100000}'])).stdout.trim();
    expect(id).toMatch(/^worker-\d+$/);
    const r = await suite.queen.run(["write", `/worker/${id}/ctl`, "kill"]);
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    await waitFor(`${id} killed`, async () => (await suite.queen.workers()).get(id)?.status === "killed");
  });

  test("an unsigned write (ctl --unsigned) to the lifecycle ctl is refused", async () => {
    const r = await suite.queen.run(["ctl", "--unsigned", "--file", "/queen/lifecycle/ctl", '{"lifecycle":"cordon"}']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^invalid: policy signed-ctl: wrap the command/);
  });
});
