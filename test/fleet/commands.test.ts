/**
 * The appliance-side checks of a command from the broker (size before
 * parsing, shape, address), the reply record, and the rate/queue gate.
 */
import { describe, expect, test } from "vitest";
import { CommandGate, checkCommand, decodeReply, encodeReply, replyNameOf, type ReplyRecord } from "../../fleet/index.ts";
import { decodeRecord } from "../../fleet/index.ts";
import { generateKeyPair } from "../../root-task/keys.ts";
import { openEnvelope, signFleetCommand } from "../../root-task/signed-ctl.ts";

const bytes = (s: string) => Buffer.from(s, "utf8");

describe("fleet commands", async () => {
  const queen = await generateKeyPair();

  test("a signed fleet command passes the checks and opens with to and reply", () => {
    const text = signFleetCommand('{"spawn":"heartbeat"}', queen.privateKey, { ctr: 3, to: "app-1", reply: "h-1" });
    const cmd = checkCommand(bytes(text), { id: "app-1" });
    expect(cmd).toEqual({ text, ctr: 3, to: "app-1", reply: "h-1" });
    expect(openEnvelope(text, queen.publicKey, { lastCtr: 2, applianceId: "app-1" })).toEqual({ command: '{"spawn":"heartbeat"}', ctr: 3, to: "app-1", reply: "h-1" });
  });

  test("checkCommand refuses oversize, garbage, missing fields and another id, each with one error", () => {
    const good = JSON.parse(signFleetCommand('{"kill":"worker-1"}', queen.privateKey, { ctr: 1, to: "app-1", reply: "r" })) as Record<string, unknown>;
    const cases: [Uint8Array, RegExp][] = [
      [new Uint8Array(16 * 1024 + 1), /^too big: fleet command of 16385 bytes exceeds 16384/],
      [Uint8Array.from([0xff, 0xfe]), /^invalid: fleet command: not UTF-8/],
      [bytes("{nope"), /^invalid: fleet command: not JSON/],
      [bytes("[1]"), /^invalid: fleet command: not a JSON object/],
      [bytes(JSON.stringify({ ...good, extra: 1 })), /^invalid: fleet command: unknown field "extra"/],
      [bytes(JSON.stringify({ ...good, reply: undefined })), /^invalid: fleet command: lacks reply/],
      [bytes(JSON.stringify({ ...good, to: "a/+" })), /^invalid: fleet command: to must be/],
      [bytes(JSON.stringify({ ...good, ctr: -1 })), /^invalid: fleet command: ctr must be/],
      [bytes(JSON.stringify({ ...good, to: "app-2" })), /^permission: fleet command for app-2 reached app-1/],
    ];
    for (const [payload, refusal] of cases) expect(() => checkCommand(payload, { id: "app-1" })).toThrow(refusal);
    expect(() => checkCommand(bytes(JSON.stringify(good)), { id: "app-1", maxBytes: 10 })).toThrow(/^too big:/);
  });

  test("replyNameOf reads a reply name from anything without throwing", () => {
    expect(replyNameOf(bytes('{"reply":"h-1","cmd":5}'))).toBe("h-1");
    expect(replyNameOf(bytes('{"reply":"a/b"}'))).toBeUndefined();
    expect(replyNameOf(bytes("garbage"))).toBeUndefined();
    expect(replyNameOf(new Uint8Array(20_000))).toBeUndefined();
  });

  test("a reply round-trips, and decodeReply refuses a bad one", () => {
    const ok: ReplyRecord = { v: 1, kind: "reply", id: "app-1", name: "h-1", ts_ms: 5, ctr: 3, last_ctr: 3, ok: true, result: { ok: true, worker: "worker-1" } };
    const err: ReplyRecord = { v: 1, kind: "reply", id: "app-1", name: "h-2", ts_ms: 6, ctr: 0, last_ctr: 3, ok: false, error: "invalid: fleet command: not JSON" };
    expect(decodeReply(encodeReply(ok))).toEqual(ok);
    expect(decodeReply(encodeReply(err))).toEqual(err);
    expect(() => decodeReply(bytes(JSON.stringify({ ...ok, error: "x" })))).toThrow(/^invalid: fleet reply: unknown field "error"/);
    expect(() => decodeReply(bytes(JSON.stringify({ ...err, ok: true })))).toThrow(/^invalid: fleet reply:/);
    expect(() => decodeReply(new Uint8Array(64 * 1024 + 1))).toThrow(/^too big:/);
  });

  test("a birth record may carry the last accepted counter, and still decodes without it", () => {
    const birth = { v: 1, kind: "birth", id: "app-1", seq: 0, ts_ms: 1, historical: false, session: 1, version: "0.1.0", boot: {}, lifecycle: "ONLINE", backlog: 0 };
    expect(decodeRecord(bytes(JSON.stringify({ ...birth, ctr: 7 })))).toMatchObject({ ctr: 7 });
    expect(decodeRecord(bytes(JSON.stringify(birth)))).not.toHaveProperty("ctr");
    expect(() => decodeRecord(bytes(JSON.stringify({ ...birth, ctr: -1 })))).toThrow(/^invalid: fleet record: ctr/);
  });

  test("the gate takes a burst, then refuses busy until tokens come back, and bounds the queue", () => {
    let now = 0;
    const gate = new CommandGate({ rate: 2, burst: 3, queue: 2 }, () => now);
    const a = gate.take();
    const b = gate.take();
    expect(() => gate.take()).toThrow(/^busy: fleet commands: 2 already waiting \(queue 2\)/);
    a();
    b();
    gate.take()();
    expect(() => gate.take()).toThrow(/^busy: fleet commands: over 2\/s \(burst 3\)/);
    now += 500;
    gate.take()();
    expect(() => gate.take()).toThrow(/^busy:/);
  });
});
