/**
 * The link's record cap (the fleet block's `maxRecordBytes`): a stream
 * record over it is refused `too big` before it takes a seq, so nothing is
 * stored; one under it is stored; the cap is bounded 1024..65536.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { FleetLink, Outbox, type FleetLinkOptions } from "../../fleet/index.ts";

let dir: string;
let outbox: Outbox;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-record-cap-"));
  outbox = await Outbox.open(dir, { ackDelayMs: 1 });
});
afterEach(async () => {
  await outbox.close();
  await rm(dir, { recursive: true, force: true });
});

const link = (more: Partial<FleetLinkOptions>): FleetLink =>
  new FleetLink({
    url: "mqtt://127.0.0.1:1",
    id: "app-1",
    outbox,
    birth: () => ({ version: "0.1.0", boot: {}, lifecycle: "ONLINE" }),
    connect: () => Promise.reject(new Error("no broker in this test")),
    ...more,
  });

describe("the link's record cap", () => {
  test("a record over maxRecordBytes is refused too big and takes no seq; one under it is stored", async () => {
    const l = link({ maxRecordBytes: 2048 });
    await expect(l.publish({ kind: "telemetry", worker: "worker-1", data: { text: "x".repeat(3000) } })).rejects.toThrow(/^too big: fleet record: telemetry record of \d+ bytes exceeds 2048/);
    expect(outbox.lastSeq).toBe(0);
    expect(await l.publish({ kind: "telemetry", worker: "worker-1", data: { text: "x".repeat(1500) } })).toBe(1);
    expect(outbox.lastSeq).toBe(1);
    await l.close();
  });

  test("without the knob the cap is the receivers' 64 KiB", async () => {
    const l = link({});
    expect(await l.publish({ kind: "telemetry", worker: "worker-1", data: { text: "x".repeat(3000) } })).toBe(1);
    await expect(l.publish({ kind: "telemetry", worker: "worker-1", data: { text: "x".repeat(70_000) } })).rejects.toThrow(/exceeds 65536/);
    await l.close();
  });

  test("a cap outside 1024..65536 is refused", () => {
    expect(() => link({ maxRecordBytes: 1023 })).toThrow("invalid: fleet: maxRecordBytes must be an integer 1024..65536, got 1023");
    expect(() => link({ maxRecordBytes: 65_537 })).toThrow(/maxRecordBytes must be an integer 1024\.\.65536/);
  });
});
