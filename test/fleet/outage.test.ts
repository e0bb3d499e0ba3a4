/**
 * The outage acceptance of the fleet link through the real appliance: a
 * `cohesix serve` child with `--fleet`, a heartbeat worker at 1 Hz, and a
 * real mosquitto stopped for 60 s, then restarted. Every record the
 * appliance stored arrives, in order, those made during the outage marked
 * historical, with no duplicates after removing them by seq. Then the same
 * with the appliance killed -9 and restarted during the outage.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import mqtt from "mqtt";
import { afterEach, beforeAll, describe, expect, test } from "vitest";
import { decodeRecord, type FleetRecord } from "../../fleet/index.ts";
import { Queen, pidAlive, signalPid, stopServed, waitFor } from "../cli/appliance-helpers.ts";
import { makeScratch, serve, type Scratch, type Served } from "../cli/helpers.ts";
import { Broker, haveMosquitto } from "./broker.ts";

const OUTAGE_MS = 60_000;

interface Got {
  records: FleetRecord[];
  arrivedAt: number[];
  end(): Promise<void>;
}

/** A QoS 1 subscriber with a persistent session, so it misses nothing across broker restarts. */
async function subscribe(url: string): Promise<Got> {
  const records: FleetRecord[] = [];
  const arrivedAt: number[] = [];
  const client = mqtt.connect(url, { clientId: `outage-sub-${process.pid}-${Date.now()}`, clean: false, reconnectPeriod: 200, protocolVersion: 4 });
  client.on("error", () => {});
  client.on("message", (_topic, payload) => {
    records.push(decodeRecord(payload));
    arrivedAt.push(Date.now());
  });
  await new Promise<void>((ok, fail) => client.once("connect", () => client.subscribe("cohesix/app-1/#", { qos: 1 }, (err) => (err ? fail(err) : ok()))));
  return { records, arrivedAt, end: () => new Promise<void>((r) => client.end(true, {}, () => r())) };
}

/** Stream records by seq, first arrival only; whether first arrivals came in seq order; how many repeats. */
function dedup(records: readonly FleetRecord[]): { bySeq: Map<number, FleetRecord>; inOrder: boolean; duplicates: number } {
  const bySeq = new Map<number, FleetRecord>();
  let inOrder = true;
  let last = 0;
  let duplicates = 0;
  for (const r of records) {
    if (r.kind === "birth" || r.kind === "death") continue;
    if (bySeq.has(r.seq)) {
      duplicates += 1;
      expect(bySeq.get(r.seq)).toEqual({ ...r, historical: bySeq.get(r.seq)!.historical });
      continue;
    }
    if (r.seq < last) inOrder = false;
    last = r.seq;
    bySeq.set(r.seq, r);
  }
  return { bySeq, inOrder, duplicates };
}

/** `/proc/fleet`'s outbox line, parsed. */
async function outboxOf(queen: Queen): Promise<{ lastSeq: number; pending: number; state: string }> {
  const text = await queen.cat("/proc/fleet");
  const m = /^outbox .* state=(\S+) .* last_seq=(\d+) acked=\d+ pending=(\d+)/m.exec(text);
  if (!m) throw new Error(`no outbox line in /proc/fleet: ${text}`);
  return { state: m[1]!, lastSeq: Number(m[2]), pending: Number(m[3]) };
}

let scratch: Scratch | undefined;
let served: Served | undefined;
let broker: Broker | undefined;
let sub: Got | undefined;
afterEach(async () => {
  await sub?.end();
  await stopServed(served);
  await broker?.stop();
  await scratch?.remove();
  sub = undefined;
  served = undefined;
  broker = undefined;
  scratch = undefined;
});

async function setUp(): Promise<{ queen: Queen; fleetArgs: string[] }> {
  scratch = await makeScratch();
  await mkdir(join(scratch.dir, "broker"));
  broker = await Broker.start(join(scratch.dir, "broker"));
  sub = await subscribe(broker.url);
  const fleetArgs = ["--fleet", broker.url, "--fleet-id", "app-1"];
  served = await serve(scratch, fleetArgs);
  const queen = new Queen(scratch, served);
  const spawned = await queen.run(["ctl", '{"spawn":"heartbeat"}']);
  expect(spawned.stdout.trim()).toBe("worker-1");
  return { queen, fleetArgs };
}

