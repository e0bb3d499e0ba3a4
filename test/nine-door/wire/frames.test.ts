import { describe, expect, test } from "vitest";
import { InvalidError, TooBigError } from "../../../nine-door/errors.ts";
import { FrameSplitter, decodeMessage, encodeMessage } from "../../../nine-door/wire/index.ts";
import { allNames, samples } from "./samples.ts";

const frames = allNames.map((n) => encodeMessage(samples[n]));
const stream = Buffer.concat(frames);

function drain(s: FrameSplitter): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let f = s.next(); f !== undefined; f = s.next()) out.push(f);
  return out;
}

function hex(list: Uint8Array[]): string[] {
  return list.map((f) => Buffer.from(f).toString("hex"));
}

describe("FrameSplitter", () => {
  test("a byte-at-a-time feed yields every frame whole and in order", () => {
    const s = new FrameSplitter(1 << 16);
    const out: Uint8Array[] = [];
    for (const byte of stream) {
      s.push(Uint8Array.of(byte));
      out.push(...drain(s));
    }
    expect(hex(out)).toEqual(hex(frames));
    expect(s.buffered).toBe(0);
  });

  test("several frames in one chunk come out as views of that chunk", () => {
    const s = new FrameSplitter(1 << 16);
    s.push(stream);
    const out = drain(s);
    expect(hex(out)).toEqual(hex(frames));
    for (const f of out) expect(f.buffer).toBe(stream.buffer);
    expect(s.buffered).toBe(0);
  });

  test("chunks that split frames at every odd place still yield whole frames", () => {
    const s = new FrameSplitter(1 << 16);
    const out: Uint8Array[] = [];
    let at = 0;
    for (let step = 1; at < stream.length; step = (step * 7 + 3) % 97 + 1) {
      s.push(stream.subarray(at, at + step));
      at += step;
      out.push(...drain(s));
    }
    expect(hex(out)).toEqual(hex(frames));
    expect(out.every((f) => decodeMessage(f).ok)).toBe(true);
  });

  test("buffered counts the bytes held, including a partly assembled frame", () => {
    const s = new FrameSplitter(1 << 16);
    const big = encodeMessage({ type: "Rread", tag: 1, data: Buffer.alloc(1000, 1) });
    s.push(big.subarray(0, 3));
    expect(s.next()).toBeUndefined();
    expect(s.buffered).toBe(3);
    s.push(big.subarray(3, 500));
    expect(s.next()).toBeUndefined();
    expect(s.buffered).toBe(500);
    s.push(big.subarray(500));
    expect(Buffer.from(s.next()!).equals(big)).toBe(true);
    expect(s.buffered).toBe(0);
  });

  test("an oversize frame is refused with TooBigError and its tag", () => {
    const s = new FrameSplitter(8192);
    const big = encodeMessage({ type: "Twrite", tag: 0x4242, fid: 1, offset: 0, data: Buffer.alloc(9000) });
    s.push(frames[0]!);
    s.push(big.subarray(0, 5));
    expect(s.next()).toBeDefined();
    // Waits for the 7-byte header so the refusal can name the tag.
    expect(s.next()).toBeUndefined();
    expect(s.refusal).toBeUndefined();
    s.push(big.subarray(5));
    expect(() => s.next()).toThrow(TooBigError);
    expect(s.refusal).toMatchObject({ size: big.length, tag: 0x4242, typeId: 118 });
    expect(s.refusal!.error.detail).toBe(`frame of ${big.length} bytes exceeds the 8192-byte limit`);
  });

  test("after a refusal, next() keeps throwing and push() discards input", () => {
    const s = new FrameSplitter(64);
    s.push(Buffer.from([0xff, 0xff, 0, 0, 100, 1, 0]));
    expect(() => s.next()).toThrow(TooBigError);
    s.push(frames[0]!);
    expect(s.buffered).toBe(0);
    expect(() => s.next()).toThrow(TooBigError);
  });

  test("a size field below 7 is refused with InvalidError and no tag", () => {
    const s = new FrameSplitter(8192);
    s.push(Buffer.from([6, 0, 0, 0, 100, 1, 0, 9]));
    expect(() => s.next()).toThrow(InvalidError);
    expect(s.refusal).toMatchObject({ size: 6, tag: undefined, typeId: 100 });
  });

  test("setMaxFrame() lowers the cap for the frames that follow", () => {
    const s = new FrameSplitter(1 << 20);
    const medium = encodeMessage({ type: "Rread", tag: 3, data: Buffer.alloc(5000) });
    s.push(medium);
    expect(s.next()).toBeDefined();
    s.setMaxFrame(4096);
    expect(s.maxFrame).toBe(4096);
    s.push(medium);
    expect(() => s.next()).toThrow(TooBigError);
    expect(s.refusal!.tag).toBe(3);
  });

  test("a frame exactly at the cap is accepted", () => {
    const f = encodeMessage({ type: "Rread", tag: 3, data: Buffer.alloc(4096 - 11) });
    const s = new FrameSplitter(4096);
    s.push(f);
    expect(s.next()!.length).toBe(4096);
  });

  test("the constructor refuses a cap below the header size", () => {
    expect(() => new FrameSplitter(6)).toThrow(RangeError);
  });
});
