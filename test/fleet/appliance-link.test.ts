/**
 * The fleet link wired into the appliance (host board, in process) against
 * a real mosquitto: the birth from /proc/boot, telemetry of a worker,
 * signed commands from the broker with their replies, refusals that change
 * nothing, one writer per outbox, and bad configuration as one line in
 * /proc/boot while 9P keeps serving and records keep being stored.
 */
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import mqtt from "mqtt";
import { afterEach, beforeAll, describe, expect, test } from "vitest";
import { decodeRecord, decodeReply, type FleetRecord, type ReplyRecord } from "../../fleet/index.ts";
import { signFleetCommand, startFleet, writeKeyPair, type RunningAppliance } from "../../root-task/index.ts";
import { useAppliances, write } from "../root-task/fixture.ts";
import { Broker, freePort, haveMosquitto, makePasswords, makeTls } from "./broker.ts";

const appliances = useAppliances({ prefix: "cohesix-fleet-app-", defaults: { intervalMs: 200, graceMs: 500 } });

interface Got {
  records: { topic: string; record: FleetRecord; retained: boolean }[];
  replies: ReplyRecord[];
  client: mqtt.MqttClient;
}

async function subscriber(url: string, options: mqtt.IClientOptions = {}): Promise<Got> {
  const got: Got = { records: [], replies: [], client: undefined as unknown as mqtt.MqttClient };
  const client = mqtt.connect(url, { clientId: `test-host-${process.pid}-${Date.now()}`, clean: true, reconnectPeriod: 100, protocolVersion: 4, ...options });
  got.client = client;
  client.on("error", () => {});
  client.on("message", (topic, payload, packet) => {
    if (topic.includes("/reply/")) got.replies.push(decodeReply(payload));
    else if (!topic.endsWith("/cmd")) got.records.push({ topic, record: decodeRecord(payload), retained: packet.retain });
  });
  await new Promise<void>((ok, fail) => client.once("connect", () => client.subscribe("cohesix/#", { qos: 1 }, (err) => (err ? fail(err) : ok()))));
  clients.push(client);
  return got;
}

async function until<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const publish = (c: mqtt.MqttClient, topic: string, payload: string | Buffer) =>
  new Promise<void>((ok, fail) => c.publish(topic, payload, { qos: 1 }, (err) => (err ? fail(err) : ok())));

const brokers: Broker[] = [];
const clients: mqtt.MqttClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  for (const b of brokers.splice(0)) await b.stop();
});

async function broker(name: string, options: ConstructorParameters<typeof Object>[0] = {}): Promise<Broker> {
  const dir = join(appliances.dir, `broker-${name}-${Date.now()}`);
  await mkdir(dir, { recursive: true });
  const b = await Broker.start(dir, options as object);
  brokers.push(b);
  return b;
}

async function procText(app: RunningAppliance, path: string): Promise<string> {
  const root = await appliances.attachQueen(app);
  return root.readText(path);
}

