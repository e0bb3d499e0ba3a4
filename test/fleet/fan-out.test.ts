import { describe, expect, test } from "vitest";
import { type FanOutHost, type HostMessageListener, checkCommand, encodeReply, fanOut } from "../../fleet/index.ts";
import { generateKeyPair, openEnvelope, signFleetCommand } from "../../root-task/index.ts";

const keys = await generateKeyPair();
const sign = (command: string, address: { ctr: number; to: string; reply: string }) => signFleetCommand(command, keys.privateKey, address);

interface Sent {
  topic: string;
  at: number;
  ctr: number;
  reply: string;
}

/** A broker stand-in: appliances with a last counter that verify each envelope and answer (or not). */
function fakeFleet(appliances: Record<string, { lastCtr: number; silent?: boolean; extra?: (reply: string, id: string) => [string, Uint8Array][] }>) {
  const listeners = new Set<HostMessageListener>();
  const sent: Sent[] = [];
  const subscribed: string[] = [];
  const deliver = (topic: string, payload: Uint8Array) => setImmediate(() => listeners.forEach((l) => l(topic, Buffer.from(payload), false)));
  const host: FanOutHost = {
    subscribe: async (filters) => void subscribed.push(...filters),
    onMessage: (l) => (listeners.add(l), () => listeners.delete(l)),
    publish: async (topic, payload) => {
      const id = topic.split("/")[1]!;
      const a = appliances[id]!;
      const cmd = checkCommand(payload, { id });
      sent.push({ topic, at: performance.now(), ctr: cmd.ctr, reply: cmd.reply });
      if (a.silent) return;
      const replyTopic = `cohesix/${id}/reply/${cmd.reply}`;
      for (const [t, p] of a.extra?.(cmd.reply, id) ?? []) deliver(t, p);
      try {
        const opened = openEnvelope(cmd.text, keys.publicKey, { lastCtr: a.lastCtr, applianceId: id });
        a.lastCtr = opened.ctr;
        deliver(replyTopic, encodeReply({ v: 1, kind: "reply", id, name: cmd.reply, ts_ms: 1, ctr: cmd.ctr, last_ctr: a.lastCtr, ok: true, result: { ok: true, worker: "worker-1" } }));
        deliver(replyTopic, encodeReply({ v: 1, kind: "reply", id, name: cmd.reply, ts_ms: 1, ctr: cmd.ctr, last_ctr: a.lastCtr, ok: false, error: "busy: a duplicate that comes too late" }));
      } catch (err) {
        deliver(replyTopic, encodeReply({ v: 1, kind: "reply", id, name: cmd.reply, ts_ms: 1, ctr: cmd.ctr, last_ctr: a.lastCtr, ok: false, error: (err as Error).message }));
      }
    },
  };
  return { host, sent, subscribed };
}