/** Waits until every seq from 1 to `last` arrived, then checks order, gaps, duplicates and the historical mark. */
async function checkArrived(last: number, outage: { from: number; to: number }): Promise<Map<number, FleetRecord>> {
  const { bySeq } = await waitFor(`every seq up to ${last} at the subscriber`, () => {
    const d = dedup(sub!.records);
    for (let s = 1; s <= last; s++) if (!d.bySeq.has(s)) return undefined;
    return d;
  }, { timeoutMs: 120_000, intervalMs: 250 });
  const d = dedup(sub!.records);
  expect(d.inOrder).toBe(true);
  const seqs = [...d.bySeq.keys()];
  expect(seqs).toEqual(seqs.map((_, i) => i + 1)); // no gaps, from 1
  // Made during the outage: historical; made while it was connected before it: not.
  for (const r of bySeq.values()) {
    if (r.ts_ms > outage.from + 2_000 && r.ts_ms < outage.to) expect(r, `seq ${r.seq} made during the outage`).toMatchObject({ historical: true });
  }
  return bySeq;
}

describe("a 60 s broker outage through the real appliance", () => {
  beforeAll(() => {
    if (!haveMosquitto) throw new Error("mosquitto is not installed: run scripts/setup.sh (apt-get install mosquitto)");
  });

  test("every record arrives after the broker comes back, in order, historical, no duplicates after dedup", { timeout: 300_000 }, async () => {
    const { queen } = await setUp();
    await waitFor("live telemetry", () => sub!.records.some((r) => r.kind === "telemetry" && !r.historical), { timeoutMs: 30_000 });
    const from = Date.now();
    await broker!.stop();
    await sleep(OUTAGE_MS);
    const during = await outboxOf(queen);
    expect(during.pending).toBeGreaterThanOrEqual(50); // ~60 telemetry lines at 1 Hz waited in the outbox
    await broker!.restart();
    const to = Date.now();
    const bySeq = await checkArrived(during.lastSeq, { from, to });
    const ticks = [...bySeq.values()].filter((r) => r.kind === "telemetry").map((r) => Number((r as { data: Record<string, unknown> }).data.tick));
    expect(ticks).toEqual(ticks.map((_, i) => ticks[0]! + i)); // every telemetry line, in order
    expect([...bySeq.values()].filter((r) => r.kind === "telemetry" && r.historical).length).toBeGreaterThanOrEqual(50);
    await waitFor("the outbox drained", async () => (await outboxOf(queen)).pending === 0, { timeoutMs: 60_000 });
  });

  test("the same with the appliance killed -9 and restarted during the outage", { timeout: 300_000 }, async () => {
    const { queen, fleetArgs } = await setUp();
    await waitFor("live telemetry", () => sub!.records.some((r) => r.kind === "telemetry" && !r.historical), { timeoutMs: 30_000 });
    const from = Date.now();
    await broker!.stop();
    await sleep(OUTAGE_MS / 2);
    const beforeKill = await outboxOf(queen);
    signalPid(served!.pid, "SIGKILL");
    await waitFor("the appliance gone", () => !pidAlive(served!.pid));
    await served!.child;
    served = await serve(scratch!, fleetArgs);
    queen.served = served;
    await waitFor("worker-1 running again", async () => (await queen.workers()).get("worker-1")?.status === "running");
    await sleep(OUTAGE_MS / 2);
    const during = await outboxOf(queen);
    expect(during.lastSeq).toBeGreaterThan(beforeKill.lastSeq + 10); // seqs continue after the restart
    await broker!.restart();
    const to = Date.now();
    const bySeq = await checkArrived(during.lastSeq, { from, to });
    // Everything stored before the kill arrived, and records kept coming after the restart.
    for (let s = 1; s <= beforeKill.lastSeq; s++) expect(bySeq.has(s)).toBe(true);
    expect([...bySeq.values()].filter((r) => r.kind === "telemetry" && r.seq > beforeKill.lastSeq).length).toBeGreaterThanOrEqual(10);
  });
});
