/**
 * Signed control covers every ctl file that changes state: under
 * `--policy signed-ctl`, `/queen/lifecycle/ctl` and `/worker/<id>/ctl`
 * refuse plain words and accept only envelopes signed by the queen key,
 * with the counter shared with `/queen/ctl` (so an envelope is good once,
 * on whichever file). Under the open policy the plain words still work.
 */
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { type Fid } from "../../nine-door/index.ts";
import { signEnvelope, writeKeyPair, type RunningAppliance } from "../../root-task/index.ts";
import { useAppliances, write } from "./fixture.ts";

const appliances = useAppliances({ prefix: "cohesix-signed-files-", defaults: { intervalMs: 200, graceMs: 500 } });

async function start(policy: "open" | "signed-ctl"): Promise<{ app: RunningAppliance; root: Fid }> {
  const { app } = await appliances.start({ policy });
  return { app, root: await appliances.attachQueen(app) };
}

let ctr = 0;
const signed = (command: string) => signEnvelope(command, appliances.queenKey, { ctr: ++ctr });

describe("under signed-ctl", () => {
  test("an unsigned cordon on /queen/lifecycle/ctl is refused and changes nothing; a signed one runs", async () => {
    ctr = 0;
    const { app, root } = await start("signed-ctl");
    expect(await write(root, "queen/lifecycle/ctl", "cordon")).toMatch(/^Error: invalid: policy signed-ctl: wrap the command as \{"cmd"/);
    expect(await write(root, "queen/lifecycle/ctl", '{"lifecycle":"cordon"}')).toMatch(/^Error: invalid: policy signed-ctl/);
    expect(app.app.state.cordoned).toBe(false);
    expect(app.app.state.ctr).toBe(0);
    const envelope = signed('{"lifecycle":"cordon"}');
    expect(JSON.parse(await write(root, "queen/lifecycle/ctl", envelope))).toMatchObject({ ok: true, cordoned: true });
    expect(app.app.state.ctr).toBe(1);
    // The same envelope again is a replay.
    expect(await write(root, "queen/lifecycle/ctl", envelope)).toMatch(/^Error: permission: replay: counter 1/);
    // A forged one is refused.
    const other = await writeKeyPair(join(appliances.dir, "other"), { name: "queen" });
    const forged = signEnvelope('{"lifecycle":"resume"}', other.privateKey, { ctr: 5 });
    expect(await write(root, "queen/lifecycle/ctl", forged)).toMatch(/^Error: permission: envelope signature does not verify/);
    expect(app.app.state.cordoned).toBe(true);
  });

  test("an unsigned kill on /worker/<id>/ctl is refused and the worker keeps running; a signed one kills it", { timeout: 60_000 }, async () => {
    ctr = 0;
    const { app, root } = await start("signed-ctl");
    expect(JSON.parse(await write(root, "queen/ctl", signed('{"spawn":"heartbeat","ticks":100000}')))).toMatchObject({ ok: true, worker: "worker-1" });
    expect(await write(root, "worker/worker-1/ctl", "kill")).toMatch(/^Error: invalid: policy signed-ctl: wrap the command/);
    expect(app.app.state.workers["worker-1"]?.status).toBe("running");
    // An envelope naming another worker does not kill this one.
    expect(await write(root, "worker/worker-1/ctl", signed('{"kill":"worker-2"}'))).toMatch(/^Error: invalid: unknown worker command/);
    expect(app.app.state.workers["worker-1"]?.status).toBe("running");
    expect(JSON.parse(await write(root, "worker/worker-1/ctl", signed('{"kill":"worker-1"}')))).toMatchObject({ ok: true, worker: "worker-1", status: "killed" });
    expect(app.app.state.workers["worker-1"]?.status).toBe("killed");
    expect(app.app.state.ctr).toBe(ctr);
  });

  test("the counter is one for all ctl files: an envelope used on /queen/ctl is a replay on the lifecycle ctl", async () => {
    ctr = 0;
    const { app, root } = await start("signed-ctl");
    expect(await write(root, "queen/ctl", signed('{"budget":{"ops":9}}'))).toMatch(/^\{"ok":true/);
    const stale = signEnvelope('{"lifecycle":"cordon"}', appliances.queenKey, { ctr: 1 });
    expect(await write(root, "queen/lifecycle/ctl", stale)).toMatch(/^Error: permission: replay: counter 1 is not above the last accepted 1/);
    expect(app.app.state.cordoned).toBe(false);
  });
});

describe("under the open policy", () => {
  test("plain words and their JSON forms still run on the lifecycle and worker ctl files", { timeout: 60_000 }, async () => {
    ctr = 0;
    const { app, root } = await start("open");
    expect(JSON.parse(await write(root, "queen/lifecycle/ctl", "cordon"))).toMatchObject({ ok: true, cordoned: true });
    expect(JSON.parse(await write(root, "queen/lifecycle/ctl", '{"lifecycle":"resume"}'))).toMatchObject({ ok: true, cordoned: false });
    expect(JSON.parse(await write(root, "queen/ctl", '{"spawn":"heartbeat","ticks":100000}'))).toMatchObject({ worker: "worker-1" });
    expect(JSON.parse(await write(root, "worker/worker-1/ctl", "kill"))).toMatchObject({ ok: true, status: "killed" });
    expect(app.app.state.ctr).toBe(0);
  });
});
