import { EventEmitter } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { FleetLink, type FleetRecord, type LinkState, type MqttClientLike, type MqttConnect, type MqttConnectOptions, Outbox, decodeRecord } from "../../fleet/index.ts";

/** A client that records publishes and lets the test decide when each PUBACK comes. */
class FakeClient extends EventEmitter implements MqttClientLike {
  readonly sent: { topic: string; record: FleetRecord; retain: boolean; ack: (err?: Error) => void }[] = [];
  ended = false;
  publish(topic: string, payload: Buffer, options: { qos: 1; retain: boolean }, callback: (err?: Error) => void): this {
    this.sent.push({ topic, record: decodeRecord(payload), retain: options.retain, ack: callback });
    return this;
  }
  end(_force: boolean, callback?: () => void): this {
    this.ended = true;
    callback?.();
    return this;
  }
}

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

let dir: string;
let outbox: Outbox;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-link-states-"));
  outbox = await Outbox.open(dir, { ackDelayMs: 1 });
});
afterEach(async () => {
  await outbox.close();
  await rm(dir, { recursive: true, force: true });
});

function makeLink(connect: MqttConnect, states: string[], window = 4): FleetLink {
  return new FleetLink({
    url: "mqtt://127.0.0.1:1",
    id: "app-1",
    outbox,
    birth: () => ({ version: "0.1.0", boot: {}, lifecycle: "ONLINE" }),
    connect,
    window,
    minBackoffMs: 1,
    maxBackoffMs: 4,
    onState: (from: LinkState, to: LinkState) => states.push(`${from}->${to}`),
  });
}

