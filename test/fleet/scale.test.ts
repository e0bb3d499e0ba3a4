// 200 appliances on one mosquitto (docs/fleet.md, "Scale"): each a fleet
// link with its own id, state directory and outbox, in two child
// processes, telemetry at 1 Hz from all of them. `cohesix fleet ctl --all`
// completes for all 200; the broker is killed -9 mid-run and started again,
// and after removing duplicates by (id, seq) a subscriber has every record
// every appliance made, in order per appliance.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { decodeRecord } from "../../fleet/index.ts";
import { cohesix, makeScratch, type Scratch } from "../cli/helpers.ts";
import { useBundledChild } from "../crash.ts";
import { Broker } from "./broker.ts";

const APPLIANCES = 200;
const CHILDREN = 2;
const child = useBundledChild("test/fleet/sim-fleet-child.ts", "sim-fleet-");

interface Child {
  readonly proc: ChildProcess;
  online: number;
  readonly lines: string[];
  readonly exited: Promise<void>;
}

let scratch: Scratch;
let broker: Broker;
const children: Child[] = [];
let sub: mqtt.MqttClient | undefined;
/** Per appliance: first arrivals of stream seqs, and whether they came in order. */
const seen = new Map<string, { seqs: Set<number>; last: number; outOfOrder: number; historical: number }>();

async function until(what: string, check: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const online = () => children.reduce((n, c) => n + c.online, 0);
const ids = Array.from({ length: APPLIANCES }, (_, i) => `sim-${String(i).padStart(3, "0")}`);

beforeAll(async () => {
  scratch = await makeScratch();
  await mkdir(join(scratch.dir, "broker"));
  // autosave: the subscriber's persistent session is on disk when the broker is killed -9.
  broker = await Broker.start(join(scratch.dir, "broker"), { extra: ["autosave_interval 1"] });
  sub = mqtt.connect(broker.url, { clientId: `scale-sub-${process.pid}`, clean: false, reconnectPeriod: 100, protocolVersion: 4 });
  sub.on("error", () => {});
  sub.on("message", (_topic, payload) => {
    const r = decodeRecord(payload);
    if (r.kind === "birth" || r.kind === "death") return;
    let s = seen.get(r.id);
    if (!s) seen.set(r.id, (s = { seqs: new Set(), last: 0, outOfOrder: 0, historical: 0 }));
    if (s.seqs.has(r.seq)) return;
    s.seqs.add(r.seq);
    if (r.seq < s.last) s.outOfOrder += 1;
    s.last = r.seq;
    if (r.historical) s.historical += 1;
  });
  await new Promise<void>((ok, fail) => sub!.once("connect", () => sub!.subscribe("cohesix/+/telemetry/#", { qos: 1 }, (err) => (err ? fail(err) : ok()))));
}, 60_000);

afterAll(async () => {
  for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill("SIGKILL");
  await Promise.all(children.map((c) => c.exited));
  if (sub) await new Promise<void>((r) => sub!.end(true, {}, () => r()));
  await broker?.stop();
  await scratch?.remove();
});

describe("200 appliances on one broker", () => {
  test("fleet ctl --all completes for all 200, and a broker killed -9 mid-run loses no record", async () => {
    const per = Math.ceil(APPLIANCES / CHILDREN);
    for (let i = 0; i < CHILDREN; i++) {
      const proc = spawn("node", [child.path, join(scratch.dir, "appliances"), broker.url, scratch.queenPub, "1", ...ids.slice(i * per, (i + 1) * per)], { stdio: ["ignore", "pipe", "inherit"] });
      const c: Child = { proc, online: 0, lines: [], exited: new Promise((r) => proc.once("exit", () => r())) };
      createInterface({ input: proc.stdout! }).on("line", (line) => {
        c.lines.push(line);
        const m = /^online (\d+)$/.exec(line);
        if (m) c.online = Number(m[1]);
      });
      children.push(c);
    }
    await until("200 links online", () => online() === APPLIANCES, 90_000);
    await until("telemetry from every appliance", () => ids.every((id) => (seen.get(id)?.seqs.size ?? 0) >= 2), 30_000);

    const ctl = await cohesix(["fleet", "ctl", "--all", "--broker", broker.url, "--key", scratch.queenKey, "--deadline", "60", '{"spawn":"heartbeat"}'], { env: scratch.env, timeoutMs: 120_000 });
    expect(ctl.stderr).toBe("");
    const lines = ctl.stdout.split("\n");
    expect(lines.at(-1)).toMatch(/^200 appliances: 200 ok, 0 refused, 0 timed out in \d+\.\d\d s$/);
    expect(new Set(lines.slice(0, -1).map((l) => l.split(" ")[0]))).toEqual(new Set(ids));
    expect(ctl.exitCode).toBe(0);

    // The broker dies mid-run (kill -9, nothing saved since its last autosave) and comes back on the same port.
    await broker.kill();
    await until("every link noticing", () => online() < APPLIANCES, 30_000);
    await new Promise((r) => setTimeout(r, 2500)); // records made meanwhile wait in the outboxes
    await broker.restart();
    await until("200 links online again", () => online() === APPLIANCES, 90_000);
    await new Promise((r) => setTimeout(r, 1500));

    for (const c of children) c.proc.kill("SIGTERM");
    await Promise.all(children.map((c) => c.exited));
    const made: Record<string, number> = {};
    const ran: Record<string, number> = {};
    for (const c of children) {
      expect(c.lines).toContain("drained true");
      Object.assign(made, JSON.parse(c.lines.find((l) => l.startsWith("made "))!.slice(5)));
      Object.assign(ran, JSON.parse(c.lines.find((l) => l.startsWith("ran "))!.slice(4)));
    }
    expect(Object.keys(made).sort()).toEqual(ids);
    expect(Object.values(ran).every((n) => n === 1)).toBe(true);
    await until("every record at the subscriber", () => ids.every((id) => (seen.get(id)?.seqs.size ?? 0) >= made[id]!), 30_000).catch(() => {});
    const missing = ids.flatMap((id) => {
      const s = seen.get(id);
      return Array.from({ length: made[id]! }, (_, i) => i + 1)
        .filter((seq) => !s?.seqs.has(seq))
        .map((seq) => `${id}#${seq}`);
    });
    expect(missing).toEqual([]);
    expect(ids.filter((id) => seen.get(id)!.outOfOrder > 0)).toEqual([]);
    expect(ids.every((id) => seen.get(id)!.seqs.size === made[id])).toBe(true);
    // Records made while the broker was away came late, marked historical.
    expect(ids.filter((id) => seen.get(id)!.historical > 0).length).toBeGreaterThan(APPLIANCES / 2);
  }, 240_000);
});
