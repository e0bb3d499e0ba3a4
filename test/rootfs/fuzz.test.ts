import { expect, test } from "vitest";
import { InvalidError } from "../../nine-door/index.ts";
import { readCpio, writeCpio, type CpioEntry } from "../../rootfs/index.ts";
import { prng } from "../nine-door/wire/samples.ts";

const ROUNDS = 10_000;
const SEED = 0xc910;
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Valid archives covering every entry type, hard-link groups and odd lengths. */
const seeds: Buffer[] = [
  writeCpio([]),
  writeCpio([{ type: "file", path: "a", data: text("x") }]),
  writeCpio([
    { type: "char", path: "/dev/console", major: 5, minor: 1 },
    { type: "char", path: "/dev/null", major: 1, minor: 3, mode: 0o666 },
    { type: "block", path: "/dev/vda", major: 254, minor: 0 },
    { type: "symlink", path: "/bin/sh", target: "busybox" },
    { type: "file", path: "/bin/busybox", data: text("BUSYBOX!!"), mode: 0o755 },
    { type: "hardlink", path: "/sbin/ip", target: "/bin/busybox" },
    { type: "dir", path: "/tmp", mode: 0o1777 },
    { type: "file", path: "/etc/hostname", data: text("cohesix\n") },
  ]),
];

function mutate(rand: () => number, seed: Buffer): Buffer {
  const pick = (n: number) => Math.floor(rand() * n);
  const b = Buffer.from(seed);
  const hex = "0123456789abcdefABCDEF";
  switch (pick(6)) {
    case 0: // flip a few bytes anywhere
      for (let i = 1 + pick(4); i > 0; i--) b[pick(b.length)] ^= 1 + pick(255);
      return b;
    case 1: // truncate
      return Buffer.from(b.subarray(0, pick(b.length + 1)));
    case 2: {
      // rewrite one header field of one member with random (mostly valid) hex
      const starts: number[] = [];
      for (let i = b.indexOf("070701"); i >= 0; i = b.indexOf("070701", i + 1)) starts.push(i);
      const at = starts[pick(starts.length)]! + 6 + pick(13) * 8;
      const value = rand() < 0.3 ? "FFFFFFFF" : Array.from({ length: 8 }, () => hex[pick(rand() < 0.9 ? 16 : hex.length + 3)] ?? "z").join("");
      b.write(value.slice(0, Math.max(0, b.length - at)), at, "latin1");
      return b;
    }
    case 3: {
      // insert random bytes
      const at = pick(b.length + 1);
      return Buffer.concat([b.subarray(0, at), Buffer.from(Array.from({ length: 1 + pick(8) }, () => pick(256))), b.subarray(at)]);
    }
    case 4: {
      // splice a slice of another seed in
      const other = seeds[pick(seeds.length)]!;
      const from = pick(other.length);
      const at = pick(b.length + 1);
      return Buffer.concat([b.subarray(0, at), other.subarray(from, from + pick(200)), b.subarray(at + pick(50))]);
    }
    default: // small namesize / filesize lies
      {
        const starts: number[] = [];
        for (let i = b.indexOf("070701"); i >= 0; i = b.indexOf("070701", i + 1)) starts.push(i);
        const at = starts[pick(starts.length)]! + 6 + (rand() < 0.5 ? 11 : 6) * 8;
        b.write(pick(300).toString(16).toUpperCase().padStart(8, "0"), at, "latin1");
        return b;
      }
  }
}

test(`readCpio throws nothing but InvalidError on ${ROUNDS} seeded mutations, and never hangs`, () => {
  const rand = prng(SEED);
  const started = Date.now();
  let parsed = 0;
  let refused = 0;
  for (let i = 0; i < ROUNDS; i++) {
    const input = mutate(rand, seeds[Math.floor(rand() * seeds.length)]!);
    try {
      const entries = readCpio(input);
      parsed++;
      // Whatever it accepts, every entry is well-formed plain data.
      for (const e of entries) expect(typeof e.path).toBe("string");
    } catch (err) {
      if (!(err instanceof InvalidError)) throw new Error(`round ${i} (seed ${SEED}): ${String(err)}`, { cause: err });
      refused++;
    }
  }
  expect(parsed).toBeGreaterThan(0);
  expect(refused).toBeGreaterThan(ROUNDS / 2);
  expect(Date.now() - started).toBeLessThan(20_000);
});

test("random trees round-trip: write, read, write again gives the same bytes", () => {
  const rand = prng(SEED + 1);
  const pick = (n: number) => Math.floor(rand() * n);
  for (let round = 0; round < 300; round++) {
    const entries: CpioEntry[] = [];
    const files: string[] = [];
    const dirs = [""];
    for (let i = 0, n = 1 + pick(25); i < n; i++) {
      const path = `${dirs[pick(dirs.length)]}/${"abcxyz-_."[pick(9)]}${pick(40)}`;
      if (entries.some((e) => e.path === path)) continue;
      const kind = pick(6);
      if (kind === 0) {
        entries.push({ type: "dir", path, mode: pick(0o10000) });
        dirs.push(path);
      } else if (kind === 1) {
        entries.push({ type: "symlink", path, target: `t${pick(1000)}` });
      } else if (kind === 2) {
        entries.push({ type: rand() < 0.5 ? "char" : "block", path, major: pick(300), minor: pick(300) });
      } else if (kind === 3 && files.length > 0) {
        entries.push({ type: "hardlink", path, target: files[pick(files.length)]! });
      } else {
        entries.push({ type: "file", path, data: Buffer.from(Array.from({ length: pick(20) }, () => pick(256))), mode: pick(0o10000) });
        files.push(path);
      }
    }
    const reproducible = rand() < 0.5;
    const first = writeCpio(entries, { reproducible, mtime: pick(2 ** 32) });
    const again = writeCpio(readCpio(first), { reproducible: false });
    expect(again.equals(first), `round ${round}`).toBe(true);
  }
});
