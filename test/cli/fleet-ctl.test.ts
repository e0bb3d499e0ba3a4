// `cohesix fleet ctl` against a real mosquitto and simulated appliances
// (fleet links in this process that answer commands as docs/fleet.md says,
// verifying each envelope with the root task's signed-ctl code).
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { readPublicKey } from "../../root-task/index.ts";
import { Broker } from "../fleet/broker.ts";
import { SimFleet } from "../fleet/sim-fleet.ts";
import { cohesix, makeScratch, type Scratch } from "./helpers.ts";

let scratch: Scratch;
let broker: Broker;
let sim: SimFleet;

async function until(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

beforeAll(async () => {
  scratch = await makeScratch();
  await mkdir(join(scratch.dir, "broker"));
  broker = await Broker.start(join(scratch.dir, "broker"));
  sim = await SimFleet.start({
    url: broker.url,
    dir: join(scratch.dir, "appliances"),
    ids: ["app-1", "app-2", "app-3", "quiet-1"],
    queenPub: await readPublicKey(scratch.queenPub),
    silent: new Set(["quiet-1"]),
    lastCtr: { "app-2": 7 },
    boot: (id) => ({ board: id === "app-3" ? "rpi4" : "aarch64-virt" }),
  });
  await until("every appliance online", () => [...sim.appliances.values()].every((a) => a.link.state === "online"));
}, 60_000);

afterAll(async () => {
  await sim?.stop();
  await broker?.stop();
  await scratch?.remove();
});

const base = () => ["--broker", broker.url, "--key", scratch.queenKey];

describe("cohesix fleet ctl", () => {
  test("--all sends to every live appliance: one line each, a summary, exit 1 because one never answered", async () => {
    const r = await cohesix(["fleet", "ctl", "--all", ...base(), "--deadline", "3", '{"spawn":"heartbeat","ticks":3}'], { env: scratch.env });
    expect(r.exitCode).toBe(1);
    const lines = r.stdout.split("\n");
    expect([...lines.slice(0, -1)].sort()).toEqual([
      'app-1 ok {"ok":true,"ran":{"spawn":"heartbeat","ticks":3}}',
      'app-2 ok {"ok":true,"ran":{"spawn":"heartbeat","ticks":3}}',
      'app-3 ok {"ok":true,"ran":{"spawn":"heartbeat","ticks":3}}',
      "quiet-1 timed out no reply within 3 s",
    ]);
    expect(lines.at(-1)).toMatch(/^4 appliances: 3 ok, 0 refused, 1 timed out in \d+\.\d\d s$/);
    // app-2's birth says nothing of its counter (7): its first envelope (1) was refused as a replay, the retry with 8 ran.
    expect(sim.appliances.get("app-2")!.lastCtr).toBe(8);
  }, 60_000);

  test("--select picks appliances by their birth; all ok exits 0", async () => {
    const r = await cohesix(["fleet", "ctl", "--select", "board=rpi4", ...base(), '{"kill":"worker-1"}'], { env: scratch.env });
    expect(r.stdout).toMatch(/^app-3 ok \{"ok":true,"ran":\{"kill":"worker-1"\}\}\n1 appliance: 1 ok, 0 refused, 0 timed out in \d+\.\d\d s$/);
    expect(r.exitCode).toBe(0);
  }, 30_000);

  test("an envelope signed with another key is refused by the appliance, and --json carries the reason", async () => {
    const other = await makeScratch();
    try {
      const r = await cohesix(["fleet", "ctl", "--id", "app-1", "--broker", broker.url, "--key", other.queenKey, "--json", '{"kill":"worker-1"}'], { env: scratch.env });
      expect(r.exitCode).toBe(1);
      expect(JSON.parse(r.stdout)).toEqual({
        results: [{ id: "app-1", status: "refused", ctr: expect.any(Number), ms: expect.any(Number), error: "permission: envelope signature does not verify against the queen key" }],
        summary: { appliances: 1, ok: 0, refused: 1, timed_out: 0, dead_skipped: 0, seconds: expect.any(Number) },
      });
    } finally {
      await other.remove();
    }
  }, 30_000);

  test("naming no appliances, --all with --id, or a command that is not a JSON object is a usage error", async () => {
    for (const args of [["{}"], ["--all", "--id", "app-1", "{}"], ["--all", "[1]"], ["--all", "nope"]]) {
      const r = await cohesix(["fleet", "ctl", ...base(), ...args], { env: scratch.env });
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toMatch(/^cohesix fleet ctl: (say which appliances|--all goes alone|JSON must be a command object|JSON is not JSON)/);
    }
  }, 30_000);
});
