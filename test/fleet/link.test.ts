import { spawn, type ChildProcessByStdio } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import mqtt from "mqtt";
import { afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { type FleetRecord, FleetLink, type LinkState, Outbox, decodeRecord } from "../../fleet/index.ts";
import { Broker, haveMosquitto } from "./broker.ts";
import { useBundledChild } from "../crash.ts";

interface Received {
  topic: string;
  record: FleetRecord;
}

/** A QoS 1 subscriber with a persistent session, so it misses nothing across broker restarts. */
async function subscribe(url: string): Promise<{ got: Received[]; end: () => Promise<void> }> {
  const got: Received[] = [];
  const client = mqtt.connect(url, { clientId: `test-sub-${process.pid}-${Date.now()}`, clean: false, reconnectPeriod: 100, protocolVersion: 4 });
  client.on("error", () => {});
  client.on("message", (topic, payload) => got.push({ topic, record: decodeRecord(payload) }));
  await new Promise<void>((ok, fail) => {
    client.once("connect", () => client.subscribe("cohesix/#", { qos: 1 }, (err) => (err ? fail(err) : ok())));
  });
  return { got, end: () => new Promise<void>((r) => client.end(true, {}, () => r())) };
}

async function until(what: string, check: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Stream records by seq, first arrival only; and whether first arrivals came in seq order. */
function dedup(got: Received[]): { bySeq: Map<number, FleetRecord>; inOrder: boolean; duplicates: number } {
  const bySeq = new Map<number, FleetRecord>();
  let inOrder = true;
  let last = 0;
  let duplicates = 0;
  for (const { record } of got) {
    if (record.kind === "birth" || record.kind === "death") continue;
    if (bySeq.has(record.seq)) {
      duplicates += 1;
      continue;
    }
    if (record.seq < last) inOrder = false;
    last = record.seq;
    bySeq.set(record.seq, record);
  }
  return { bySeq, inOrder, duplicates };
}

let dir: string;
let broker: Broker | undefined;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-link-"));
  await mkdir(join(dir, "broker"));
});
afterEach(async () => {
  await broker?.stop();
  broker = undefined;
  await rm(dir, { recursive: true, force: true });
});

