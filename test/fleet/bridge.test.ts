// Two brokers (docs/fleet.md, "Past one broker"): the appliance on broker
// A, the operator on broker B, B bridged to A by mosquitto's own bridge
// (topics cohesix/# both ways, MQTT 3.1.1). Telemetry reaches B, fleet ls
// on B sees A's appliance, and a fleet ctl from B makes the round trip:
// once with simulated appliances (fleet links answering the protocol),
// once with a real one (`cohesix serve --fleet`) whose worker's telemetry
// then arrives at B.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type FleetRecord, decodeRecord } from "../../fleet/index.ts";
import { readPublicKey } from "../../root-task/index.ts";
import { cohesix, makeScratch, serve, type Scratch } from "../cli/helpers.ts";
import { Broker } from "./broker.ts";
import { SimFleet } from "./sim-fleet.ts";

let scratch: Scratch;
let a: Broker;
let b: Broker;
let sim: SimFleet;

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  scratch = await makeScratch();
  await mkdir(join(scratch.dir, "a"));
  await mkdir(join(scratch.dir, "b"));
  a = await Broker.start(join(scratch.dir, "a"));
  b = await Broker.start(join(scratch.dir, "b"), {
    extra: [
      "connection to-a",
      `address 127.0.0.1:${a.port}`,
      "bridge_protocol_version mqttv311",
      "topic cohesix/# both 1",
      "cleansession true",
      "try_private true",
      "notifications false",
      "restart_timeout 1",
      "start_type automatic",
    ],
  });
  sim = await SimFleet.start({ url: a.url, dir: join(scratch.dir, "appliances"), ids: ["app-1"], queenPub: await readPublicKey(scratch.queenPub), hz: 5 });
  await until("the appliance online on A", () => sim.online === 1);
}, 60_000);

afterAll(async () => {
  await sim?.stop();
  await b?.stop();
  await a?.stop();
  await scratch?.remove();
});

describe("an appliance on broker A, the operator on broker B bridged to A", () => {
  test("telemetry published on A arrives at a subscriber on B", async () => {
    const got: number[] = [];
    const sub = mqtt.connect(b.url, { clientId: `bridge-sub-${process.pid}`, protocolVersion: 4 });
    sub.on("error", () => {});
    sub.on("message", (_t, payload) => {
      const r = decodeRecord(payload);
      if (r.kind === "telemetry" && r.id === "app-1") got.push(r.seq);
    });
    await new Promise<void>((ok, fail) => sub.once("connect", () => sub.subscribe("cohesix/+/telemetry/#", { qos: 1 }, (err) => (err ? fail(err) : ok()))));
    try {
      await until("three telemetry records at B", () => got.length >= 3);
      expect([...got].sort((x, y) => x - y)).toEqual(got);
    } finally {
      await new Promise<void>((r) => sub.end(true, {}, () => r()));
    }
  }, 60_000);

  test("fleet ls on B lists the appliance on A, and fleet ctl from B makes the round trip", async () => {
    const base = ["--broker", b.url];
    await until("the retained birth bridged to B", async () => (await cohesix(["fleet", "ls", ...base, "--id", "app-1"])).stdout.includes("app-1  live"));
    const ctl = await cohesix(["fleet", "ctl", "--id", "app-1", ...base, "--key", scratch.queenKey, "--deadline", "20", '{"spawn":"heartbeat"}'], { env: scratch.env });
    expect(ctl.stdout).toMatch(/^app-1 ok \{"ok":true,"ran":\{"spawn":"heartbeat"\}\}\n1 appliance: 1 ok, 0 refused, 0 timed out in \d+\.\d\d s$/);
    expect(ctl.exitCode).toBe(0);
    expect(sim.appliances.get("app-1")!.ran).toEqual([{ spawn: "heartbeat" }]);
  }, 60_000);

  test("a real appliance on A (cohesix serve --fleet): fleet ctl from B spawns a worker, and the worker's telemetry arrives at B", async () => {
    const served = await serve(scratch, ["--fleet", a.url, "--fleet-id", "real-1"], { state: join(scratch.dir, "real-state") });
    const got: FleetRecord[] = [];
    const sub = mqtt.connect(b.url, { clientId: `bridge-real-${process.pid}`, protocolVersion: 4 });
    sub.on("error", () => {});
    sub.on("message", (_t, payload) => got.push(decodeRecord(payload)));
    try {
      await new Promise<void>((ok, fail) => sub.once("connect", () => sub.subscribe(["cohesix/real-1/birth", "cohesix/real-1/telemetry/#"], { qos: 1 }, (err) => (err ? fail(err) : ok()))));
      await until("the real appliance's birth at B", () => got.some((r) => r.kind === "birth"));
      const ctl = await cohesix(["fleet", "ctl", "--id", "real-1", "--broker", b.url, "--key", scratch.queenKey, "--deadline", "20", '{"spawn":"heartbeat","ticks":5}'], { env: scratch.env, timeoutMs: 40_000 });
      expect(ctl.stdout).toMatch(/^real-1 ok \{.*"worker":"worker-\d+".*\}\n1 appliance: 1 ok, 0 refused, 0 timed out in \d+\.\d\d s$/);
      expect(ctl.exitCode).toBe(0);
      await until("the worker's telemetry at B", () => got.some((r) => r.kind === "telemetry"));
    } finally {
      await new Promise<void>((r) => sub.end(true, {}, () => r()));
      await served.stop();
    }
  }, 90_000);
});
