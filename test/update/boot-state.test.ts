/**
 * The A/B boot state record: one serialiser and one parser that agree, a
 * torn or empty copy is refused (and the other copy used), garbage never
 * throws, and the boot step walks every transition: normal, try, rollback,
 * fallback — a normal boot never touches the counter.
 */
import { describe, expect, it } from "vitest";
import {
  STATE_FILE_BYTES,
  bootStep,
  chooseBootState,
  formatBootState,
  initialBootState,
  parseBootState,
  type BootState,
} from "../../update/index.ts";
import { prng } from "../nine-door/wire/samples.ts";

const trying = (tries: number, seq = 1): BootState => ({ seq, active: "a", try: "b", tries, slots: { a: "good", b: "trying" } });

describe("boot state record", () => {
  it("formatBootState writes env export -t text, sorted, NUL-padded to a fixed size", () => {
    const bytes = formatBootState(trying(3, 0x1f));
    expect(bytes.length).toBe(STATE_FILE_BYTES);
    const text = Buffer.from(bytes).toString("latin1").replace(/\0+$/, "");
    expect(text).toBe("ab_0_seq=1f\nab_a=good\nab_active=a\nab_b=trying\nab_tries=3\nab_try=b\nab_z_seq=1f\n");
  });

  it("parseBootState reads back every state formatBootState writes", () => {
    const states: BootState[] = [initialBootState(), initialBootState({ active: "b", other: "good" }), trying(9, 0xabc), { ...trying(0), slots: { a: "good", b: "rolled_back" }, try: null }];
    for (const s of states) expect(parseBootState(formatBootState(s))).toEqual({ ok: true, state: s });
  });

  it("formatBootState refuses two-digit tries and unknown slots", () => {
    expect(() => formatBootState(trying(10))).toThrow(/one digit/);
    expect(() => formatBootState({ ...trying(1), active: "c" as "a" })).toThrow(/active slot c/);
  });

  it("parseBootState refuses an empty file and an all-NUL file", () => {
    expect(parseBootState(new Uint8Array(0))).toEqual({ ok: false, reason: "empty" });
    expect(parseBootState(new Uint8Array(STATE_FILE_BYTES))).toEqual({ ok: false, reason: "empty" });
  });

  it("parseBootState refuses every write torn between an old and a new record", () => {
    const old = formatBootState(trying(3, 7));
    const next = formatBootState(trying(2, 8));
    const end = Buffer.from(next).indexOf(0);
    for (let cut = 1; cut < end; cut++) {
      const newThenOld = Buffer.concat([next.subarray(0, cut), old.subarray(cut)]);
      const oldThenNew = Buffer.concat([old.subarray(0, cut), next.subarray(cut)]);
      const truncated = next.subarray(0, cut);
      for (const torn of [newThenOld, oldThenNew, truncated]) {
        const parsed = parseBootState(torn);
        // Only a cut that changes no byte (before the first differing byte) parses, and then as one of the two records.
        if (parsed.ok) expect([7, 8]).toContain(parsed.state.seq);
        if (parsed.ok && parsed.state.seq === 8) expect(parsed.state.tries).toBe(2);
        if (parsed.ok && parsed.state.seq === 7) expect(parsed.state.tries).toBe(3);
      }
      // A truncated record is refused unless only its last newline is missing.
      if (cut < end - 1) expect(parseBootState(truncated).ok).toBe(false);
    }
  });

  it("parseBootState refuses a file longer than the boot script reads", () => {
    const parsed = parseBootState(new Uint8Array(STATE_FILE_BYTES + 1).fill(0x41));
    expect(parsed).toEqual({ ok: false, reason: `${STATE_FILE_BYTES + 1} bytes, more than the ${STATE_FILE_BYTES} the boot script reads` });
  });

  it("parseBootState refuses malformed values by name", () => {
    const edit = (from: string, to: string) => parseBootState(Buffer.from(Buffer.from(formatBootState(trying(3))).toString("latin1").replace(/\0+$/, "").replace(from, to), "latin1"));
    expect(edit("ab_active=a", "ab_active=c")).toMatchObject({ ok: false, reason: expect.stringMatching(/active slot "c"/) });
    expect(edit("ab_tries=3", "ab_tries=12")).toMatchObject({ ok: false, reason: expect.stringMatching(/tries "12"/) });
    expect(edit("ab_b=trying", "ab_b=maybe")).toMatchObject({ ok: false, reason: expect.stringMatching(/slot b status "maybe"/) });
    expect(edit("ab_try=b", "ab_try=x")).toMatchObject({ ok: false, reason: expect.stringMatching(/try slot "x"/) });
    expect(edit("ab_z_seq=1", "ab_z_seq=2")).toMatchObject({ ok: false, reason: "torn: sequence 1 at its start, 2 at its end" });
  });

  it("parseBootState never throws on seeded random and mutated input, and what it accepts formats back to the same state", () => {
    const rand = prng(0x5eed14);
    const seed = Buffer.from(formatBootState(trying(3, 0x42)));
    for (let i = 0; i < 3000; i++) {
      let bytes: Buffer;
      if (i % 3 === 0) {
        bytes = Buffer.alloc(Math.floor(rand() * 600));
        for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(rand() * 256);
      } else {
        bytes = Buffer.from(seed);
        for (let k = 0; k < 1 + Math.floor(rand() * 4); k++) bytes[Math.floor(rand() * 120)] = Math.floor(rand() * 256);
      }
      const parsed = parseBootState(bytes);
      if (parsed.ok) expect(parseBootState(formatBootState(parsed.state))).toEqual(parsed);
      else expect(parsed.reason.length).toBeGreaterThan(0);
    }
  });
});

