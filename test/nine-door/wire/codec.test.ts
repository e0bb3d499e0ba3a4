import { describe, expect, test } from "vitest";
import { InvalidError, TooBigError } from "../../../nine-door/errors.ts";
import {
  decodeDirents,
  decodeMessage,
  direntSize,
  encodeMessage,
  encodeMessageChunks,
  messageNameById,
  messageTable,
  packDirents,
  packStat,
  statSize,
  unpackStats,
  type Dirent,
  type Message,
  type MessageName,
} from "../../../nine-door/wire/index.ts";
import { allNames, qid, samples, stat, withSize } from "./samples.ts";

/** Little-endian bytes from [width, value] pairs; strings become name[s]. */
function le(...fields: ([1 | 2 | 4 | 8, number | bigint] | string)[]): Buffer {
  const parts = fields.map((f) => {
    if (typeof f === "string") {
      const s = Buffer.from(f, "utf8");
      const b = Buffer.alloc(2 + s.length);
      b.writeUInt16LE(s.length, 0);
      s.copy(b, 2);
      return b;
    }
    const [width, v] = f;
    const b = Buffer.alloc(width);
    if (width === 8) b.writeBigUInt64LE(BigInt(v), 0);
    else b.writeUIntLE(Number(v), 0, width);
    return b;
  });
  return Buffer.concat(parts);
}

function frame(typeId: number, tag: number, body: Buffer): Buffer {
  return withSize(Buffer.concat([le([4, 0], [1, typeId], [2, tag]), body]));
}

function decoded(bytes: Uint8Array): Message {
  const r = decodeMessage(bytes);
  if (!r.ok) throw r.error;
  return r.message;
}

function refused(bytes: Uint8Array) {
  const r = decodeMessage(bytes);
  if (r.ok) throw new Error(`expected a refusal, got ${r.message.type}`);
  return r;
}

