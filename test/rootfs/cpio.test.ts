import { afterEach, describe, expect, test, vi } from "vitest";
import { InvalidError, NotFoundError, TooBigError } from "../../nine-door/index.ts";
import {
  decodeNewc,
  makeReproducible,
  normaliseCpioPath,
  readCpio,
  sourceDateEpoch,
  writeCpio,
  type CpioEntry,
} from "../../rootfs/index.ts";

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const names = (buf: Uint8Array): string[] => decodeNewc(buf).map((r) => r.name);

/** A newc header spelled out field by field, independently of the codec. */
function header(f: { ino: number; mode: number; nlink: number; size: number; rmaj?: number; rmin?: number; name: string; mtime?: number }): string {
  const h = (n: number) => n.toString(16).toUpperCase().padStart(8, "0");
  const fields = [f.ino, f.mode, 0, 0, f.nlink, f.mtime ?? 0, f.size, 0, 0, f.rmaj ?? 0, f.rmin ?? 0, f.name.length + 1, 0];
  const head = "070701" + fields.map(h).join("") + f.name + "\0";
  return head + "\0".repeat((4 - (head.length % 4)) % 4);
}

afterEach(() => {
  vi.unstubAllEnvs();
});

describe("writeCpio", () => {
  test("writes the golden bytes of a tiny archive", () => {
    const out = writeCpio([
      { type: "file", path: "/etc/hostname", data: text("cohesix\n") },
      { type: "char", path: "/dev/console", major: 5, minor: 1 },
    ]);
    const expected =
      header({ ino: 0, mode: 0o40755, nlink: 2, size: 0, name: "dev" }) +
      header({ ino: 1, mode: 0o20600, nlink: 1, size: 0, rmaj: 5, rmin: 1, name: "dev/console" }) +
      header({ ino: 2, mode: 0o40755, nlink: 2, size: 0, name: "etc" }) +
      header({ ino: 3, mode: 0o100644, nlink: 1, size: 8, name: "etc/hostname" }) + "cohesix\n" +
      header({ ino: 0, mode: 0, nlink: 1, size: 0, name: "TRAILER!!!" });
    expect(out.toString("latin1")).toBe(expected);
    expect(out.length % 4).toBe(0);
  });

  test("round-trips files, directories, symlinks and devices through readCpio", () => {
    const entries: CpioEntry[] = [
      { type: "dir", path: "/tmp", mode: 0o1777 },
      { type: "file", path: "/init", data: () => text("#!/bin/sh\nexec node\n"), mode: 0o755 },
      { type: "file", path: "/empty", data: new Uint8Array() },
      { type: "symlink", path: "/bin/sh", target: "busybox" },
      { type: "char", path: "/dev/null", major: 1, minor: 3, mode: 0o666 },
      { type: "block", path: "/dev/vda", major: 254, minor: 0 },
    ];
    const back = readCpio(writeCpio(entries, { mtime: 1234 }));
    expect(back).toEqual([
      { type: "dir", path: "bin", mode: 0o755, mtime: 1234, uid: 0, gid: 0 },
      { type: "symlink", path: "bin/sh", target: "busybox", mtime: 1234, uid: 0, gid: 0 },
      { type: "dir", path: "dev", mode: 0o755, mtime: 1234, uid: 0, gid: 0 },
      { type: "char", path: "dev/null", major: 1, minor: 3, mode: 0o666, mtime: 1234, uid: 0, gid: 0 },
      { type: "block", path: "dev/vda", major: 254, minor: 0, mode: 0o600, mtime: 1234, uid: 0, gid: 0 },
      { type: "file", path: "empty", data: Buffer.alloc(0), mode: 0o644, mtime: 1234, uid: 0, gid: 0 },
      { type: "file", path: "init", data: Buffer.from("#!/bin/sh\nexec node\n"), mode: 0o755, mtime: 1234, uid: 0, gid: 0 },
      { type: "dir", path: "tmp", mode: 0o1777, mtime: 1234, uid: 0, gid: 0 },
    ]);
  });

  test("puts every parent before its children, whatever the input order", () => {
    const entries: CpioEntry[] = [
      { type: "file", path: "a/b/c/f", data: text("x") },
      { type: "dir", path: "a/b" },
      { type: "dir", path: "a" },
      { type: "file", path: "a-b", data: text("y") },
      { type: "dir", path: "a/b/c" },
    ];
    for (const reproducible of [true, false]) {
      const order = names(writeCpio(entries, { reproducible }));
      for (const [i, name] of order.entries()) {
        const parent = name.includes("/") ? name.slice(0, name.lastIndexOf("/")) : undefined;
        if (parent !== undefined) expect(order.indexOf(parent), `${name} in ${order.join(",")}`).toBeLessThan(i);
      }
    }
    expect(names(writeCpio(entries))).toEqual(["a", "a/b", "a/b/c", "a/b/c/f", "a-b"]);
  });

  test("adds missing parent directories with mode 0755 and the archive mtime", () => {
    const recs = decodeNewc(writeCpio([{ type: "file", path: "/usr/lib/node/x.js", data: text("1") }], { mtime: 77 }));
    expect(recs.map((r) => [r.name, r.mode.toString(8), r.mtime])).toEqual([
      ["usr", "40755", 77],
      ["usr/lib", "40755", 77],
      ["usr/lib/node", "40755", 77],
      ["usr/lib/node/x.js", "100644", 77],
    ]);
  });

  test("counts subdirectories in a directory's nlink, as a real tree would", () => {
    const recs = decodeNewc(writeCpio([{ type: "dir", path: "a/b" }, { type: "dir", path: "a/c" }, { type: "file", path: "a/f", data: text("") }]));
    expect(recs.map((r) => [r.name, r.nlink])).toEqual([["a", 4], ["a/b", 2], ["a/c", 2], ["a/f", 1]]);
  });

  test("numbers inodes sequentially from 0 and sets uid/gid 0 and the fixed mtime", () => {
    const recs = decodeNewc(
      writeCpio([
        { type: "file", path: "b", data: text("b"), uid: 1000, gid: 1000, mtime: 1_700_000_000 },
        { type: "file", path: "a", data: text("a"), uid: 5, gid: 6, mtime: 1_600_000_000 },
        { type: "dir", path: "c", mtime: 99 },
      ]),
    );
    expect(recs.map((r) => [r.name, r.ino, r.uid, r.gid, r.mtime])).toEqual([
      ["a", 0, 0, 0, 0],
      ["b", 1, 0, 0, 0],
      ["c", 2, 0, 0, 0],
    ]);
  });

  test("takes the fixed mtime from SOURCE_DATE_EPOCH unless given one", () => {
    vi.stubEnv("SOURCE_DATE_EPOCH", "1700000000");
    const entries: CpioEntry[] = [{ type: "file", path: "f", data: text("1"), mtime: 5 }];
    expect(decodeNewc(writeCpio(entries))[0]!.mtime).toBe(1_700_000_000);
    expect(decodeNewc(writeCpio(entries, { mtime: 3 }))[0]!.mtime).toBe(3);
    vi.stubEnv("SOURCE_DATE_EPOCH", "yesterday");
    expect(() => writeCpio(entries)).toThrow(InvalidError);
  });

  test("normalises paths: no leading slash, no empty or dot components", () => {
    expect(names(writeCpio([{ type: "file", path: "//usr/./bin//tool/", data: text("") }]))).toEqual(["usr", "usr/bin", "usr/bin/tool"]);
    expect(normaliseCpioPath("/a/./b/")).toBe("a/b");
  });

  test("refuses duplicate paths, naming the path", () => {
    const dup = () => writeCpio([{ type: "dir", path: "/etc" }, { type: "file", path: "etc/", data: text("") }]);
    expect(dup).toThrow(InvalidError);
    expect(dup).toThrow("duplicate path: etc");
    expect(() => writeCpio([{ type: "dir", path: "/etc" }, { type: "dir", path: "etc" }], { reproducible: false })).toThrow("duplicate path: etc");
  });

  test("refuses .., the root itself, NUL bytes and a non-directory parent", () => {
    expect(() => writeCpio([{ type: "dir", path: "a/../../etc" }])).toThrow(/may not contain "\.\."/);
    expect(() => writeCpio([{ type: "dir", path: "/" }])).toThrow(InvalidError);
    expect(() => writeCpio([{ type: "dir", path: "a\0b" }])).toThrow(InvalidError);
    expect(() => writeCpio([{ type: "file", path: "a", data: text("") }, { type: "file", path: "a/b", data: text("") }])).toThrow(
      "parent of a/b is a file, not a directory: a",
    );
  });

  test("refuses bad modes, empty symlink targets and fields that do not fit 32 bits", () => {
    expect(() => writeCpio([{ type: "file", path: "f", data: text(""), mode: 0o100644 }])).toThrow(/permission bits/);
    expect(() => writeCpio([{ type: "symlink", path: "l", target: "" }])).toThrow(InvalidError);
    expect(() => writeCpio([{ type: "char", path: "c", major: 2 ** 32, minor: 0 }])).toThrow(TooBigError);
    expect(() => writeCpio([{ type: "file", path: "f", data: text("") }], { mtime: -1 })).toThrow(InvalidError);
  });

  test("writes /dev/console as char 5,1 and /dev/null as char 1,3", () => {
    const recs = decodeNewc(
      writeCpio([
        { type: "char", path: "/dev/console", major: 5, minor: 1, mode: 0o600 },
        { type: "char", path: "/dev/null", major: 1, minor: 3, mode: 0o666 },
      ]),
    );
    const byName = new Map(recs.map((r) => [r.name, r]));
    expect(byName.get("dev/console")).toMatchObject({ mode: 0o020600, rdevMajor: 5, rdevMinor: 1, data: Buffer.alloc(0) });
    expect(byName.get("dev/null")).toMatchObject({ mode: 0o020666, rdevMajor: 1, rdevMinor: 3, data: Buffer.alloc(0) });
  });

  test("stores a symlink's target as its data, without a NUL", () => {
    const rec = decodeNewc(writeCpio([{ type: "symlink", path: "lib", target: "/usr/lib" }]))[0]!;
    expect(rec.mode).toBe(0o120777);
    expect(Buffer.from(rec.data).toString()).toBe("/usr/lib");
  });
});

