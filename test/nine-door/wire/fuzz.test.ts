import { expect, test } from "vitest";
import { NineError } from "../../../nine-door/errors.ts";
import { decodeMessage, encodeMessage, type DecodeResult } from "../../../nine-door/wire/index.ts";
import { allNames, prng, samples } from "./samples.ts";

const ROUNDS = 20_000;
const SEED = 0x9f00d;

function mutate(rand: () => number, frame: Buffer): Buffer {
  const pick = (n: number) => Math.floor(rand() * n);
  const b = Buffer.from(frame);
  switch (pick(6)) {
    case 0: {
      // Flip a few bytes, then make size[4] agree so the body decoder runs.
      for (let i = 1 + pick(4); i > 0; i--) b[pick(b.length)] ^= 1 + pick(255);
      if (rand() < 0.8) b.writeUInt32LE(b.length, 0);
      return b;
    }
    case 1: {
      // Truncate, mostly with a consistent size field.
      const t = Buffer.from(b.subarray(0, pick(b.length + 1)));
      if (t.length >= 4 && rand() < 0.7) t.writeUInt32LE(t.length, 0);
      return t;
    }
    case 2: {
      // Lie about the size.
      if (b.length >= 4) b.writeUInt32LE(rand() < 0.5 ? pick(0x100000000) : b.length + pick(9) - 4, 0);
      return b;
    }
    case 3: {
      // Insert random bytes at a random place.
      const at = pick(b.length + 1);
      const extra = Buffer.from(Array.from({ length: 1 + pick(8) }, () => pick(256)));
      const out = Buffer.concat([b.subarray(0, at), extra, b.subarray(at)]);
      out.writeUInt32LE(out.length, 0);
      return out;
    }
    case 4: {
      // Swap in a random type number.
      if (b.length > 4) b[4] = pick(256);
      return b;
    }
    default: {
      // Inflate a count or length field: write a large u16/u32 somewhere.
      if (b.length >= 9) {
        const at = 7 + pick(b.length - 8);
        if (rand() < 0.5) b.writeUInt16LE(pick(0x10000), at);
        else if (at + 4 <= b.length) b.writeUInt32LE(pick(0x100000000), at);
      }
      return b;
    }
  }
}

test(`decodeMessage() never throws on ${ROUNDS} seeded mutations of valid frames`, () => {
  const rand = prng(SEED);
  const frames = allNames.map((n) => encodeMessage(samples[n]));
  let accepted = 0;
  let refused = 0;
  for (let i = 0; i < ROUNDS; i++) {
    const input = mutate(rand, frames[i % frames.length]!);
    let r: DecodeResult;
    try {
      r = decodeMessage(input);
    } catch (err) {
      throw new Error(`round ${i} threw on ${input.toString("hex")}: ${String(err)}`);
    }
    if (r.ok) {
      accepted++;
      // Anything accepted must encode again and decode to an accepted frame.
      const again = decodeMessage(encodeMessage(r.message));
      expect(again.ok, `round ${i}: ${input.toString("hex")}`).toBe(true);
    } else {
      refused++;
      expect(r.error).toBeInstanceOf(NineError);
      if (input.length >= 7) expect(r.tag).toBe(input.readUInt16LE(5));
    }
  }
  // Both paths get exercised, not just the size check.
  expect(accepted).toBeGreaterThan(ROUNDS / 20);
  expect(refused).toBeGreaterThan(ROUNDS / 4);
});