describe("fanOut", () => {
  test("each appliance gets its own envelope with its next counter; answers are matched by topic and reply name, the first one counts", async () => {
    const { host, sent, subscribed } = fakeFleet({ "app-1": { lastCtr: 0 }, "app-2": { lastCtr: 41 } });
    const results = await fanOut(host, [{ id: "app-1" }, { id: "app-2", ctr: 41 }], { prefix: "cohesix", command: '{"spawn":"heartbeat"}', sign });
    expect(results).toEqual([
      { id: "app-1", status: "ok", ctr: 1, ms: expect.any(Number), result: { ok: true, worker: "worker-1" } },
      { id: "app-2", status: "ok", ctr: 42, ms: expect.any(Number), result: { ok: true, worker: "worker-1" } },
    ]);
    expect(sent.map((s) => s.topic)).toEqual(["cohesix/app-1/cmd", "cohesix/app-2/cmd"]);
    expect(subscribed).toEqual([`cohesix/+/reply/${sent[0]!.reply}`, `cohesix/+/reply/${sent[0]!.reply}-r`]);
  });

  test("a refusal for a replayed counter is tried once more with the counter the reply names; a second refusal is final", async () => {
    const { host, sent } = fakeFleet({ "app-1": { lastCtr: 9 } });
    const [r] = await fanOut(host, [{ id: "app-1", ctr: 3 }], { prefix: "cohesix", command: '{"kill":"worker-1"}', sign });
    expect(r).toMatchObject({ status: "ok", ctr: 10 });
    expect(sent.map((s) => s.ctr)).toEqual([4, 10]);
    expect(sent[1]!.reply).toBe(`${sent[0]!.reply}-r`);

    const bad = fakeFleet({ "app-1": { lastCtr: 0 } });
    const other = await generateKeyPair();
    const [refused] = await fanOut(bad.host, [{ id: "app-1" }], { prefix: "cohesix", command: "{}", sign: (c, a) => signFleetCommand(c, other.privateKey, a) });
    expect(refused).toMatchObject({ status: "refused", error: "permission: envelope signature does not verify against the queen key" });
    expect(bad.sent).toHaveLength(1);
  });

  test("an appliance that never answers is timed out at the deadline, the others are not held up", async () => {
    const { host } = fakeFleet({ "app-1": { lastCtr: 0 }, "app-2": { lastCtr: 0, silent: true } });
    const results = await fanOut(host, [{ id: "app-1" }, { id: "app-2" }], { prefix: "cohesix", command: "{}", sign, deadlineMs: 300 });
    expect(results.map((r) => [r.id, r.status, r.error])).toEqual([
      ["app-1", "ok", undefined],
      ["app-2", "timed out", "no reply within 0.3 s"],
    ]);
  });

  test("answers on another appliance's topic, with another reply name or that are not replies are ignored", async () => {
    const forged = (reply: string) => encodeReply({ v: 1, kind: "reply", id: "app-1", name: reply, ts_ms: 1, ctr: 1, last_ctr: 1, ok: false, error: "permission: forged" });
    const { host } = fakeFleet({
      "app-1": { lastCtr: 0, silent: true, extra: (reply) => [[`cohesix/app-2/reply/${reply}`, forged(reply)], [`cohesix/app-1/reply/other`, forged("other")], [`cohesix/app-1/reply/${reply}`, Buffer.from("{nope")]] },
      "app-2": { lastCtr: 0, silent: true },
    });
    const results = await fanOut(host, [{ id: "app-1" }, { id: "app-2" }], { prefix: "cohesix", command: "{}", sign, deadlineMs: 300 });
    expect(results.map((r) => r.status)).toEqual(["timed out", "timed out"]);
  });

  test("publishes at most --rate envelopes a second", async () => {
    const ids = Array.from({ length: 6 }, (_, i) => `app-${i}`);
    const { host, sent } = fakeFleet(Object.fromEntries(ids.map((id) => [id, { lastCtr: 0 }])));
    const results = await fanOut(host, ids.map((id) => ({ id })), { prefix: "cohesix", command: "{}", sign, ratePerS: 20 });
    expect(results.every((r) => r.status === "ok")).toBe(true);
    // 6 envelopes at 20/s: the last goes out no sooner than 5 × 50 ms after the first.
    expect(sent.at(-1)!.at - sent[0]!.at).toBeGreaterThanOrEqual(240);
  });

  test("a bad rate, deadline or a name given twice is refused before anything is sent", async () => {
    const { host, sent } = fakeFleet({ "app-1": { lastCtr: 0 } });
    await expect(fanOut(host, [{ id: "app-1" }], { prefix: "cohesix", command: "{}", sign, ratePerS: 0 })).rejects.toThrow("invalid: fleet: rate must be");
    await expect(fanOut(host, [{ id: "app-1" }], { prefix: "cohesix", command: "{}", sign, deadlineMs: -1 })).rejects.toThrow("invalid: fleet: deadline must be above 0 s");
    await expect(fanOut(host, [{ id: "app-1" }, { id: "app-1" }], { prefix: "cohesix", command: "{}", sign })).rejects.toThrow("invalid: fleet: appliance app-1 named twice");
    await expect(fanOut(host, [{ id: "a/b" }], { prefix: "cohesix", command: "{}", sign })).rejects.toThrow(/invalid: fleet: appliance id/);
    expect(sent).toHaveLength(0);
  });
});
