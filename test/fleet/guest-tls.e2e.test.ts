/**
 * End to end: a QEMU guest built from a project whose fleet block pins a CA
 * and logs in with a password. The block's files are baked into the image
 * (/etc/cohesix/fleet/); `cohesix boot --fleet mqtts://127.0.0.1:PORT
 * --fleet-id guest-tls` puts only url and id on the command line. One boot:
 * the guest's birth arrives over TLS from mosquitto that refuses anonymous
 * clients, and /proc/boot shows the link without a problem.
 *
 * Needs qemu-system-aarch64, mosquitto, openssl and the board's artefacts (scripts/setup.sh).
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeRecord, type FleetRecord } from "../../fleet/index.ts";
import { E2e } from "../qemu/harness.ts";
import { Broker, haveMosquitto, makePasswords, makeTls } from "./broker.ts";

const BOOT_MS = 300_000;

let e2e!: E2e;
let broker: Broker | undefined;
let client: mqtt.MqttClient | undefined;
const records: FleetRecord[] = [];

describe("the fleet link of a guest with a pinned CA and a password (QEMU)", () => {
  beforeAll(async () => {
    if (!haveMosquitto) throw new Error("mosquitto is not installed: run scripts/setup.sh (apt-get install mosquitto)");
    e2e = await E2e.create("cohesix-fleet-tls-e2e-");
    await mkdir(join(e2e.dir, "broker"));
    const tls = await makeTls(join(e2e.dir, "broker"), "guest", { ips: ["10.0.2.2"] });
    const passwd = await makePasswords(join(e2e.dir, "broker", "passwd"), { "guest-tls": "baked-pw", host: "host-pw" });
    broker = await Broker.start(join(e2e.dir, "broker"), { tls: { cert: tls.serverCert, key: tls.serverKey }, passwordFile: passwd });
    // The project: the current folder of the CLI.
    await writeFile(join(e2e.dir, "cohesix.config.json"), JSON.stringify({ board: "aarch64-virt", workers: [], fleet: { url: broker.url, username: "guest-tls", password: "baked-pw", ca: tls.caCert } }));
    client = mqtt.connect(broker.url, { clientId: `guest-tls-e2e-${process.pid}`, clean: true, reconnectPeriod: 200, protocolVersion: 4, ca: tls.ca, username: "host", password: "host-pw" });
    client.on("error", () => {});
    client.on("message", (_topic, payload) => records.push(decodeRecord(payload)));
    await new Promise<void>((ok, fail) => client!.once("connect", () => client!.subscribe("cohesix/guest-tls/#", { qos: 1 }, (err) => (err ? fail(err) : ok()))));
    const r = await e2e.cohesix(["boot", "--detach", "--port", "0", "--queen-pub", e2e.queenPub, "--fleet", broker.url, "--fleet-id", "guest-tls"], { timeoutMs: BOOT_MS });
    if (r.exitCode !== 0) throw new Error(`cohesix boot failed (${r.exitCode}):\n${r.stderr}`);
    e2e.dial = r.stdout.split("\n")[0]!;
  }, BOOT_MS + 60_000);

  afterAll(async () => {
    client?.end(true);
    if (e2e) await e2e.teardown();
    await broker?.stop();
  }, 120_000);

  it("publishes its birth over TLS with the baked password, and /proc/boot has no fleet problem", async () => {
    const deadline = Date.now() + 60_000;
    while (!records.some((r) => r.kind === "birth") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    const boot = await e2e.queen(["cat", "/proc/boot"]);
    expect(records.find((r) => r.kind === "birth"), `no birth; /proc/boot:\n${boot}\nconsole:\n${(await e2e.consoleText()).slice(-3000)}`).toMatchObject({ id: "guest-tls", lifecycle: "ONLINE" });
    expect(boot).toMatch(/^fleet=mqtts:\/\/10\.0\.2\.2:\d+ id=guest-tls$/m);
    expect(boot).not.toMatch(/^fleet_problem=/m);
  }, 120_000);
});