describe("the message table", () => {
  test("has an entry for every message name in types.ts and no other", () => {
    expect(Object.keys(messageTable).sort()).toEqual([...allNames].sort());
  });

  test("gives every message a distinct type number", () => {
    const ids = Object.values(messageTable).map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  test("uses the numbers of 9P2000 and 9P2000.L", () => {
    expect(messageTable.Tversion.id).toBe(100);
    expect(messageTable.Rerror.id).toBe(107);
    expect(messageTable.Rwstat.id).toBe(127);
    expect(messageTable.Rlerror.id).toBe(7);
    expect(messageTable.Tgetattr.id).toBe(24);
    expect(messageTable.Treaddir.id).toBe(40);
    expect(messageTable.Tunlinkat.id).toBe(76);
  });

  test("answers each R-message number as its T-message number plus one", () => {
    for (const name of allNames) {
      if (!name.startsWith("T")) continue;
      const reply = `R${name.slice(1)}` as MessageName;
      expect(messageTable[reply].id, reply).toBe(messageTable[name].id + 1);
    }
  });

  test("messageNameById() maps numbers back to names", () => {
    for (const name of allNames) expect(messageNameById(messageTable[name].id)).toBe(name);
    expect(messageNameById(106)).toBeUndefined();
    expect(messageNameById(0)).toBeUndefined();
  });
});

describe("round trips", () => {
  test.each(allNames.map((n) => [n]))("%s decodes to what was encoded", (name) => {
    const msg = samples[name];
    const bytes = encodeMessage(msg);
    expect(bytes.readUInt32LE(0)).toBe(bytes.length);
    expect(bytes[4]).toBe(messageTable[name].id);
    expect(bytes.readUInt16LE(5)).toBe(msg.tag);
    const back = decoded(bytes);
    expect(back).toStrictEqual(msg);
    expect(encodeMessage(back).equals(bytes)).toBe(true);
  });

  test.each(allNames.map((n) => [n]))("encodeMessageChunks() of %s gives the same bytes", (name) => {
    const msg = samples[name];
    const chunks = encodeMessageChunks(msg);
    expect(Buffer.concat(chunks).equals(encodeMessage(msg))).toBe(true);
    expect(chunks.length).toBe(name === "Rread" || name === "Twrite" || name === "Rreaddir" ? 2 : 1);
  });

  test("encodeMessageChunks() hands back the message's own data without copying", () => {
    const data = new Uint8Array(1 << 20).fill(7);
    const [header, payload] = encodeMessageChunks({ type: "Rread", tag: 1, data });
    expect(header!.length).toBe(11);
    expect(header!.readUInt32LE(0)).toBe(11 + data.length);
    expect(payload!.buffer).toBe(data.buffer);
    const [wh, wp] = encodeMessageChunks({ type: "Twrite", tag: 2, fid: 3, offset: 4, data });
    expect(wh!.length).toBe(23);
    expect(wp!.buffer).toBe(data.buffer);
  });

  test("decodeMessage() returns data as a view into the frame", () => {
    for (const name of ["Rread", "Twrite", "Rreaddir"] as const) {
      const bytes = encodeMessage(samples[name]);
      const m = decoded(bytes);
      if (!("data" in m)) throw new Error("no data");
      expect(m.data.buffer).toBe(bytes.buffer);
      bytes[bytes.length - 1] ^= 0xff;
      expect(m.data[m.data.length - 1]).toBe(bytes[bytes.length - 1]);
    }
  });

  test("Tattach and Tauth carry n_uname only when it is given (9P2000 omits it)", () => {
    const plain = { type: "Tattach", tag: 1, fid: 0, afid: 0xffffffff, uname: "u", aname: "a" } as const;
    const dotL = { ...plain, nUname: 0 };
    expect(encodeMessage(dotL).length).toBe(encodeMessage(plain).length + 4);
    expect(decoded(encodeMessage(plain))).toStrictEqual(plain);
    expect(decoded(encodeMessage(dotL))).toStrictEqual(dotL);
    const auth = { type: "Tauth", tag: 1, afid: 1, uname: "u", aname: "" } as const;
    expect(decoded(encodeMessage(auth))).toStrictEqual(auth);
  });

  test("Tfsync carries datasync only when it is given", () => {
    const old = { type: "Tfsync", tag: 1, fid: 4 } as const;
    expect(encodeMessage(old).length).toBe(11);
    expect(decoded(encodeMessage(old))).toStrictEqual(old);
  });

  test("a u64 of ~0 (wstat's 'don't touch') survives a round trip", () => {
    const keep = { ...stat, length: 2 ** 64, qid: { type: 0xff, version: 0xffffffff, path: 2n ** 64n - 1n } };
    const bytes = encodeMessage({ type: "Twstat", tag: 1, fid: 1, stat: keep });
    // size[4] type[1] tag[2] fid[4] n[2] size[2] type[2] dev[4] qid[13] mode[4] atime[4] mtime[4]
    expect(bytes.readBigUInt64LE(46)).toBe(2n ** 64n - 1n);
    expect(encodeMessage(decoded(bytes)).equals(bytes)).toBe(true);
  });
});

describe("golden bytes", () => {
  test("Tversion matches intro(5): size[4] 100 tag[2] msize[4] version[s]", () => {
    const bytes = encodeMessage({ type: "Tversion", tag: 0xffff, msize: 8192, version: "9P2000.L" });
    expect(bytes.toString("hex")).toBe("15000000" + "64" + "ffff" + "00200000" + "0800" + "3950323030302e4c");
  });

  test("Twalk matches walk(5): fid[4] newfid[4] nwname[2] nwname*(wname[s])", () => {
    const bytes = encodeMessage({ type: "Twalk", tag: 1, fid: 0, newfid: 1, names: ["proc", "boot"] });
    expect(bytes.toString("hex")).toBe(
      "1d000000" + "6e" + "0100" + "00000000" + "01000000" + "0200" + "0400" + "70726f63" + "0400" + "626f6f74",
    );
  });

  test("Rgetattr matches the 9P2000.L layout field by field", () => {
    const a = samples.Rgetattr.attr;
    const expected = frame(25, 21, le(
      [8, a.valid], [1, qid.type], [4, qid.version], [8, qid.path],
      [4, a.mode], [4, a.uid], [4, a.gid],
      [8, a.nlink], [8, a.rdev], [8, a.size], [8, a.blksize], [8, a.blocks],
      [8, a.atimeSec], [8, a.atimeNsec], [8, a.mtimeSec], [8, a.mtimeNsec],
      [8, a.ctimeSec], [8, a.ctimeNsec], [8, a.btimeSec], [8, a.btimeNsec],
      [8, a.gen], [8, a.dataVersion],
    ));
    expect(expected.length).toBe(7 + 153);
    expect(encodeMessage(samples.Rgetattr).toString("hex")).toBe(expected.toString("hex"));
  });

  test("Rreaddir matches count[4] then qid[13] offset[8] type[1] name[s] per entry", () => {
    const entries: Dirent[] = [
      { qid, offset: 1, type: 4, name: "." },
      { qid: { type: 0, version: 3, path: 9n }, offset: 2, type: 8, name: "boot" },
    ];
    const { data, count } = packDirents(entries, 1000);
    expect(count).toBe(2);
    const body = le(
      [1, qid.type], [4, qid.version], [8, qid.path], [8, 1], [1, 4], ".",
      [1, 0], [4, 3], [8, 9n], [8, 2], [1, 8], "boot",
    );
    expect(data.toString("hex")).toBe(body.toString("hex"));
    const bytes = encodeMessage({ type: "Rreaddir", tag: 5, data });
    expect(bytes.toString("hex")).toBe(frame(41, 5, Buffer.concat([le([4, body.length]), body])).toString("hex"));
  });

  test("Tsetattr, Tlock, Rstatfs and Tlcreate match the 9P2000.L layouts", () => {
    const sa = samples.Tsetattr.attr;
    expect(encodeMessage(samples.Tsetattr).equals(frame(26, 22, le(
      [4, 1], [4, sa.valid], [4, sa.mode], [4, sa.uid], [4, sa.gid], [8, sa.size],
      [8, sa.atimeSec], [8, sa.atimeNsec], [8, sa.mtimeSec], [8, sa.mtimeNsec],
    )))).toBe(true);
    const l = samples.Tlock;
    expect(encodeMessage(l).equals(frame(52, 27, le(
      [4, l.fid], [1, l.lockType], [4, l.flags], [8, l.start], [8, l.length], [4, l.procId], l.clientId,
    )))).toBe(true);
    const f = samples.Rstatfs;
    expect(encodeMessage(f).equals(frame(9, 14, le(
      [4, f.fsType], [4, f.bsize], [8, f.blocks], [8, f.bfree], [8, f.bavail], [8, f.files], [8, f.ffree],
      [8, f.fsid], [4, f.namelen],
    )))).toBe(true);
    const c = samples.Tlcreate;
    expect(encodeMessage(c).equals(frame(14, 16, le([4, c.fid], c.name, [4, c.flags], [4, c.mode], [4, c.gid]))))
      .toBe(true);
  });

  test("Rstat carries n[2] before the stat, which starts with its own size[2] (stat(5))", () => {
    const bytes = encodeMessage(samples.Rstat);
    const n = bytes.readUInt16LE(7);
    expect(n).toBe(statSize(stat));
    expect(bytes.readUInt16LE(9)).toBe(n - 2);
    expect(bytes.length).toBe(7 + 2 + n);
    expect(bytes.subarray(9).equals(packStat(stat))).toBe(true);
  });
});

describe("stat and dirent helpers", () => {
  test("statSize() counts 49 fixed bytes plus the strings", () => {
    expect(statSize({ ...stat, name: "", uid: "", gid: "", muid: "" })).toBe(49);
    expect(statSize(stat)).toBe(49 + 9 + 5 + 7 + 8);
  });

  test("unpackStats() reads back what packStat() wrote", () => {
    const two = Buffer.concat([packStat(stat), packStat({ ...stat, name: "ctl" })]);
    expect(unpackStats(two)).toStrictEqual([stat, { ...stat, name: "ctl" }]);
    expect(unpackStats(new Uint8Array(0))).toStrictEqual([]);
  });

  test("unpackStats() refuses a truncated record", () => {
    const one = packStat(stat);
    expect(() => unpackStats(one.subarray(0, one.length - 1))).toThrow(InvalidError);
  });

  test("unpackStats() refuses a record whose size disagrees with its fields", () => {
    const one = Buffer.from(packStat(stat));
    one.writeUInt16LE(one.readUInt16LE(0) - 1, 0);
    expect(() => unpackStats(one)).toThrow(/stat record 0/);
  });

  test("packDirents() packs only whole entries that fit", () => {
    const entries: Dirent[] = ["a", "bb", "ccc"].map((name, i) => ({ qid, offset: i + 1, type: 0, name }));
    const fit = direntSize("a") + direntSize("bb");
    const { data, count } = packDirents(entries, fit + direntSize("ccc") - 1);
    expect(count).toBe(2);
    expect(data.length).toBe(fit);
    expect(decodeDirents(data)).toStrictEqual(entries.slice(0, 2));
    expect(packDirents(entries, 10)).toMatchObject({ count: 0 });
  });

  test("decodeDirents() refuses a truncated entry", () => {
    const { data } = packDirents([{ qid, offset: 1, type: 0, name: "abc" }], 100);
    expect(() => decodeDirents(data.subarray(0, data.length - 1))).toThrow(InvalidError);
  });
});

describe("encodeMessage() refusals", () => {
  test("encodeMessage() refuses a walk of 17 names", () => {
    const names = Array.from({ length: 17 }, (_, i) => `n${i}`);
    expect(() => encodeMessage({ type: "Twalk", tag: 1, fid: 0, newfid: 1, names })).toThrow(InvalidError);
  });

  test("encodeMessage() refuses a string longer than 65535 bytes", () => {
    expect(() => encodeMessage({ type: "Rerror", tag: 1, ename: "x".repeat(65536) })).toThrow(TooBigError);
    expect(encodeMessage({ type: "Rerror", tag: 1, ename: "x".repeat(65535) }).length).toBe(7 + 2 + 65535);
  });
});

describe("malformed frames", () => {
  test("decodeMessage() refuses a frame shorter than the header", () => {
    const r = refused(Buffer.from([6, 0, 0, 0, 110, 1]));
    expect(r.error).toBeInstanceOf(InvalidError);
    expect(r.error.detail).toMatch(/shorter than the 7-byte header/);
    expect(r.typeId).toBe(110);
    expect(r.tag).toBeUndefined();
  });

  test("decodeMessage() refuses a size field that lies, keeping the tag", () => {
    const bytes = Buffer.from(encodeMessage(samples.Tclunk));
    bytes.writeUInt32LE(bytes.length + 1, 0);
    const r = refused(bytes);
    expect(r.error.detail).toMatch(/size field says 12 bytes but the frame has 11/);
    expect(r.tag).toBe(8);
    expect(r.typeId).toBe(120);
  });

  test("decodeMessage() refuses an unknown type number, keeping the tag", () => {
    const r = refused(frame(99, 0x1234, le([4, 1])));
    expect(r.error.detail).toBe("unknown message type 99");
    expect(r).toMatchObject({ tag: 0x1234, typeId: 99 });
  });

  test("decodeMessage() refuses trailing bytes", () => {
    const r = refused(withSize(Buffer.concat([encodeMessage(samples.Tclunk), Buffer.from([0, 0, 0])])));
    expect(r.error.detail).toBe("Tclunk: 3 trailing bytes");
    expect(r.tag).toBe(8);
  });

  test("decodeMessage() refuses a body that ends early", () => {
    const full = encodeMessage(samples.Tattach);
    const r = refused(withSize(full.subarray(0, full.length - 3)));
    expect(r.error).toBeInstanceOf(InvalidError);
    expect(r.error.detail).toBe("Tattach: frame ends early");
    expect(r.tag).toBe(2);
  });

  test("decodeMessage() refuses a string containing NUL", () => {
    const r = refused(frame(110, 3, le([4, 0], [4, 1], [2, 1], "a\0b")));
    expect(r.error.detail).toMatch(/^Twalk: string at byte 17 contains NUL$/);
    expect(r.tag).toBe(3);
  });

  test("decodeMessage() refuses a string that is not UTF-8", () => {
    const body = Buffer.concat([le([4, 0], [4, 1], [2, 1], [2, 2]), Buffer.from([0xc3, 0x28])]);
    const r = refused(frame(110, 4, body));
    expect(r.error.detail).toMatch(/not valid UTF-8/);
    expect(r.tag).toBe(4);
  });

  test("decodeMessage() refuses a walk of 17 names", () => {
    const names = Array.from({ length: 17 }, (_, i) => `n${i}` as const);
    const r = refused(frame(110, 5, le([4, 0], [4, 1], [2, 17], ...names)));
    expect(r.error).toBeInstanceOf(InvalidError);
    expect(r.error.detail).toContain("walk of 17 names exceeds 16");
    expect(r).toMatchObject({ tag: 5, typeId: 110 });
  });

  test("decodeMessage() accepts a walk of 16 names and of none", () => {
    const names = Array.from({ length: 16 }, (_, i) => `n${i}`);
    expect(decoded(frame(110, 5, le([4, 0], [4, 1], [2, 16], ...names)))).toMatchObject({ names });
    expect(decoded(frame(110, 5, le([4, 0], [4, 1], [2, 0])))).toMatchObject({ names: [] });
  });

  test("decodeMessage() refuses an Rwalk of 17 qids", () => {
    const q = Buffer.alloc(13);
    const r = refused(frame(111, 6, Buffer.concat([le([2, 17]), ...Array.from({ length: 17 }, () => q)])));
    expect(r.error.detail).toContain("walk of 17 qids exceeds 16");
    expect(r.tag).toBe(6);
  });

  test("decodeMessage() refuses an Rread whose count exceeds the bytes left", () => {
    const r = refused(frame(117, 7, Buffer.concat([le([4, 100]), Buffer.alloc(10)])));
    expect(r.error.detail).toBe("Rread: Rread count 100 exceeds the 10 bytes left");
    expect(r.tag).toBe(7);
  });

  test("decodeMessage() refuses a Twrite whose count exceeds the bytes left", () => {
    const r = refused(frame(118, 8, Buffer.concat([le([4, 1], [8, 0], [4, 0xffffffff]), Buffer.alloc(3)])));
    expect(r.error.detail).toMatch(/Twrite count 4294967295 exceeds the 3 bytes left/);
    expect(r.tag).toBe(8);
  });

  test("decodeMessage() refuses an Rstat whose n disagrees with the stat", () => {
    const bytes = Buffer.from(encodeMessage(samples.Rstat));
    bytes.writeUInt16LE(bytes.readUInt16LE(7) - 1, 7);
    const r = refused(bytes);
    expect(r.error.detail).toMatch(/stat field says/);
    expect(r.tag).toBe(11);
  });

  test("decodeMessage() refuses 2 stray bytes after aname instead of reading n_uname", () => {
    const ok = encodeMessage({ ...samples.Tattach });
    const r = refused(withSize(Buffer.concat([ok, Buffer.from([1, 2])])));
    expect(r.error.detail).toBe("Tattach: 2 trailing bytes");
  });
});
