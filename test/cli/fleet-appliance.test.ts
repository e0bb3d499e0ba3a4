// The host's fleet verbs against a real appliance: `cohesix serve --fleet`
// (the root task's own fleet link) on a mosquitto; `cohesix fleet ls` sees
// it, `cohesix fleet ctl` spawns a worker through the broker (twice: the
// counter comes from the birth the link republishes), and `fleet tail`
// prints the appliance's records.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { Broker } from "../fleet/broker.ts";
import { execa } from "execa";
import { createInterface } from "node:readline";
import { BIN, ROOT, cohesix, makeScratch, serve, type Scratch, type Served } from "./helpers.ts";

let scratch: Scratch;
let broker: Broker;
let served: Served;

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  scratch = await makeScratch();
  await mkdir(join(scratch.dir, "broker"));
  broker = await Broker.start(join(scratch.dir, "broker"));
  served = await serve(scratch, ["--fleet", broker.url, "--fleet-id", "app-1"]);
}, 60_000);

afterAll(async () => {
  await served?.stop();
  await broker?.stop();
  await scratch?.remove();
});

describe("cohesix fleet against cohesix serve --fleet", () => {
  test("fleet ls lists the appliance live; fleet ctl spawns a worker through the broker, twice in a row; fleet tail prints what a command makes happen", async () => {
    const base = ["--broker", broker.url];
    await until("the appliance's birth", async () => /^app-1\s+live\s+\S+\s+ONLINE\s/m.test((await cohesix(["fleet", "ls", ...base])).stdout));

    for (const ticks of [2, 3]) {
      const ctl = await cohesix(["fleet", "ctl", "--id", "app-1", ...base, "--key", scratch.queenKey, "--deadline", "20", JSON.stringify({ spawn: "heartbeat", ticks })], { env: scratch.env, timeoutMs: 40_000 });
      expect(ctl.stdout).toMatch(/^app-1 ok \{.*"worker":"worker-\d+".*\}\n1 appliance: 1 ok, 0 refused, 0 timed out in \d+\.\d\d s$/);
      expect(ctl.exitCode).toBe(0);
    }

    // A tail started before a third command prints the retained birth, then what that command makes happen.
    const tail = execa("node", [BIN, "fleet", "tail", "--id", "app-1", ...base, "--json", "--count", "4"], { cwd: ROOT, env: { PATH: process.env.PATH ?? "" }, extendEnv: false, reject: false, timeout: 60_000 });
    const lines: string[] = [];
    createInterface({ input: tail.stdout! }).on("line", (l) => lines.push(l));
    await until("the retained birth in the tail", async () => lines.length >= 1);
    const third = await cohesix(["fleet", "ctl", "--id", "app-1", ...base, "--key", scratch.queenKey, '{"spawn":"heartbeat","ticks":5}'], { env: scratch.env, timeoutMs: 40_000 });
    expect(third.exitCode).toBe(0);
    expect((await tail).exitCode).toBe(0);
    const records = lines.map((l) => JSON.parse(l) as { kind: string; id: string; historical: boolean; line?: string });
    expect(records[0]).toMatchObject({ kind: "birth", id: "app-1", lifecycle: "ONLINE" });
    expect(records.slice(1).every((r) => r.id === "app-1" && ["audit", "telemetry", "birth"].includes(r.kind))).toBe(true);
    expect(records.slice(1).some((r) => r.kind === "audit" || r.kind === "telemetry")).toBe(true);
  }, 120_000);
});
