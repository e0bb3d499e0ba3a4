import { gunzipSync } from "node:zlib";
import { describe, expect, test } from "vitest";
import { InvalidError, TooBigError } from "../../nine-door/index.ts";
import { checkSize, compress, decompress, readCpio, writeCpio, type CpioEntry } from "../../rootfs/index.ts";

const MiB = 1024 * 1024;
const entries: CpioEntry[] = [
  { type: "char", path: "/dev/console", major: 5, minor: 1 },
  { type: "file", path: "/init", data: new TextEncoder().encode("#!/bin/sh\n".repeat(500)), mode: 0o755 },
];

describe("compress", () => {
  test("gzip is byte-identical across runs, with no mtime, XFL 2 and OS Unix", async () => {
    const cpio = writeCpio(entries);
    const one = compress(cpio, "gzip");
    await new Promise((r) => setTimeout(r, 1100)); // a different wall-clock second
    const two = compress(writeCpio(entries), "gzip");
    expect(one.equals(two)).toBe(true);
    expect([...one.subarray(0, 10)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3]);
    expect(one.length).toBeLessThan(cpio.length);
  });

  test("gzip round-trips through decompress and stock gunzip", () => {
    const cpio = writeCpio(entries);
    const gz = compress(cpio, "gzip");
    expect(decompress(gz).equals(cpio)).toBe(true);
    expect(gunzipSync(gz).equals(cpio)).toBe(true);
    expect(readCpio(decompress(gz)).map((e) => e.path)).toEqual(["dev", "dev/console", "init"]);
  });

  test("none returns the archive itself, and decompress passes it through", () => {
    const cpio = writeCpio(entries);
    expect(compress(cpio, "none")).toBe(cpio);
    expect(decompress(cpio)).toBe(cpio);
  });

  test("decompress refuses a corrupt gzip stream with an InvalidError", () => {
    const gz = compress(writeCpio(entries), "gzip");
    gz[gz.length - 5] ^= 0xff; // the CRC/length trailer
    expect(() => decompress(gz)).toThrow(InvalidError);
    expect(() => decompress(gz)).toThrow(/decompress: corrupt gzip stream/);
  });
});

describe("checkSize", () => {
  test("returns the size when it is within the limit", () => {
    expect(checkSize(10 * MiB, { limit: 10 * MiB, what: "initramfs" })).toBe(10 * MiB);
    expect(checkSize(new Uint8Array(3), { limit: 3, what: "initramfs" })).toBe(3);
  });

  test("refuses an oversized image with both sizes in MiB and what to do", () => {
    const over = () => checkSize(Math.round(70.25 * MiB), { limit: 64 * MiB, what: "aarch64-virt initramfs (gzip)" });
    expect(over).toThrow(TooBigError);
    expect(over).toThrow(/^too big: aarch64-virt initramfs \(gzip\) is 70\.3 MiB \(\d+ bytes\), over its limit of 64\.0 MiB \(67108864 bytes\): drop files/);
    expect(over).toThrow(/raise the board's size limit/);
    expect(() => checkSize(2, { limit: 1, what: "x", hint: "use the floor image" })).toThrow(/: use the floor image$/);
  });

  test("refuses a limit that is not a size", () => {
    expect(() => checkSize(1, { limit: Number.NaN, what: "x" })).toThrow(InvalidError);
  });
});