describe("choosing a copy", () => {
  it("chooseBootState takes state.env when it is whole", () => {
    const chosen = chooseBootState(formatBootState(trying(2, 8)), formatBootState(trying(3, 7)));
    expect(chosen).toMatchObject({ from: "state.env", state: { seq: 8, tries: 2 } });
  });

  it("chooseBootState takes state.bak when state.env is torn, empty or missing", () => {
    const bak = formatBootState(trying(3, 7));
    const torn = Buffer.concat([formatBootState(trying(2, 8)).subarray(0, 30), bak.subarray(30)]);
    for (const env of [torn, new Uint8Array(0), undefined]) {
      const chosen = chooseBootState(env, bak);
      expect(chosen.from).toBe("state.bak");
      expect(chosen.state?.seq).toBe(7);
      expect(chosen.refused).toHaveLength(1);
    }
  });

  it("chooseBootState with no whole copy gives no state, and the boot falls back to slot a without writing", () => {
    const chosen = chooseBootState(new Uint8Array(0), undefined);
    expect(chosen).toEqual({ state: null, from: null, refused: ["state.env: empty", "state.bak: missing"] });
    expect(bootStep(chosen.state)).toEqual({ slot: "a", kind: "fallback", write: null });
  });
});

describe("boot step (the boot script's decision)", () => {
  it("a normal boot of the active slot writes nothing, however often it happens", () => {
    const s = initialBootState({ other: "good" });
    for (let i = 0; i < 5; i++) expect(bootStep(s)).toEqual({ slot: "a", kind: "normal", write: null });
  });

  it("a try boot takes one try and writes it before booting the try slot", () => {
    expect(bootStep(trying(3, 5))).toEqual({ slot: "b", kind: "try", write: trying(2, 6) });
  });

  it("tries run out: B is tried N times, then marked rolled_back and A boots; B is not tried again", () => {
    let s: BootState = trying(2);
    const slots: string[] = [];
    for (let i = 0; i < 5; i++) {
      const d = bootStep(s);
      slots.push(`${d.slot}:${d.kind}`);
      if (d.write) s = d.write;
    }
    expect(slots).toEqual(["b:try", "b:try", "a:rollback", "a:normal", "a:normal"]);
    expect(s).toEqual({ seq: 4, active: "a", try: null, tries: 0, slots: { a: "good", b: "rolled_back" } });
  });

  it("a try slot that is not marked trying, or is the active slot, is not tried", () => {
    expect(bootStep({ ...trying(3), slots: { a: "good", b: "rolled_back" } })).toMatchObject({ slot: "a", kind: "normal", write: null });
    expect(bootStep({ ...trying(3), try: "a", slots: { a: "trying", b: "good" } })).toMatchObject({ slot: "a", kind: "normal", write: null });
  });

  it("a power cut after any write leaves a whole copy whose boot step boots a slot", () => {
    let env = formatBootState(trying(2));
    let bak = env;
    for (let step = 0; step < 4; step++) {
      const d = bootStep(chooseBootState(env, bak).state);
      if (!d.write) break;
      const next = formatBootState(d.write);
      // Cut while state.env is written: state.bak holds the previous record.
      for (let cut = 0; cut < 120; cut += 7) {
        const torn = Buffer.concat([next.subarray(0, cut), env.subarray(cut)]);
        const chosen = chooseBootState(torn, bak);
        expect(chosen.state).not.toBeNull();
        expect(["a", "b"]).toContain(bootStep(chosen.state).slot);
      }
      env = next;
      // Cut while state.bak is written: state.env is already whole and newest.
      expect(chooseBootState(env, next.subarray(0, 20)).state).toEqual(d.write);
      bak = next;
    }
  });
});
