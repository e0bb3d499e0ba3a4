/**
 * End to end: the fleet link in the QEMU guest. mosquitto runs on an
 * ephemeral 127.0.0.1 port; `cohesix boot --fleet mqtt://127.0.0.1:PORT
 * --fleet-id guest-1` puts it on the guest's kernel command line as
 * 10.0.2.2 (the host, through QEMU user networking). The guest's birth
 * arrives within 5 s of the boot returning (the guest serving) and
 * `cohesix fleet ls` lists it live, a signed command on the cmd topic
 * spawns a worker and its reply comes back, that worker's telemetry
 * arrives over MQTT, and `cohesix fleet ctl` spawns another one (its
 * counter from the retained birth). `cohesix down` leaves no QEMU.
 *
 * Needs qemu-system-aarch64, mosquitto and the board's artefacts (scripts/setup.sh).
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeRecord, decodeReply, type FleetRecord, type ReplyRecord } from "../../fleet/index.ts";
import { readPrivateKey, signFleetCommand } from "../../root-task/index.ts";
import { E2e } from "../qemu/harness.ts";
import { Broker, haveMosquitto } from "./broker.ts";

const BOOT_MS = 300_000;

let e2e!: E2e;
let broker: Broker | undefined;
let client: mqtt.MqttClient | undefined;
const records: { record: FleetRecord; at: number }[] = [];
const replies: ReplyRecord[] = [];
let servingAt = 0;

async function until<T>(what: string, check: () => T | undefined | false, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; console:\n${(await e2e.consoleText()).slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("the fleet link in the aarch64-virt guest (QEMU)", () => {
  beforeAll(async () => {
    if (!haveMosquitto) throw new Error("mosquitto is not installed: run scripts/setup.sh (apt-get install mosquitto)");
    e2e = await E2e.create("cohesix-fleet-e2e-");
    await mkdir(join(e2e.dir, "broker"));
    broker = await Broker.start(join(e2e.dir, "broker"));
    client = mqtt.connect(broker.url, { clientId: `guest-e2e-${process.pid}`, clean: true, reconnectPeriod: 200, protocolVersion: 4 });
    client.on("error", () => {});
    client.on("message", (topic, payload) => {
      if (topic.includes("/reply/")) replies.push(decodeReply(payload));
      else if (!topic.endsWith("/cmd")) records.push({ record: decodeRecord(payload), at: Date.now() });
    });
    await new Promise<void>((ok, fail) => client!.once("connect", () => client!.subscribe("cohesix/guest-1/#", { qos: 1 }, (err) => (err ? fail(err) : ok()))));
    const r = await e2e.cohesix(["boot", "--detach", "--port", "0", "--queen-pub", e2e.queenPub, "--fleet", broker.url, "--fleet-id", "guest-1"], { timeoutMs: BOOT_MS });
    servingAt = Date.now();
    if (r.exitCode !== 0) throw new Error(`cohesix boot failed (${r.exitCode}):\n${r.stderr}`);
    e2e.dial = r.stdout.split("\n")[0]!;
    expect(r.stderr).toContain(`boot: broker ${broker.url} is on this host: the guest dials it as mqtt://10.0.2.2:${broker.port}`);
  }, BOOT_MS + 60_000);

  afterAll(async () => {
    client?.end(true);
    if (e2e) await e2e.teardown();
    await broker?.stop();
  }, 120_000);

  it("publishes its birth within 5 s of serving, with the guest's /proc/boot facts", async () => {
    const birth = await until("the birth", () => records.find((r) => r.record.kind === "birth"), 30_000);
    process.stderr.write(`fleet e2e: birth ${birth.at - servingAt} ms after cohesix boot returned (the guest serving)\n`);
    expect(birth.at - servingAt).toBeLessThan(5_000);
    expect(birth.record).toMatchObject({ id: "guest-1", lifecycle: "ONLINE", ctr: 0, boot: { board: "aarch64-virt" } });
    const ls = await e2e.cohesix(["fleet", "ls", "--broker", broker!.url]);
    expect(ls.stdout).toMatch(/^guest-1\s+live\s+\S+\s+ONLINE\s/m);
    expect(await e2e.queen(["cat", "/proc/boot"])).toMatch(/^fleet=mqtt:\/\/10\.0\.2\.2:\d+ id=guest-1$/m);
  }, 60_000);

  it("a signed command on the cmd topic spawns a worker in the guest, the reply comes back, and its telemetry arrives", async () => {
    const key = await readPrivateKey(e2e.queenKey);
    const payload = signFleetCommand('{"spawn":"heartbeat"}', key, { ctr: 1, to: "guest-1", reply: "e2e-1" });
    await new Promise<void>((ok, fail) => client!.publish("cohesix/guest-1/cmd", payload, { qos: 1 }, (err) => (err ? fail(err) : ok())));
    const reply = await until("the reply", () => replies.find((r) => r.name === "e2e-1"));
    expect(reply).toMatchObject({ ok: true, ctr: 1, last_ctr: 1, result: { ok: true, worker: "worker-1" } });
    const tele = await until("telemetry of worker-1", () => records.find((r) => r.record.kind === "telemetry"));
    expect(tele.record).toMatchObject({ id: "guest-1", worker: "worker-1", historical: false });
    // cohesix fleet ctl takes the next counter from the retained birth, which carries 1 now.
    const ctl = await e2e.cohesix(["fleet", "ctl", "--id", "guest-1", "--broker", broker!.url, "--key", e2e.queenKey, "--deadline", "60", '{"spawn":"heartbeat"}'], { timeoutMs: 90_000 });
    expect(ctl.stdout).toMatch(/^guest-1 ok \{.*"worker":"worker-2".*\}\n1 appliance: 1 ok, 0 refused, 0 timed out in \d+\.\d\d s$/);
    expect(ctl.exitCode).toBe(0);
  }, 180_000);
});
