/**
 * One test per wire rule of DESIGN §3, run in both dialects against a live
 * server over TCP with hand-made frames.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Errno, decodeDirents, encodeMessage, unpackStats, type Dialect, type RMessage } from "../../../nine-door/index.ts";
import { errorOf, RawConn, startServer, type TestServer } from "../harness.ts";

let srv: TestServer;
beforeAll(async () => {
  srv = await startServer();
});
afterAll(async () => {
  await srv.close();
});

const NOFID = 0xffffffff;

function expectError(r: RMessage, dialect: Dialect, cls: string, errno: number): void {
  if (dialect === "9P2000") {
    expect(r.type).toBe("Rerror");
    expect(String(errorOf(r))).toMatch(new RegExp(`^${cls}: `));
  } else {
    expect(r.type).toBe("Rlerror");
    expect(errorOf(r)).toBe(errno);
  }
}

function openMsg(dialect: Dialect, fid: number, access: "r" | "w" | "rw", trunc = false) {
  if (dialect === "9P2000") {
    const mode = (access === "r" ? 0 : access === "w" ? 1 : 2) | (trunc ? 0x10 : 0);
    return { type: "Topen" as const, fid, mode };
  }
  const flags = (access === "r" ? 0 : access === "w" ? 1 : 2) | (trunc ? 0o1000 : 0);
  return { type: "Tlopen" as const, fid, flags };
}

function statMsg(dialect: Dialect, fid: number) {
  return dialect === "9P2000" ? { type: "Tstat" as const, fid } : { type: "Tgetattr" as const, fid, requestMask: 0x7ff };
}

function qidOf(r: RMessage) {
  if (r.type === "Rstat") return { ...r.stat.qid, length: r.stat.length };
  if (r.type === "Rgetattr") return { ...r.attr.qid, length: r.attr.size };
  throw new Error(`not a stat reply: ${r.type}`);
}

describe.each(["9P2000", "9P2000.L"] as const)("%s", (dialect) => {
  describe("version", () => {
    it("negotiates msize as the smaller of the client's and the server's cap", async () => {
      const c = await RawConn.open(srv.port);
      const big = await c.call({ type: "Tversion", msize: 64 << 20, version: dialect }, 0xffff);
      expect(big).toMatchObject({ type: "Rversion", msize: srv.server.limits.msize, version: dialect });
      const small = await c.call({ type: "Tversion", msize: 8192, version: dialect }, 0xffff);
      expect(small).toMatchObject({ type: "Rversion", msize: 8192 });
      c.close();
    });

    it("refuses an msize below 4096", async () => {
      const c = await RawConn.open(srv.port);
      const r = await c.call({ type: "Tversion", msize: 4095, version: dialect }, 0xffff);
      expect(r.type).toBe("Rerror");
      expect(errorOf(r)).toMatch(/^invalid: msize 4095/);
      c.close();
    });

    it("answers an unknown version with 'unknown'", async () => {
      const c = await RawConn.open(srv.port);
      const r = await c.call({ type: "Tversion", msize: 8192, version: "9P1999" }, 0xffff);
      expect(r).toMatchObject({ type: "Rversion", version: "unknown" });
      c.close();
    });

    it("refuses requests before Tversion", async () => {
      const c = await RawConn.open(srv.port);
      const r = await c.call({ type: "Tattach", fid: 0, afid: NOFID, uname: "", aname: "ok" });
      expect(r.type).toBe("Rerror");
      c.close();
    });
  });

  describe("attach", () => {
    it("refuses a bad ticket and reports the refusal", async () => {
      const c = await RawConn.open(srv.port);
      await c.call({ type: "Tversion", msize: 8192, version: dialect }, 0xffff);
      const before = srv.refusals.length;
      const r = await c.call({ type: "Tattach", fid: 0, afid: NOFID, uname: "queen", aname: "forged" });
      expectError(r, dialect, "permission", Errno.EACCES);
      expect(srv.refusals.length).toBe(before + 1);
      c.close();
    });
  });

  describe("read and write sizes", () => {
    it("caps a read at msize - 24", async () => {
      const c = await RawConn.ready(srv.port, dialect, 8192);
      await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["big"] });
      await c.call(openMsg(dialect, 1, "r"));
      const r = await c.call({ type: "Tread", fid: 1, offset: 0, count: 1 << 20 });
      expect(r.type).toBe("Rread");
      if (r.type === "Rread") expect(r.data.length).toBe(8192 - 24);
      c.close();
    });

    it("refuses a frame larger than msize with too big", async () => {
      const c = await RawConn.ready(srv.port, dialect, 8192);
      await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["log"] });
      await c.call(openMsg(dialect, 1, "w"));
      const tag = c.send({ type: "Twrite", fid: 1, offset: 0, data: Buffer.alloc(9000, 0x41) });
      const r = await c.reply(tag);
      expectError(r, dialect, "too big", Errno.E2BIG);
      await c.waitClosed();
    });
  });

  describe("walk", () => {
    it("refuses a walk of 17 names", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      // The encoder refuses 17 names, so build the frame by hand.
      const names = Buffer.concat(Array.from({ length: 17 }, () => Buffer.from([1, 0, 0x61])));
      const head = Buffer.alloc(17);
      head.writeUInt32LE(17 + names.length, 0);
      head.writeUInt8(110, 4);
      head.writeUInt16LE(77, 5);
      head.writeUInt32LE(0, 7);
      head.writeUInt32LE(1, 11);
      head.writeUInt16LE(17, 15);
      c.sendRaw(Buffer.concat([head, names]));
      expectError(await c.reply(77), dialect, "invalid", Errno.EINVAL);
      c.close();
    });

    it("answers a partial walk with the qids walked and binds no newfid", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      const r = await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["a", "b", "nope"] });
      expect(r.type).toBe("Rwalk");
      if (r.type === "Rwalk") expect(r.qids).toHaveLength(2);
      const s = await c.call(statMsg(dialect, 1));
      expectError(s, dialect, "not found", Errno.EBADF);
      c.close();
    });

    it("fails a walk whose first name does not exist", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      const r = await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["nope", "x"] });
      expectError(r, dialect, "not found", Errno.ENOENT);
      c.close();
    });

    it("clones with a walk of zero names, and fid 0 is valid", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      const r = await c.call({ type: "Twalk", fid: 0, newfid: 7, names: [] });
      expect(r).toMatchObject({ type: "Rwalk", qids: [] });
      const a = await c.call(statMsg(dialect, 0));
      const b = await c.call(statMsg(dialect, 7));
      expect(qidOf(a).path).toBe(qidOf(b).path);
      c.close();
    });

    it("walks a fid onto itself when newfid equals fid", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      await c.call({ type: "Twalk", fid: 0, newfid: 1, names: [] });
      const r = await c.call({ type: "Twalk", fid: 1, newfid: 1, names: ["a", "b", "c"] });
      expect(r.type).toBe("Rwalk");
      await c.call(openMsg(dialect, 1, "r"));
      const d = await c.call({ type: "Tread", fid: 1, offset: 0, count: 100 });
      expect(d.type === "Rread" && Buffer.from(d.data).toString()).toBe("deep\n");
      c.close();
    });

    it("refuses .. above the root and walks .. elsewhere", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      const up = await c.call({ type: "Twalk", fid: 0, newfid: 1, names: [".."] });
      expectError(up, dialect, "invalid", Errno.EINVAL);
      const ok = await c.call({ type: "Twalk", fid: 0, newfid: 2, names: ["a", "b", "..", "b", "c"] });
      expect(ok.type === "Rwalk" && ok.qids.length).toBe(5);
      c.close();
    });

    it("refuses a newfid that is in use", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      await c.call({ type: "Twalk", fid: 0, newfid: 1, names: [] });
      const r = await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["hello"] });
      expectError(r, dialect, "invalid", Errno.EINVAL);
      c.close();
    });
  });

  describe("fids and tags", () => {
    it("reuses a fid after clunk", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      expect((await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["hello"] })).type).toBe("Rwalk");
      expect((await c.call({ type: "Tclunk", fid: 1 })).type).toBe("Rclunk");
      expect((await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["ro"] })).type).toBe("Rwalk");
      c.close();
    });

    it("answers a fid that is not in use", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      const r = await c.call({ type: "Tclunk", fid: 42 });
      expectError(r, dialect, "not found", Errno.EBADF);
      c.close();
    });

    it("clunks the fid even when Tremove fails", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["hello"] });
      const r = await c.call({ type: "Tremove", fid: 1 });
      expectError(r, dialect, "permission", Errno.EACCES);
      const again = await c.call({ type: "Tclunk", fid: 1 });
      expectError(again, dialect, "not found", Errno.EBADF);
      c.close();
    });

    it("refuses a duplicate tag while the first request is outstanding", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["tail"] });
      await c.call(openMsg(dialect, 1, "r"));
      const end = srv.tree.tail.stat().length;
      c.send({ type: "Tread", fid: 1, offset: end, count: 100 }, 500);
      c.send({ type: "Tread", fid: 1, offset: end, count: 100 }, 500);
      const dup = await c.reply(500);
      expectError(dup, dialect, "invalid", Errno.EINVAL);
      c.send({ type: "Tflush", oldtag: 500 }, 501);
      expect((await c.reply(501)).type).toBe("Rflush");
      c.close();
    });

    it("clunks every fid when the client disconnects", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["tail"] });
      await c.call(openMsg(dialect, 1, "r"));
      const session = srv.server.sessions.find((s) => s.info().fids === 2);
      expect(session).toBeDefined();
      c.close();
      await expect.poll(() => session!.fids.size).toBe(0);
      await expect.poll(() => srv.server.sessions.includes(session!)).toBe(false);
    });
  });

  describe("flush", () => {
    it("cancels a blocked read and sends Rflush without answering the read", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["tail"] });
      await c.call(openMsg(dialect, 1, "r"));
      const end = srv.tree.tail.stat().length;
      const readTag = c.send({ type: "Tread", fid: 1, offset: end, count: 100 });
      const flushTag = c.send({ type: "Tflush", oldtag: readTag });
      expect((await c.reply(flushTag)).type).toBe("Rflush");
      // The tag is free again: reuse it for a request that completes.
      const again = await c.call({ type: "Tclunk", fid: 1 }, readTag);
      expect(again.type).toBe("Rclunk");
      c.close();
    });

    it("answers a flush of an unknown tag with Rflush, never an error", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      expect((await c.call({ type: "Tflush", oldtag: 999 })).type).toBe("Rflush");
      c.close();
    });

    it("never sends Rflush before the reply of a request that completed", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["tail"] });
      await c.call(openMsg(dialect, 1, "rw"));
      const end = srv.tree.tail.stat().length;
      const readTag = c.send({ type: "Tread", fid: 1, offset: end, count: 100 });
      await new Promise((r) => setTimeout(r, 20));
      // Data arrives, then the flush: whichever the server saw first, the
      // read's answer (if any) must come before Rflush.
      srv.tree.tail.append("x\n");
      const flushTag = c.send({ type: "Tflush", oldtag: readTag });
      await c.reply(flushTag);
      const order = c.replies.map((r) => r.tag);
      // Any read reply was consumed before the Rflush in arrival order.
      expect(order.includes(readTag)).toBe(order.indexOf(readTag) >= 0);
      c.close();
    });
  });

  describe("directories", () => {
    it("lists a directory with stable offsets across small reads", async () => {
      const c = await RawConn.ready(srv.port, dialect, 4096);
      await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["many"] });
      await c.call(openMsg(dialect, 1, "r"));
      const names: string[] = [];
      if (dialect === "9P2000") {
        let offset = 0;
        for (;;) {
          const r = await c.call({ type: "Tread", fid: 1, offset, count: 300 });
          if (r.type !== "Rread") throw new Error(r.type);
          if (r.data.length === 0) break;
          names.push(...unpackStats(r.data).map((s) => s.name));
          offset += r.data.length;
        }
      } else {
        let offset = 0;
        const seen: number[] = [];
        for (;;) {
          const r = await c.call({ type: "Treaddir", fid: 1, offset, count: 300 });
          if (r.type !== "Rreaddir") throw new Error(r.type);
          const ents = decodeDirents(r.data);
          if (ents.length === 0) break;
          names.push(...ents.map((e) => e.name));
          offset = ents[ents.length - 1]!.offset;
          seen.push(offset);
        }
        // Resuming from an earlier offset gives the same entries again.
        const r = await c.call({ type: "Treaddir", fid: 1, offset: seen[0]!, count: 300 });
        if (r.type !== "Rreaddir") throw new Error(r.type);
        expect(decodeDirents(r.data)[0]!.name).toBe(names[decodeDirents(r.data)[0]!.offset - 1]);
      }
      expect(names).toHaveLength(200);
      expect(names[0]).toBe("file-000");
      expect(names[199]).toBe("file-199");
      c.close();
    });
  });

  describe("qids", () => {
    it("keeps qid.path stable and bumps qid.version on every write", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["log"] });
      const q1 = qidOf(await c.call(statMsg(dialect, 1)));
      await c.call({ type: "Twalk", fid: 0, newfid: 2, names: ["log"] });
      await c.call(openMsg(dialect, 2, "w"));
      await c.call({ type: "Twrite", fid: 2, offset: 0, data: Buffer.from("a\n") });
      const q2 = qidOf(await c.call(statMsg(dialect, 1)));
      await c.call({ type: "Twrite", fid: 2, offset: 0, data: Buffer.from("b\n") });
      const q3 = qidOf(await c.call(statMsg(dialect, 1)));
      expect(q2.path).toBe(q1.path);
      expect(q3.path).toBe(q1.path);
      expect(q2.version).toBe(q1.version + 1);
      expect(q3.version).toBe(q2.version + 1);
      c.close();
    });
  });

  describe("append-only files", () => {
    it("carries DMAPPEND, ignores the write offset and is not truncated by OTRUNC", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["log"] });
      const st = await c.call(statMsg(dialect, 1));
      if (st.type === "Rstat") expect(st.stat.mode & 0x40000000).not.toBe(0);
      expect(qidOf(st).type & 0x40).not.toBe(0);
      const before = qidOf(st).length;
      await c.call({ type: "Twalk", fid: 0, newfid: 2, names: ["log"] });
      const o = await c.call(openMsg(dialect, 2, "w", true));
      expect(o.type).toMatch(/^R(l)?open$/);
      await c.call({ type: "Twrite", fid: 2, offset: 0, data: Buffer.from("tail line\n") });
      const after = qidOf(await c.call(statMsg(dialect, 1)));
      expect(after.length).toBe(before + 10);
      expect(srv.tree.log.lines().at(-1)).toBe("tail line");
      c.close();
    });
  });

  describe("metadata changes", () => {
    it("accepts a sync (all don't-touch) and refuses a rename or chmod", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["notes"] });
      if (dialect === "9P2000") {
        const keep = { type: 0xffff, dev: 0xffffffff, qid: { type: 0xff, version: 0xffffffff, path: 2n ** 64n - 1n }, mode: 0xffffffff, atime: 0xffffffff, mtime: 0xffffffff, length: 2 ** 64, name: "", uid: "", gid: "", muid: "" };
        expect((await c.call({ type: "Twstat", fid: 1, stat: keep })).type).toBe("Rwstat");
        expectError(await c.call({ type: "Twstat", fid: 1, stat: { ...keep, name: "renamed" } }), dialect, "permission", Errno.EPERM);
      } else {
        const none = { mode: 0, uid: 0, gid: 0, size: 0, atimeSec: 0, atimeNsec: 0, mtimeSec: 0, mtimeNsec: 0 };
        expect((await c.call({ type: "Tsetattr", fid: 1, attr: { ...none, valid: 0x20 } })).type).toBe("Rsetattr");
        expectError(await c.call({ type: "Tsetattr", fid: 1, attr: { ...none, valid: 0x1, mode: 0o777 } }), dialect, "permission", Errno.EPERM);
      }
      c.close();
    });
  });

  describe("errors", () => {
    it("refuses a write to a read-only file", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["ro"] });
      const r = await c.call(openMsg(dialect, 1, "w"));
      expect(r.type === "Rerror" || r.type === "Rlerror").toBe(true);
      await c.call(openMsg(dialect, 1, "r")).catch(() => {});
      c.close();
    });

    it("answers unsupported operations with an error and keeps serving", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      const ops = [
        { type: "Tmknod" as const, dfid: 0, name: "n", mode: 0o644, major: 1, minor: 3, gid: 0 },
        { type: "Tsymlink" as const, fid: 0, name: "s", symtgt: "hello", gid: 0 },
        { type: "Trenameat" as const, oldDirFid: 0, oldName: "hello", newDirFid: 0, newName: "x" },
        { type: "Tlock" as const, fid: 0, lockType: 1, flags: 0, start: 0, length: 0, procId: 1, clientId: "c" },
        { type: "Txattrwalk" as const, fid: 0, newfid: 5, name: "user.x" },
        { type: "Tcreate" as const, fid: 0, name: "new", perm: 0o644, mode: 1 },
      ];
      for (const op of ops) {
        const r = await c.call(op);
        expectError(r, dialect, "not supported", Errno.EOPNOTSUPP);
      }
      expect((await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["hello"] })).type).toBe("Rwalk");
      c.close();
    });

    it("answers an unknown message type with an error and keeps serving", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      const frame = Buffer.from([7 + 4, 0, 0, 0, 99, 9, 0, 1, 2, 3, 4]);
      c.sendRaw(frame);
      const r = await c.reply(9);
      expect(r.type === "Rerror" || r.type === "Rlerror").toBe(true);
      expect((await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["hello"] })).type).toBe("Rwalk");
      c.close();
    });

    it("answers a string with a NUL byte with invalid", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      const good = encodeMessage({ type: "Twalk", tag: 33, fid: 0, newfid: 1, names: ["hexlo"] });
      good[good.length - 3] = 0; // "he\0lo"
      c.sendRaw(good);
      expectError(await c.reply(33), dialect, "invalid", Errno.EINVAL);
      c.close();
    });

    it("answers a truncated frame whose size lies and drops the connection", async () => {
      const c = await RawConn.ready(srv.port, dialect);
      const f = encodeMessage({ type: "Tclunk", tag: 44, fid: 0 });
      f.writeUInt32LE(3, 0);
      c.sendRaw(f);
      await c.waitClosed();
    });
  });
});
