import { describe, expect, test } from "vitest";
import {
  type FleetRecord,
  MAX_RECORD_BYTES,
  RECORD_KINDS,
  channelTopic,
  checkPrefix,
  decodeRecord,
  encodeRecord,
  parseTopic,
  topicFor,
} from "../../fleet/index.ts";

const head = { v: 1, id: "app-1", seq: 7, ts_ms: 1_765_000_000_000, historical: false } as const;
const samples: Record<FleetRecord["kind"], FleetRecord> = {
  birth: { ...head, kind: "birth", session: 3, version: "0.1.0", boot: { board: "aarch64-virt", slot: "a" }, lifecycle: "ONLINE", backlog: 0 },
  death: { ...head, kind: "death", session: 3, reason: "connection lost" },
  lifecycle: { ...head, kind: "lifecycle", state: "DRAINING", reason: "queen: drain" },
  telemetry: { ...head, kind: "telemetry", worker: "worker-1", data: { tick: 42, load: 0.5, nested: { a: [1, 2] } } },
  audit: { ...head, kind: "audit", line: "spawned worker-1 role=heartbeat" },
  dropped: { ...head, kind: "dropped", count: 12, first_seq: 1, last_seq: 12, bytes: 4096 },
};
const bytes = (text: string): Uint8Array => Buffer.from(text, "utf8");

describe("records", () => {
  test("every kind round-trips through encodeRecord() and decodeRecord(), and each kind has a sample", () => {
    expect(Object.keys(samples).sort()).toEqual([...RECORD_KINDS].sort());
    for (const r of Object.values(samples)) {
      expect(decodeRecord(encodeRecord(r))).toEqual(r);
      expect(decodeRecord(encodeRecord({ ...r, historical: true }))).toMatchObject({ historical: true, seq: 7, ts_ms: head.ts_ms });
    }
  });

  test("encodeRecord() refuses a record past the cap with too big", () => {
    const big: FleetRecord = { ...head, kind: "audit", line: "x".repeat(4000) };
    expect(() => encodeRecord(big, { maxBytes: 1024 })).toThrow(/^too big: fleet record: audit record of \d+ bytes exceeds 1024/);
    expect(() => encodeRecord({ ...head, kind: "audit", line: "x".repeat(5000) })).toThrow(/invalid: fleet record: line must be a string of at most 4096/);
  });

  test("decodeRecord() refuses an oversized payload before parsing it", () => {
    const huge = new Uint8Array(MAX_RECORD_BYTES + 1).fill(0x5b); // "[[[[…"
    expect(() => decodeRecord(huge)).toThrow(`too big: fleet record: ${MAX_RECORD_BYTES + 1} bytes exceeds the ${MAX_RECORD_BYTES}-byte cap`);
  });

  test("decodeRecord() answers garbage with one invalid error each", () => {
    const good = samples.telemetry;
    const cases: [Uint8Array, RegExp][] = [
      [new Uint8Array([0xff, 0xfe, 0x00]), /not UTF-8/],
      [bytes("{"), /not JSON/],
      [bytes("null"), /not a JSON object/],
      [bytes("[1,2]"), /not a JSON object/],
      [bytes('"birth"'), /not a JSON object/],
      [bytes(JSON.stringify({ ...good, kind: "nope" })), /kind must be one of/],
      [bytes(JSON.stringify({ ...good, kind: "__proto__" })), /kind must be one of/],
      [bytes(JSON.stringify({ ...good, extra: 1 })), /unknown field "extra"/],
      [bytes(JSON.stringify({ ...good, v: 2 })), /v must be 1/],
      [bytes(JSON.stringify({ ...good, seq: -1 })), /seq must be an integer/],
      [bytes(JSON.stringify({ ...good, seq: 1.5 })), /seq must be an integer/],
      [bytes(JSON.stringify({ ...good, seq: 2 ** 60 })), /seq must be an integer/],
      [bytes(JSON.stringify({ ...good, ts_ms: "now" })), /ts_ms must be an integer/],
      [bytes(JSON.stringify({ ...good, historical: 1 })), /historical must be true or false/],
      [bytes(JSON.stringify({ ...good, id: "a/b" })), /id must be a topic-safe name/],
      [bytes(JSON.stringify({ ...good, id: "+" })), /id must be a topic-safe name/],
      [bytes(JSON.stringify({ ...good, worker: "#" })), /worker must be a topic-safe name/],
      [bytes(JSON.stringify({ ...good, data: [1] })), /data must be an object/],
      [bytes(JSON.stringify({ ...good, data: JSON.parse(`${'{"a":'.repeat(40)}1${"}".repeat(40)}`) })), /data must be an object nested at most/],
      [bytes(`{"v":1,"kind":"telemetry","data":${"[".repeat(20000)}${"]".repeat(20000)}}`), /unknown field|lacks|data must be/],
      [bytes(JSON.stringify({ ...samples.birth, lifecycle: "PARTY" })), /lifecycle must be one of BOOTING/],
      [bytes(JSON.stringify({ ...samples.birth, boot: { a: 1 } })), /boot must map names/],
      [bytes(JSON.stringify({ ...samples.dropped, count: 0 })), /count must be an integer ≥ 1/],
      [bytes(JSON.stringify({ v: 1, kind: "audit", id: "a", seq: 1, ts_ms: 1, historical: false })), /audit record lacks line/],
    ];
    for (const [input, message] of cases) {
      expect(() => decodeRecord(input)).toThrow(message);
      expect(() => decodeRecord(input)).toThrow(/^invalid: /);
    }
  });

  test("decodeRecord() survives a seeded fuzz of mutated records without any error but invalid or too big", () => {
    let state = 12345;
    const rand = (n: number): number => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return state % n;
    };
    const seeds = Object.values(samples).map((r) => Buffer.from(encodeRecord(r)));
    let accepted = 0;
    for (let i = 0; i < 5000; i++) {
      const b = Buffer.from(seeds[rand(seeds.length)]!);
      for (let k = 1 + rand(4); k > 0; k--) b[rand(b.length)] = rand(256);
      try {
        decodeRecord(b);
        accepted++;
      } catch (err) {
        expect(String(err)).toMatch(/^(InvalidError|TooBigError|Error): (invalid|too big): fleet record: /);
      }
    }
    expect(accepted).toBeLessThan(5000);
  });
});