describe("FleetLink states and window", () => {
  test("walks idle, connecting, backoff (failed attempt), online, backoff (lost), connecting and closed", async () => {
    const states: string[] = [];
    const clients: FakeClient[] = [];
    const options: MqttConnectOptions[] = [];
    let attempts = 0;
    const link = makeLink(async (_url, o) => {
      options.push(o);
      if (attempts++ === 0) throw new Error("ECONNREFUSED");
      const c = new FakeClient();
      clients.push(c);
      return c;
    }, states);
    link.start();
    await until("a client", () => clients.length === 1);
    clients[0]!.emit("connect");
    expect(link.state).toBe("online");
    expect(clients[0]!.sent[0]).toMatchObject({ topic: "cohesix/app-1/birth", retain: true, record: { kind: "birth", session: expect.any(Number) } });
    expect(options[1]).toMatchObject({ clientId: "cohesix-app-1", will: { topic: "cohesix/app-1/death", qos: 1, retain: true } });
    expect(decodeRecord(options[1]!.will.payload)).toMatchObject({ kind: "death", reason: "connection lost", session: (clients[0]!.sent[0]!.record as { session: number }).session });
    clients[0]!.emit("close");
    expect(clients[0]!.ended).toBe(true);
    await until("a second client", () => clients.length === 2);
    await link.close();
    expect(states).toEqual([
      "idle->connecting",
      "connecting->backoff",
      "backoff->connecting",
      "connecting->online",
      "online->backoff",
      "backoff->connecting",
      "connecting->closed",
    ]);
    clients[1]!.emit("connect"); // a late event from an abandoned attempt changes nothing
    expect(link.state).toBe("closed");
  });

  test("keeps at most `window` records in flight and moves the watermark only over the contiguous prefix of PUBACKs", async () => {
    const states: string[] = [];
    const client = new FakeClient();
    const link = makeLink(async () => client, states, 4);
    for (let i = 0; i < 10; i++) await link.publish({ kind: "telemetry", worker: "worker-1", data: { tick: i } });
    link.start();
    await until("connect", () => states.includes("idle->connecting"));
    client.emit("connect");
    const stream = (): typeof client.sent => client.sent.filter((s) => s.record.kind === "telemetry");
    await until("a full window", () => stream().length === 4);
    await new Promise((r) => setTimeout(r, 50));
    expect(stream().map((s) => s.record.seq)).toEqual([1, 2, 3, 4]);
    expect(stream().every((s) => s.record.historical)).toBe(true);
    stream()[1]!.ack(); // seq 2 before seq 1
    await until("one more sent", () => stream().length === 5);
    expect(outbox.acked).toBe(0);
    stream()[0]!.ack();
    await until("watermark 2", () => outbox.acked === 2);
    for (let i = 2; i < 10; i++) {
      await until(`seq ${i + 1} sent`, () => stream().length > i);
      stream()[i]!.ack();
    }
    await until("all acknowledged", () => outbox.acked === 10);
    expect(stream().map((s) => s.record.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    await link.publish({ kind: "audit", line: "live" });
    await until("the live record", () => client.sent.some((s) => s.record.kind === "audit"));
    expect(client.sent.find((s) => s.record.kind === "audit")!.record).toMatchObject({ seq: 11, historical: false });
    await link.close();
    expect(client.sent.at(-1)).toMatchObject({ topic: "cohesix/app-1/death", retain: true, record: { reason: "link closed" } });
  });

  test("a lost connection re-sends from the watermark; PUBACKs of the old connection are ignored", async () => {
    const states: string[] = [];
    const clients: FakeClient[] = [];
    const link = makeLink(async () => {
      const c = new FakeClient();
      clients.push(c);
      return c;
    }, states, 8);
    for (let i = 0; i < 5; i++) await link.publish({ kind: "audit", line: `l${i}` });
    link.start();
    await until("a client", () => clients.length === 1);
    clients[0]!.emit("connect");
    const stream = (c: FakeClient): FakeClient["sent"] => c.sent.filter((s) => s.record.kind === "audit");
    await until("5 sent", () => stream(clients[0]!).length === 5);
    stream(clients[0]!)[0]!.ack();
    stream(clients[0]!)[1]!.ack();
    await until("watermark 2", () => outbox.acked === 2);
    clients[0]!.emit("close");
    stream(clients[0]!)[2]!.ack(); // too late: that connection is gone
    await until("a second client", () => clients.length === 2);
    clients[1]!.emit("connect");
    await until("3 re-sent", () => stream(clients[1]!).length === 3);
    expect(outbox.acked).toBe(2);
    expect(stream(clients[1]!).map((s) => s.record.seq)).toEqual([3, 4, 5]);
    await link.close();
  });

  test("after the outbox dropped records at its bound, the link sends the dropped record and its watermark passes the gap", async () => {
    await outbox.close();
    await rm(dir, { recursive: true, force: true });
    outbox = await Outbox.open(dir, { maxBytes: 64 * 1024, segmentBytes: 4096, ackDelayMs: 1 });
    const states: string[] = [];
    const client = new FakeClient();
    const link = makeLink(async () => client, states, 16);
    for (let i = 0; i < 1500; i++) await link.publish({ kind: "audit", line: `line ${i} ${"x".repeat(60)}` });
    expect(outbox.stats.dropped).toBeGreaterThan(0);
    link.start();
    await until("connect", () => states.includes("idle->connecting"));
    client.emit("connect");
    let acked = 0;
    await until("everything kept sent and acknowledged", () => {
      const stream = client.sent.filter((s) => s.record.kind !== "birth");
      for (; acked < stream.length; acked++) stream[acked]!.ack();
      return outbox.pending === 0 && outbox.acked === outbox.lastSeq;
    });
    const stream = client.sent.filter((s) => s.record.kind !== "birth").map((s) => s.record);
    const dropped = stream.filter((r) => r.kind === "dropped");
    const lines = stream.filter((r) => r.kind === "audit");
    expect(dropped.length).toBeGreaterThan(0);
    expect(dropped.every((r) => r.historical)).toBe(true); // made while the link was not online
    expect(Math.min(...dropped.map((r) => (r.kind === "dropped" ? r.first_seq : 0)))).toBe(1);
    expect(lines.length + dropped.reduce((n, r) => n + (r.kind === "dropped" ? r.count : 0), 0)).toBe(1500);
    expect(stream.map((r) => r.seq)).toEqual([...stream.map((r) => r.seq)].sort((a, b) => a - b));
    expect(client.sent.find((s) => s.record.kind === "dropped")!.topic).toBe("cohesix/app-1/dropped");
    await link.close();
  });

  test("the birth record says how many records were still to be forwarded when the connection was made", async () => {
    const states: string[] = [];
    const clients: FakeClient[] = [];
    const link = makeLink(async () => {
      const c = new FakeClient();
      clients.push(c);
      return c;
    }, states);
    for (let i = 0; i < 7; i++) await link.publish({ kind: "audit", line: `made offline ${i}` });
    link.start();
    await until("a client", () => clients.length === 1);
    clients[0]!.emit("connect");
    expect(clients[0]!.sent[0]!.record).toMatchObject({ kind: "birth", backlog: 7, seq: 7 });
    let acked = 1;
    await until("everything acknowledged", () => {
      for (; acked < clients[0]!.sent.length; acked++) clients[0]!.sent[acked]!.ack();
      return outbox.pending === 0;
    });
    clients[0]!.emit("close");
    await until("a second client", () => clients.length === 2);
    clients[1]!.emit("connect");
    expect(clients[1]!.sent[0]!.record).toMatchObject({ kind: "birth", backlog: 0 });
    await link.close();
  });

  test("a bad broker URL, id or window is refused", () => {
    const base = { id: "app-1", outbox, birth: () => ({ version: "1", boot: {}, lifecycle: "ONLINE" as const }) };
    expect(() => new FleetLink({ ...base, url: "http://x" })).toThrow('invalid: fleet: broker URL "http://x" must start with mqtt:// or mqtts://');
    expect(() => new FleetLink({ ...base, url: "mqtt://x", id: "a/b" })).toThrow(/invalid: fleet: appliance id/);
    expect(() => new FleetLink({ ...base, url: "mqtt://x", window: 0 })).toThrow("invalid: fleet: window must be an integer 1..65535, got 0");
  });
});