describe("hard links", () => {
  const entries = (): { list: CpioEntry[]; calls: () => number } => {
    let n = 0;
    const list: CpioEntry[] = [
      { type: "hardlink", path: "/bin/sh", target: "/bin/busybox" },
      { type: "file", path: "/bin/busybox", data: () => (n++, text("BUSYBOX")), mode: 0o755 },
      { type: "hardlink", path: "/sbin/ip", target: "bin/sh" }, // a link to a link names the same file
      { type: "file", path: "/bin/other", data: text("o") },
    ];
    return { list, calls: () => n };
  };

  test("share one inode, carry nlink = names, and put the data on the last name only", () => {
    const { list, calls } = entries();
    const recs = decodeNewc(writeCpio(list));
    expect(calls()).toBe(1);
    const group = recs.filter((r) => ["bin/busybox", "bin/sh", "sbin/ip"].includes(r.name));
    expect(group.map((r) => r.name)).toEqual(["bin/busybox", "bin/sh", "sbin/ip"]);
    expect(new Set(group.map((r) => r.ino)).size).toBe(1);
    expect(group.map((r) => r.nlink)).toEqual([3, 3, 3]);
    expect(group.map((r) => r.data.length)).toEqual([0, 0, 7]);
    expect(group.every((r) => r.mode === 0o100755)).toBe(true);
    expect(recs.map((r) => r.ino)).toEqual([0, 1, 2, 1, 3, 1]); // bin, busybox, other, sh, sbin, ip
  });

  test("read back as one file and links to it, with the data", () => {
    const back = readCpio(writeCpio(entries().list));
    expect(back.find((e) => e.path === "bin/busybox")).toMatchObject({ type: "file", data: Buffer.from("BUSYBOX") });
    expect(back.find((e) => e.path === "bin/sh")).toMatchObject({ type: "hardlink", target: "bin/busybox" });
    expect(back.find((e) => e.path === "sbin/ip")).toMatchObject({ type: "hardlink", target: "bin/busybox" });
  });

  test("refuse a missing target (NotFoundError), a non-file target and a cycle", () => {
    expect(() => writeCpio([{ type: "hardlink", path: "a", target: "b" }])).toThrow(NotFoundError);
    expect(() => writeCpio([{ type: "hardlink", path: "a", target: "b" }])).toThrow("hard link a names a missing file: b");
    expect(() => writeCpio([{ type: "dir", path: "d" }, { type: "hardlink", path: "a", target: "d" }])).toThrow(/regular file, not a dir/);
    expect(() => writeCpio([{ type: "hardlink", path: "a", target: "b" }, { type: "hardlink", path: "b", target: "a" }])).toThrow(/cycle/);
  });
});