describe("topics", () => {
  test("topicFor() places each kind under <prefix>/<id>/ and parseTopic() reads it back", () => {
    for (const r of Object.values(samples)) {
      const topic = topicFor("site-3/cohesix", r);
      expect(topic).toBe(r.kind === "telemetry" ? "site-3/cohesix/app-1/telemetry/worker-1" : `site-3/cohesix/app-1/${r.kind}`);
      expect(parseTopic("site-3/cohesix", topic)).toEqual(r.kind === "telemetry" ? { id: "app-1", channel: "telemetry", worker: "worker-1" } : { id: "app-1", channel: r.kind });
    }
    expect(channelTopic("cohesix", "app-1", { channel: "cmd" })).toBe("cohesix/app-1/cmd");
    expect(parseTopic("cohesix", channelTopic("cohesix", "app-1", { channel: "reply", name: "op-7" }))).toEqual({ id: "app-1", channel: "reply", name: "op-7" });
  });

  test("parseTopic() returns undefined for topics outside the tree", () => {
    for (const t of ["other/app-1/birth", "cohesix", "cohesix/", "cohesix/app-1", "cohesix/app-1/nope", "cohesix/app-1/birth/x", "cohesix/app-1/telemetry", "cohesix/+/birth", "cohesix/app-1/telemetry/a/b", `cohesix/${"a".repeat(2000)}/birth`]) {
      expect(parseTopic("cohesix", t)).toBeUndefined();
    }
  });

  test("wildcards, empty levels and overlong names are refused in prefixes, ids and workers", () => {
    for (const p of ["", "a//b", "a/+", "#", "/a", "a/", "a b", "1/2/3/4/5/6/7/8/9"]) expect(() => checkPrefix(p)).toThrow(/^invalid: fleet: topic prefix/);
    expect(() => topicFor("cohesix", { kind: "audit", id: "a+b" })).toThrow(/invalid: fleet: appliance id "a\+b"/);
    expect(() => topicFor("cohesix", { kind: "telemetry", id: "a", worker: "x".repeat(65) })).toThrow(/invalid: fleet: worker/);
  });
});