describe("the appliance's fleet link", () => {
  beforeAll(() => {
    if (!haveMosquitto) throw new Error("mosquitto is not installed: run scripts/setup.sh (apt-get install mosquitto)");
  });

  test("publishes its birth from /proc/boot and a worker's telemetry; /proc/fleet and /proc/boot show the link", { timeout: 60_000 }, async () => {
    const b = await broker("plain");
    const got = await subscriber(b.url);
    const { app } = await appliances.start({ fleet: { url: b.url, id: "app-1" } });
    const birth = await until("the birth", () => got.records.find((r) => r.record.kind === "birth"), 5_000);
    expect(birth.topic).toBe("cohesix/app-1/birth");
    expect(birth.record).toMatchObject({ id: "app-1", version: "0.1.0", lifecycle: "ONLINE", ctr: 0, boot: { board: "host", policy: "open" } });
    const root = await appliances.attachQueen(app);
    expect(JSON.parse(await write(root, "queen/ctl", '{"spawn":"heartbeat"}'))).toMatchObject({ ok: true, worker: "worker-1" });
    const tele = await until("telemetry", () => got.records.find((r) => r.record.kind === "telemetry"));
    expect(tele.topic).toBe("cohesix/app-1/telemetry/worker-1");
    expect(tele.record).toMatchObject({ worker: "worker-1", historical: false });
    await until("an audit record of the spawn", () => got.records.find((r) => r.record.kind === "audit" && /spawn/.test((r.record as { line: string }).line)));
    expect(await root.readText("proc/fleet")).toMatch(/^state=online .* url=mqtt:\/\/127\.0\.0\.1:\d+ id=app-1 prefix=cohesix\nproblem=none\noutbox dir=.*fleet-outbox state=ready/);
    expect(await root.readText("proc/boot")).toMatch(/^fleet=mqtt:\/\/127\.0\.0\.1:\d+ id=app-1$/m);
  });

  test("a signed command on the cmd topic spawns a worker, the reply comes back, and the retained birth carries the counter", { timeout: 60_000 }, async () => {
    const b = await broker("cmd");
    const got = await subscriber(b.url);
    const { app } = await appliances.start({ fleet: { url: b.url, id: "app-1" } });
    await until("the link online", () => app.fleet?.agent?.link.state === "online");
    await until("the birth", () => got.records.find((r) => r.record.kind === "birth"));
    await publish(got.client, "cohesix/app-1/cmd", signFleetCommand('{"spawn":"heartbeat"}', appliances.queenKey, { ctr: 1, to: "app-1", reply: "h-1" }));
    const reply = await until("the reply", () => got.replies.find((r) => r.name === "h-1"));
    expect(reply).toMatchObject({ id: "app-1", ok: true, ctr: 1, last_ctr: 1, result: { ok: true, worker: "worker-1" } });
    expect(app.app.state.workers["worker-1"]?.status).toBe("running");
    await until("a birth with ctr 1", () => got.records.find((r) => r.record.kind === "birth" && (r.record as { ctr?: number }).ctr === 1));
    await until("telemetry of the spawned worker", () => got.records.find((r) => r.record.kind === "telemetry"));
  });

  test("forged, replayed, other-id, oversize and garbage commands are refused, audited, and commit nothing", { timeout: 60_000 }, async () => {
    const b = await broker("bad");
    const got = await subscriber(b.url);
    const { app } = await appliances.start({ fleet: { url: b.url, id: "app-1" } });
    await until("the link online", () => app.fleet?.agent?.link.state === "online");
    const good = signFleetCommand('{"budget":{"ops":70}}', appliances.queenKey, { ctr: 1, to: "app-1", reply: "ok-1" });
    await publish(got.client, "cohesix/app-1/cmd", good);
    await until("the first reply", () => got.replies.find((r) => r.name === "ok-1"));
    const head = app.app.logStats.head;
    const other = await writeKeyPair(join(appliances.dir, `other-${Date.now()}`), { name: "queen" });
    await publish(got.client, "cohesix/app-1/cmd", signFleetCommand('{"spawn":"heartbeat"}', other.privateKey, { ctr: 2, to: "app-1", reply: "forged" }));
    await publish(got.client, "cohesix/app-1/cmd", good.replace('"ok-1"', '"ok-1"')); // the same envelope again
    await publish(got.client, "cohesix/app-1/cmd", signFleetCommand('{"spawn":"heartbeat"}', appliances.queenKey, { ctr: 2, to: "app-2", reply: "other-id" }));
    await publish(got.client, "cohesix/app-1/cmd", Buffer.alloc(17 * 1024, 0x20));
    await publish(got.client, "cohesix/app-1/cmd", '{"reply":"garbage","cmd":"x"}');
    await publish(got.client, "cohesix/app-1/cmd", '{"reply":"cut","cmd":'); // no reply: its name cannot be read
    await publish(got.client, "cohesix/app-1/cmd", Buffer.from([0xff, 0x00, 0x13]));
    const byName = (n: string) => until(`reply ${n}`, () => got.replies.find((r) => r.name === n));
    expect(await byName("forged")).toMatchObject({ ok: false, error: expect.stringMatching(/^permission: envelope signature does not verify/), last_ctr: 1 });
    expect(got.replies.filter((r) => r.name === "ok-1")).toHaveLength(2);
    expect(got.replies.filter((r) => r.name === "ok-1")[1]).toMatchObject({ ok: false, error: expect.stringMatching(/^permission: replay: counter 1/), last_ctr: 1 });
    expect(await byName("other-id")).toMatchObject({ ok: false, error: "permission: fleet command for app-2 reached app-1" });
    expect(await byName("garbage")).toMatchObject({ ok: false, error: "invalid: fleet command: lacks nonce" });
    const root = await appliances.attachQueen(app);
    const log = await until("every refusal audited", async () => {
      const text = await root.readText("log/queen.log");
      return /fleet command refused: invalid: fleet command: not UTF-8/.test(text) ? text : undefined;
    });
    expect(log).toMatch(/ctl from fleet-link refused: permission: envelope signature does not verify/);
    expect(log).toMatch(/ctl from fleet-link refused: permission: replay: counter 1/);
    expect(log).toMatch(/fleet command refused: permission: fleet command for app-2 reached app-1/);
    expect(log).toMatch(/fleet command refused: too big: 17408 bytes exceeds 16384/);
    expect(log).toMatch(/fleet command refused: invalid: fleet command: not JSON/);
    expect(app.app.logStats.head).toBe(head);
    expect(Object.keys(app.app.state.workers)).toHaveLength(0);
    expect(app.app.state.ctr).toBe(1);
    expect(await root.readText("proc/fleet")).toMatch(/^commands accepted=1 refused=7 busy=0$/m);
    expect(got.replies.some((r) => r.name === "cut")).toBe(false);
  });

  test("commands past the rate are refused busy, counted, and audited once", { timeout: 60_000 }, async () => {
    const b = await broker("rate");
    const got = await subscriber(b.url);
    const { app } = await appliances.start({ fleet: { url: b.url, id: "app-1", commandRate: 0.001, commandBurst: 2 } });
    await until("the link online", () => app.fleet?.agent?.link.state === "online");
    for (let i = 1; i <= 6; i++) {
      await publish(got.client, "cohesix/app-1/cmd", signFleetCommand(`{"budget":{"ops":${i}}}`, appliances.queenKey, { ctr: i, to: "app-1", reply: `r-${i}` }));
    }
    await until("4 commands refused busy", () => app.fleet?.agent?.commandStats.busy === 4);
    await until("2 replies", () => got.replies.length === 2);
    expect(app.app.state.ctr).toBe(2);
    const log = await procText(app, "log/queen.log");
    expect(log.match(/fleet command refused: busy: fleet commands: over/g)).toHaveLength(1);
  });

  test("two links on one outbox: the second refuses, and says so in /proc/boot", { timeout: 60_000 }, async () => {
    const b = await broker("lock");
    const { app } = await appliances.start({ fleet: { url: b.url, id: "app-1" } });
    const second = await startFleet(app.app, { url: b.url, id: "app-1" });
    expect(second.problem()).toMatch(/^busy: fleet outbox: .*fleet-outbox is already open in this process/);
    expect(second.agent).toBeUndefined();
    expect(await procText(app, "proc/boot")).toMatch(/^fleet_problem=busy: fleet outbox:/m);
    await second.close();
  });

  test("an unreachable broker is one line in /proc/boot and the log; 9P keeps serving and records keep being stored", { timeout: 60_000 }, async () => {
    const port = await freePort();
    const { app } = await appliances.start({ fleet: { url: `mqtt://127.0.0.1:${port}`, id: "app-1" } });
    const root = await appliances.attachQueen(app);
    const boot = await until("the problem in /proc/boot", async () => {
      const text = await root.readText("proc/boot");
      return /^fleet_problem=/m.test(text) ? text : undefined;
    });
    expect(boot).toMatch(new RegExp(`^fleet_problem=closed: fleet: cannot reach broker mqtt://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`, "m"));
    expect(await root.readText("log/queen.log")).toMatch(/fleet: closed: fleet: cannot reach broker/);
    expect(JSON.parse(await write(root, "queen/ctl", '{"spawn":"heartbeat"}'))).toMatchObject({ ok: true });
    await until("telemetry stored in the outbox", async () => {
      const m = /^outbox .* last_seq=(\d+) .* pending=(\d+)/m.exec(await root.readText("proc/fleet"));
      return m && Number(m[2]) >= 3 ? m : undefined;
    });
  });

  test("a wrong CA and wrong credentials are each one clear line in /proc/boot", { timeout: 90_000 }, async () => {
    const certs = join(appliances.dir, `tls-${Date.now()}`);
    await mkdir(certs, { recursive: true });
    const tls = await makeTls(certs, "broker");
    const wrong = await makeTls(certs, "wrong");
    const tb = await broker("tls", { tls: { cert: tls.serverCert, key: tls.serverKey } });
    const a = await appliances.start({ fleet: { url: tb.url, id: "app-1", ca: wrong.caCert } });
    const problem = (app: RunningAppliance) => until("a problem", () => app.fleet?.problem());
    expect(await problem(a.app)).toMatch(/^permission: fleet: broker mqtts:\/\/127\.0\.0\.1:\d+: its TLS certificate does not verify against the pinned CA/);
    expect(await procText(a.app, "proc/boot")).toMatch(/^fleet_problem=permission: fleet: broker .* does not verify/m);
    // With the right CA it connects.
    const ok = await appliances.start({ fleet: { url: tb.url, id: "app-2", ca: tls.caCert } });
    await until("online over TLS", () => ok.app.fleet?.agent?.link.state === "online");

    const pb = await broker("pw", { passwordFile: await makePasswords(join(certs, "passwd"), { "app-1": "right" }) });
    const c = await appliances.start({ fleet: { url: pb.url, id: "app-1", username: "app-1", password: "wrong" } });
    expect(await problem(c.app)).toMatch(/^permission: fleet: broker mqtt:\/\/127\.0\.0\.1:\d+ refused the login: .*check the fleet block's username and password/);
    const root = await appliances.attachQueen(c.app);
    expect(await root.readText("proc/lifecycle/state")).toBe("ONLINE\n");
    // A CA file that cannot be read is a line too, not a failed boot.
    const d = await appliances.start({ fleet: { url: tb.url, id: "app-3", ca: join(certs, "missing.pem") } });
    expect(d.app.fleet?.problem()).toMatch(/^invalid: fleet: cannot read the CA file .*missing\.pem/);
    expect(await readFile(tls.caCert, "utf8")).toMatch(/BEGIN CERTIFICATE/);
  });
});