describe("reproducibility", () => {
  /** One build's view of the inputs: its own clock, owner and listing order. */
  const build = (clock: number, uid: number, reverse: boolean): CpioEntry[] => {
    const list: CpioEntry[] = [
      { type: "file", path: "/init", data: text("#!/bin/sh\n"), mode: 0o755, mtime: clock, uid, gid: uid },
      { type: "dir", path: "/etc", mtime: clock + 1, uid, gid: uid },
      { type: "file", path: "/etc/hostname", data: () => text("cohesix\n"), mtime: clock + 2, uid, gid: uid },
      { type: "symlink", path: "/bin/sh", target: "busybox", mtime: clock, uid, gid: uid },
      { type: "hardlink", path: "/bin/ls", target: "/bin/busybox", mtime: clock },
      { type: "file", path: "/bin/busybox", data: text("BB"), mode: 0o755, mtime: clock, uid, gid: uid },
    ];
    return reverse ? list.reverse() : list;
  };

  test("two builds with different clocks and orders differ without makeReproducible", () => {
    const one = writeCpio(build(1_700_000_000, 1000, false), { reproducible: false });
    const two = writeCpio(build(1_700_000_555, 1001, true), { reproducible: false });
    expect(one.equals(two)).toBe(false);
    // Not just the clock: the order alone differs too.
    const a = writeCpio(build(0, 0, false), { reproducible: false });
    const b = writeCpio(build(0, 0, true), { reproducible: false });
    expect(a.equals(b)).toBe(false);
  });

  test("the same builds are byte-identical with it", () => {
    const one = writeCpio(build(1_700_000_000, 1000, false));
    const two = writeCpio(build(1_700_000_555, 1001, true));
    expect(one.equals(two)).toBe(true);
    const viaTransform = writeCpio(makeReproducible(build(42, 7, true), { mtime: 0 }), { reproducible: false });
    expect(viaTransform.equals(one)).toBe(true);
  });

  test("makeReproducible is plain data in, plain data out, and does not call thunks", () => {
    const thunk = vi.fn(() => text("x"));
    const out = makeReproducible([{ type: "file", path: "/z", data: thunk, uid: 9 }, { type: "dir", path: "a", mtime: 9 }], { mtime: 5 });
    expect(out).toEqual([
      { type: "dir", path: "a", mtime: 5, uid: 0, gid: 0 },
      { type: "file", path: "z", data: thunk, mtime: 5, uid: 0, gid: 0 },
    ]);
    expect(thunk).not.toHaveBeenCalled();
  });

  test("writing what readCpio returns gives the same bytes", () => {
    const first = writeCpio(build(3, 3, false));
    expect(writeCpio(readCpio(first)).equals(first)).toBe(true);
  });
});

