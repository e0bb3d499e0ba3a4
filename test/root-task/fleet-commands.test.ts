/**
 * Commands from the fleet on /queen/ctl (docs/fleet.md, "Commands"): the
 * fleet link writes with its own role, and only a signed envelope
 * addressed to this appliance (`to`, inside what is signed) is taken from
 * it. A forged, replayed or other-id envelope is refused, audited, and
 * leaves the commit log as it was.
 */
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { NineClient, type Fid } from "../../nine-door/index.ts";
import { mintTicket, signEnvelope, signFleetCommand, writeKeyPair, type RunningAppliance } from "../../root-task/index.ts";
import { useAppliances, write } from "./fixture.ts";

const appliances = useAppliances({ prefix: "cohesix-fleet-ctl-", defaults: { intervalMs: 200, graceMs: 500 } });

async function attachFleet(app: RunningAppliance): Promise<Fid> {
  const client = await NineClient.dial(app.dialString, { dialect: "9P2000" });
  return client.attach({ uname: "fleet", aname: mintTicket({ role: "fleet", sub: "fleet-link" }, app.app.bootKey) });
}

const queenLog = async (root: Fid) => (await root.readText("log/queen.log")).toString();

describe("the fleet role on /queen/ctl", () => {
  test("a signed envelope addressed to this appliance runs; the counter rises", async () => {
    const { app } = await appliances.start({ fleetId: "app-1" });
    const fleet = await attachFleet(app);
    const env = signFleetCommand('{"budget":{"ops":50}}', appliances.queenKey, { ctr: 1, to: "app-1", reply: "h-1" });
    expect(JSON.parse(await write(fleet, "queen/ctl", env))).toMatchObject({ ok: true, defaults: { ops: 50 } });
    expect((await fleet.readText("queen/ctr")).trim()).toBe("1");
    fleet.client.close();
  });

  test("a forged, a replayed, an other-id, an unaddressed and a plain command are each refused, audited, and commit nothing", async () => {
    const { app } = await appliances.start({ fleetId: "app-1" });
    const fleet = await attachFleet(app);
    const queen = await appliances.attachQueen(app);
    const ok = signFleetCommand('{"budget":{"ops":60}}', appliances.queenKey, { ctr: 1, to: "app-1", reply: "h-1" });
    expect(JSON.parse(await write(fleet, "queen/ctl", ok))).toMatchObject({ ok: true });
    const head = app.app.logStats.head;
    const other = await writeKeyPair(join(appliances.dir, "other-key"), { name: "queen" });
    const cases: [string, RegExp][] = [
      [signFleetCommand('{"budget":{"ops":1}}', other.privateKey, { ctr: 2, to: "app-1", reply: "h-2" }), /^Error: permission: envelope signature does not verify/],
      [ok, /^Error: permission: replay: counter 1 is not above the last accepted 1/],
      [signFleetCommand('{"budget":{"ops":2}}', appliances.queenKey, { ctr: 2, to: "app-2", reply: "h-3" }), /^Error: permission: envelope is for appliance app-2, this is app-1/],
      [signEnvelope('{"budget":{"ops":3}}', appliances.queenKey, { ctr: 2 }), /^Error: invalid: fleet: a command from the fleet must be addressed/],
      ['{"budget":{"ops":4}}', /^Error: invalid: fleet: \/queen\/ctl takes only signed envelopes/],
      // The reply name is signed too: changing it breaks the signature.
      [ok.replace('"h-1"', '"h-9"').replace('"ctr":1', '"ctr":2'), /^Error: permission: envelope signature does not verify/],
    ];
    for (const [text, refusal] of cases) expect(await write(fleet, "queen/ctl", text)).toMatch(refusal);
    expect(app.app.logStats.head).toBe(head);
    expect(app.app.state.defaults.ops).toBe(60);
    expect((await queen.readText("queen/ctr")).trim()).toBe("1");
    const log = await queenLog(queen);
    expect(log).toMatch(/ctl from fleet-link refused: permission: envelope signature does not verify/);
    expect(log).toMatch(/ctl from fleet-link refused: permission: replay/);
    expect(log).toMatch(/ctl from fleet-link refused: permission: envelope is for appliance app-2/);
    fleet.client.close();
  });

  test("an envelope copied from app-1 to app-2 is refused there, under signed-ctl too", async () => {
    const { app } = await appliances.start({ fleetId: "app-2", policy: "signed-ctl" });
    const queen = await appliances.attachQueen(app);
    const forApp1 = signFleetCommand('{"budget":{"ops":7}}', appliances.queenKey, { ctr: 1, to: "app-1", reply: "h-1" });
    const head = app.app.logStats.head;
    expect(await write(queen, "queen/ctl", forApp1)).toMatch(/^Error: permission: envelope is for appliance app-1, this is app-2/);
    expect(app.app.logStats.head).toBe(head);
    expect(app.app.state.ctr).toBe(0);
  });

  test("the default fleet id is cx- and the boot key id, and a plain queen envelope works unchanged", async () => {
    const { app } = await appliances.start();
    expect(app.app.fleetId).toMatch(/^cx-[0-9a-f]{16}$/);
    const queen = await appliances.attachQueen(app);
    expect(JSON.parse(await write(queen, "queen/ctl", signEnvelope('{"budget":{"ops":9}}', appliances.queenKey, { ctr: 1 })))).toMatchObject({ ok: true });
    const addressed = signFleetCommand('{"budget":{"ops":8}}', appliances.queenKey, { ctr: 2, to: app.app.fleetId, reply: "r" });
    expect(JSON.parse(await write(queen, "queen/ctl", addressed))).toMatchObject({ ok: true, defaults: { ops: 8 } });
  });

  test("the fleet role reads /proc, /queen/ctr, /log/queen.log and telemetry, and writes nothing but /queen/ctl", async () => {
    const { app } = await appliances.start({ fleetId: "app-1" });
    const fleet = await attachFleet(app);
    expect(await fleet.readText("proc/boot")).toMatch(/^cohesix /);
    expect(await fleet.readText("proc/lifecycle/state")).toMatch(/ONLINE/);
    expect(await fleet.readText("queen/ctr")).toBe("0\n");
    await fleet.readText("log/queen.log");
    expect(await write(fleet, "queen/lifecycle/ctl", "cordon")).toMatch(/^Error: not found: queen\/lifecycle/);
    await expect(fleet.readText("log/refused.log")).rejects.toThrow(/^not found: log\/refused.log/);
    expect(app.app.state.cordoned).toBe(false);
    fleet.client.close();
  });
});