describe("fleet link against mosquitto", () => {
  beforeAll(() => {
    // A real broker, never skipped: scripts/setup.sh installs it.
    if (!haveMosquitto) throw new Error("mosquitto is not installed: run scripts/setup.sh (apt-get install mosquitto)");
  });

  test("records made while the broker is stopped arrive after its restart, in order, historical, without gaps", { timeout: 120_000 }, async () => {
    broker = await Broker.start(join(dir, "broker"));
    const sub = await subscribe(broker.url);
    const outbox = await Outbox.open(join(dir, "outbox"));
    const states: LinkState[] = [];
    const link = new FleetLink({
      url: broker.url,
      id: "app-1",
      outbox,
      birth: () => ({ version: "0.1.0", boot: { board: "host" }, lifecycle: "ONLINE" }),
      minBackoffMs: 100,
      maxBackoffMs: 400,
      window: 8,
      onState: (_f, to) => states.push(to),
    });
    try {
      link.start();
      await until("online", () => link.state === "online");
      for (let i = 0; i < 20; i++) await link.publish({ kind: "telemetry", worker: "worker-1", data: { tick: i } });
      await until("20 live records", () => dedup(sub.got).bySeq.size === 20);
      expect(sub.got.find((r) => r.record.kind === "birth")).toMatchObject({ topic: "cohesix/app-1/birth", record: { id: "app-1", lifecycle: "ONLINE", historical: false } });

      await broker.stop();
      await until("the link to notice", () => link.state !== "online");
      const outageStart = Date.now();
      for (let i = 20; i < 50; i++) await link.publish({ kind: "telemetry", worker: "worker-1", data: { tick: i } });
      await link.publish({ kind: "audit", line: "spawned worker-2 role=heartbeat" });
      expect(outbox.pending).toBe(31);
      await broker.restart();
      await until("all 51 records", () => dedup(sub.got).bySeq.size === 51);
      await until("the outbox to empty", () => outbox.pending === 0);

      const { bySeq, inOrder } = dedup(sub.got);
      expect(inOrder).toBe(true);
      expect([...bySeq.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 51 }, (_, i) => i + 1));
      for (const [seq, r] of bySeq) {
        expect(r.historical, `seq ${seq}`).toBe(seq > 20);
        if (r.kind === "telemetry") expect(r.data.tick).toBe(seq - 1);
        if (seq > 20) expect(r.ts_ms).toBeLessThan(outageStart + 60_000);
      }
      expect(bySeq.get(51)).toMatchObject({ kind: "audit", line: "spawned worker-2 role=heartbeat" });
      expect(sub.got.filter((r) => r.topic === "cohesix/app-1/telemetry/worker-1").length).toBeGreaterThanOrEqual(50);
      expect(states.slice(0, 4)).toEqual(["connecting", "online", "backoff", "connecting"]);
      expect(states).toContain("online");
    } finally {
      await link.close();
      await outbox.close();
      await sub.end();
    }
    expect(states.at(-1)).toBe("closed");
  });

  describe("across kill -9", () => {
    const child = useBundledChild("test/fleet/link-child.ts", "cohesix-link-");

    test("a link killed -9 during an outage and restarted still delivers every record it made; a kill while online publishes the death will", { timeout: 180_000 }, async () => {
      broker = await Broker.start(join(dir, "broker"));
      const sub = await subscribe(broker.url);
      const children: ChildProcessByStdio<null, Readable, Readable>[] = [];
      const made = new Set<number>();
      const start = (): { proc: ChildProcessByStdio<null, Readable, Readable>; out: () => string; exited: Promise<void> } => {
        const proc = spawn(process.execPath, [child.path, join(dir, "outbox"), broker!.url, "20"], { stdio: ["ignore", "pipe", "pipe"] });
        children.push(proc);
        let out = "";
        let err = "";
        proc.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          for (const m of d.toString().matchAll(/^made (\d+)$/gm)) made.add(Number(m[1]));
        });
        proc.stderr.on("data", (d: Buffer) => (err += d.toString()));
        const exited = new Promise<void>((r) => proc.once("exit", () => r()));
        return { proc, out: () => out + err, exited };
      };
      const kill9 = async (c: { proc: ChildProcessByStdio<null, Readable, Readable>; exited: Promise<void> }): Promise<void> => {
        process.kill(c.proc.pid!, "SIGKILL");
        await c.exited;
      };
      try {
        const a = start();
        await until("records from the first process", () => dedup(sub.got).bySeq.size >= 10);
        await broker.stop();
        await until("the first process to notice the outage", () => /^state backoff/m.test(a.out()));
        // The last record made before the link noticed; one more may have been appended while it noticed.
        const beforeOutage = Math.max(...[...a.out().split(/^state backoff/m)[0]!.matchAll(/^made (\d+)$/gm)].map((m) => Number(m[1])));
        await until("records made during the outage", () => made.size >= beforeOutage + 25);
        await kill9(a);
        const b = start();
        await until("the restarted process", () => /^ready \d+$/m.test(b.out()));
        // What A appended durably, including a record whose `made` line the kill cut off.
        const madeByA = Number(/^ready (\d+)$/m.exec(b.out())![1]);
        expect(madeByA).toBeGreaterThanOrEqual(Math.max(...made));
        await until("records made by the restarted process", () => made.size >= madeByA + 25);
        await broker.restart();
        await until("every record made", () => [...made].every((s) => dedup(sub.got).bySeq.has(s)), 90_000);

        const { bySeq, inOrder } = dedup(sub.got);
        expect(inOrder).toBe(true);
        const last = Math.max(...bySeq.keys());
        expect([...bySeq.keys()].sort((x, y) => x - y)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
        for (let seq = beforeOutage + 2; seq <= madeByA + 25; seq++) expect(bySeq.get(seq)?.historical, `seq ${seq}`).toBe(true);
        const ticks = [...bySeq.values()].map((r) => (r.kind === "telemetry" ? r.ts_ms : 0));
        expect(ticks).toEqual([...ticks].sort((x, y) => x - y));

        const birthB = [...sub.got].reverse().find((r) => r.record.kind === "birth")!.record;
        await kill9(b);
        await until("the death will", () => sub.got.some((r) => r.record.kind === "death" && r.record.session === (birthB as { session: number }).session), 30_000);
        expect(sub.got.find((r) => r.record.kind === "death")).toMatchObject({ topic: "cohesix/app-1/death", record: { reason: "connection lost" } });
        console.log(`link kill -9: ${made.size} made (${beforeOutage} before the outage, ${madeByA} before the kill), ${bySeq.size} distinct arrived, ${dedup(sub.got).duplicates} duplicates removed by seq`);
      } finally {
        for (const c of children) if (c.exitCode === null && c.signalCode === null) process.kill(c.pid!, "SIGKILL");
        await sub.end();
      }
    });
  });
});