describe("readCpio", () => {
  const good = writeCpio([{ type: "file", path: "etc/hostname", data: text("cohesix\n") }]);

  test("refuses bad magic", () => {
    const bad = Buffer.from(good);
    bad.write("070707", 0, "latin1");
    expect(() => readCpio(bad)).toThrow(InvalidError);
    expect(() => readCpio(bad)).toThrow(/member 0 at byte 0: bad magic "070707"/);
  });

  test("refuses a truncated header", () => {
    expect(() => readCpio(good.subarray(0, 50))).toThrow(/truncated header \(50 of 110 bytes\)/);
  });

  test("refuses a name that overruns the archive", () => {
    const bad = Buffer.from(good);
    bad.write("0000FFFF", 6 + 11 * 8, "latin1");
    expect(() => readCpio(bad)).toThrow(/name overruns the archive \(namesize 65535/);
  });

  test("refuses data that overruns the archive", () => {
    const bad = Buffer.from(good);
    const hostname = bad.indexOf("etc/hostname") - 110;
    bad.write("00FFFFFF", hostname + 6 + 6 * 8, "latin1");
    expect(() => readCpio(bad)).toThrow(/"etc\/hostname"\): data overruns the archive/);
  });

  test("refuses an archive without its trailer", () => {
    const cut = good.subarray(0, good.lastIndexOf("070701")); // everything before the trailer
    expect(() => readCpio(cut)).toThrow(/missing TRAILER!!!: the archive ends after 2 members/);
  });

  test("refuses non-hex header fields and names without their NUL", () => {
    const bad = Buffer.from(good);
    bad.write("0000000G", 6, "latin1");
    expect(() => readCpio(bad)).toThrow(/ino is not 8 hex digits/);
    const noNul = Buffer.from(good);
    noNul[110 + 3] = 0x41; // "etc\0" -> "etcA"
    expect(() => readCpio(noNul)).toThrow(/not NUL-terminated/);
  });

  test("reads lowercase hex and ignores block padding after the trailer", () => {
    // Lowercase every header's hex fields (GNU cpio and the kernel write uppercase, but both read either).
    const lower = Buffer.from(good.toString("latin1").replace(/070701[0-9A-F]{104}/g, (h) => h.toLowerCase()), "latin1");
    expect(lower.equals(good)).toBe(false);
    const padded = Buffer.concat([lower, Buffer.alloc(512 - (lower.length % 512))]);
    expect(readCpio(padded).map((e) => e.path)).toEqual(["etc", "etc/hostname"]);
  });
});

test("sourceDateEpoch reads whole seconds and defaults to 0", () => {
  expect(sourceDateEpoch({})).toBe(0);
  expect(sourceDateEpoch({ SOURCE_DATE_EPOCH: "" })).toBe(0);
  expect(sourceDateEpoch({ SOURCE_DATE_EPOCH: "1700000000" })).toBe(1_700_000_000);
  expect(() => sourceDateEpoch({ SOURCE_DATE_EPOCH: "-1" })).toThrow(/not a whole number of seconds/);
  expect(() => sourceDateEpoch({ SOURCE_DATE_EPOCH: "1.5" })).toThrow(InvalidError);
});
