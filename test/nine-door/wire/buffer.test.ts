import { describe, expect, test } from "vitest";
import { TooBigError } from "../../../nine-door/errors.ts";
import { WireReader, WireWriter, stringSize } from "../../../nine-door/wire/index.ts";

describe("WireReader", () => {
  test("reads little-endian integers", () => {
    const r = new WireReader(Buffer.from("01" + "0201" + "04030201" + "0807060504030201" + "ffffffffffffffff", "hex"));
    expect(r.u8()).toBe(1);
    expect(r.u16()).toBe(0x0102);
    expect(r.u32()).toBe(0x01020304);
    expect(r.u64big()).toBe(0x0102030405060708n);
    expect(r.u64()).toBe(2 ** 64);
    expect(r.remaining).toBe(0);
    expect(r.problem).toBeUndefined();
  });

  test("reads a u32 with the top bit set as unsigned", () => {
    expect(new WireReader(Buffer.from("ffffffff", "hex")).u32()).toBe(0xffffffff);
  });

  test("a read past the end returns 0 and records an overrun instead of throwing", () => {
    const r = new WireReader(Uint8Array.of(1, 2, 3));
    expect(r.u32()).toBe(0);
    expect(r.overrun).toBe(true);
    expect(r.u8()).toBe(0);
    expect(r.string()).toBe("");
    expect(r.bytes(1).length).toBe(0);
    expect(r.qid()).toEqual({ type: 0, version: 0, path: 0n });
    expect(r.problem).toBe("frame ends early");
  });

  test("a string whose length runs past the end is an overrun", () => {
    const r = new WireReader(Uint8Array.of(5, 0, 0x61));
    expect(r.string()).toBe("");
    expect(r.overrun).toBe(true);
  });

  test("bytes() returns a view, not a copy", () => {
    const src = Uint8Array.of(1, 2, 3, 4);
    const view = new WireReader(src, 1).bytes(2);
    src[1] = 9;
    expect([...view]).toEqual([9, 3]);
  });

  test("string() decodes UTF-8 and refuses NUL or invalid bytes", () => {
    const w = new WireWriter(stringSize("ünï") + stringSize("plain"));
    w.string("ünï");
    w.string("plain");
    const good = new WireReader(w.finish());
    expect(good.string()).toBe("ünï");
    expect(good.string()).toBe("plain");
    expect(good.badString).toBeUndefined();

    const nul = new WireReader(Uint8Array.of(2, 0, 0x61, 0));
    expect(nul.string()).toBe("");
    expect(nul.badString).toBe("string at byte 0 contains NUL");
    expect(nul.overrun).toBe(false);

    const bad = new WireReader(Uint8Array.of(1, 0, 0xff));
    bad.string();
    expect(bad.badString).toMatch(/not valid UTF-8/);
  });

  test("fail() keeps the first problem and outranks an overrun", () => {
    const r = new WireReader(new Uint8Array(0));
    r.u8();
    r.fail("first");
    r.fail("second");
    expect(r.problem).toBe("first");
  });
});

describe("WireWriter", () => {
  test("round-trips every width through WireReader", () => {
    const w = new WireWriter(1 + 2 + 4 + 8 + 8 + 13 + stringSize("né") + 3);
    w.u8(0xab);
    w.u16(0xbeef);
    w.u32(0xdeadbeef);
    w.u64(2 ** 53 - 1);
    w.u64big(0xfedcba9876543210n);
    w.qid({ type: 0x80, version: 3, path: 77n });
    w.string("né");
    w.bytes(Uint8Array.of(7, 8, 9));
    const r = new WireReader(w.finish());
    expect([r.u8(), r.u16(), r.u32(), r.u64(), r.u64big()]).toEqual([
      0xab, 0xbeef, 0xdeadbeef, 2 ** 53 - 1, 0xfedcba9876543210n,
    ]);
    expect(r.qid()).toEqual({ type: 0x80, version: 3, path: 77n });
    expect(r.string()).toBe("né");
    expect([...r.bytes(3)]).toEqual([7, 8, 9]);
    expect(r.remaining).toBe(0);
  });

  test("u64() writes ~0 for 2^64 and wraps -1", () => {
    const w = new WireWriter(16);
    w.u64(2 ** 64);
    w.u64(-1);
    expect(w.finish().toString("hex")).toBe("ff".repeat(16));
  });

  test("finish() refuses a buffer that was not filled exactly", () => {
    const w = new WireWriter(4);
    w.u16(1);
    expect(() => w.finish()).toThrow(/wrote 2 of 4 bytes/);
  });

  test("stringSize() counts UTF-8 bytes and refuses more than 65535", () => {
    expect(stringSize("")).toBe(2);
    expect(stringSize("é")).toBe(4);
    expect(() => stringSize("é".repeat(40000))).toThrow(TooBigError);
  });
});
