import { describe, expect, it } from "vitest";
import { DirMode, QidType } from "../../../nine-door/wire/types.ts";
import { ClosedError, InvalidError, NineError, PermissionError, TooBigError } from "../../../nine-door/errors.ts";
import { AppendLog, validateJsonLines } from "../../../nine-door/fs/index.ts";
import type { AppendEvent } from "../../../nine-door/fs/index.ts";
import { READ, RDWR, WRITE, bytes, caught, ctx, runProviderConformance, text } from "./conformance.ts";

runProviderConformance("AppendLog", () => {
  const log = new AppendLog("queen.log");
  log.append("spawned worker-1 role=heartbeat\n");
  return log;
});
runProviderConformance("writable AppendLog", () => new AppendLog("telemetry", { writable: true }));
runProviderConformance("AppendLog with blocking reads", () => new AppendLog("telemetry", { writable: true, blockingReads: true }), {
  blockingReads: true,
});
runProviderConformance("AppendLog with an asynchronous validator", () =>
  new AppendLog("telemetry", { writable: true, validate: async (d) => validateJsonLines(d) }), { sample: bytes('{"tick":1}\n') });

const TRUNC_WRITE = { read: false, write: true, truncate: true };

describe("AppendLog", () => {
  it("is append-only by mode and qid type", () => {
    const log = new AppendLog("l");
    expect((log.mode & DirMode.APPEND) >>> 0).toBe(DirMode.APPEND);
    expect(log.qid.type).toBe(QidType.APPEND);
  });

  it("ignores the write offset and appends at the end", async () => {
    const log = new AppendLog("l", { writable: true });
    const f = await log.open(RDWR, ctx());
    await f.write(0, bytes("one\n"), ctx());
    await f.write(0, bytes("two\n"), ctx());
    await f.write(1000, bytes("three\n"), ctx());
    expect(log.lines()).toEqual(["one", "two", "three"]);
    expect(text(await f.read(0, 100, ctx()))).toBe("one\ntwo\nthree\n");
  });

  it("does not truncate on OTRUNC", async () => {
    const log = new AppendLog("l", { writable: true });
    log.append("kept\n");
    const f = await log.open(TRUNC_WRITE, ctx());
    await f.write(0, bytes("more\n"), ctx());
    expect(log.lines()).toEqual(["kept", "more"]);
  });

  it("is not writable by clients unless asked, while the owner may always append", async () => {
    const log = new AppendLog("queen.log");
    expect(await caught(() => log.open(WRITE, ctx()))).toBeInstanceOf(PermissionError);
    expect(log.append("spawned worker-1\n")).toBe(0);
    expect(log.append(bytes("spawned worker-2\n"))).toBe(17);
  });

  it("drops whole old lines past retainBytes but keeps offsets absolute", async () => {
    const log = new AppendLog("l", { retainBytes: 10 });
    log.append("aaaa\n"); // 0..5
    log.append("bbbb\n"); // 5..10
    const reader = await log.open(READ, ctx());
    expect(text(await reader.read(5, 5, ctx()))).toBe("bbbb\n");
    log.append("cccc\n"); // 10..15: drops "aaaa\n"
    expect(log.base).toBe(5);
    expect(log.end).toBe(15);
    expect(log.stat().length).toBe(15);
    expect(log.lines()).toEqual(["bbbb", "cccc"]);
    // The reader's offset 10 still means the first byte of "cccc".
    expect(text(await reader.read(10, 100, ctx()))).toBe("cccc\n");
    log.append("dd\n"); // 15..18: drops "bbbb\n"
    expect(log.base).toBe(10);
    expect(text(await reader.read(12, 100, ctx()))).toBe("cc\ndd\n");
  });

  it("keeps the newest lines exact through many compactions of a full log", () => {
    // Lines of varying length around a 4 KiB retention exercise the buffer's
    // compaction and its growth near the retention (see #reserve).
    const log = new AppendLog("l", { retainBytes: 4096 });
    const all: string[] = [];
    let end = 0;
    for (let i = 0; i < 5000; i++) {
      const line = `${i} ${"x".repeat(i % 97)}\n`;
      expect(log.append(line)).toBe(end);
      end += line.length;
      all.push(line);
    }
    const kept = log.lines().map((l) => `${l}\n`);
    expect(kept).toEqual(all.slice(all.length - kept.length));
    expect(log.end).toBe(end);
    expect(log.end - log.base).toBeLessThanOrEqual(4096);
    expect(log.end - log.base).toBeGreaterThan(4096 - 110);
  });

  it("keeps a single line longer than retainBytes whole", () => {
    const log = new AppendLog("l", { retainBytes: 4 });
    log.append("ab\n");
    log.append("a very long line\n");
    expect(log.lines()).toEqual(["a very long line"]);
    log.append("unterminated and long");
    expect(log.lines()).toEqual(["unterminated and long"]);
    expect(log.end).toBe(3 + 17 + 21);
  });

  it("returns data from base for a read below it, once, then continues after it", async () => {
    const log = new AppendLog("l", { retainBytes: 8 });
    for (const line of ["11\n", "22\n", "33\n", "44\n", "55\n"]) log.append(line);
    expect(log.base).toBe(9);
    const cat = await log.open(READ, ctx());
    let offset = 0;
    let seen = "";
    for (;;) {
      const chunk = await cat.read(offset, 2, ctx());
      if (chunk.length === 0) break;
      seen += text(chunk);
      offset += chunk.length;
    }
    expect(seen).toBe("44\n55\n");
  });

  it("refuses a client write larger than maxWrite", async () => {
    const log = new AppendLog("l", { writable: true, maxWrite: 4 });
    const f = await log.open(WRITE, ctx());
    expect(await caught(() => f.write(0, bytes("12345"), ctx()))).toBeInstanceOf(TooBigError);
    expect(await f.write(0, bytes("1234"), ctx())).toBe(4);
  });

  it("runs the validator on client writes and refuses what it rejects", async () => {
    const log = new AppendLog("telemetry", { writable: true, validate: validateJsonLines });
    const f = await log.open(WRITE, ctx());
    await f.write(0, bytes('{"tick":1,"load":0.5}\n'), ctx());
    const err = await caught(() => f.write(0, bytes("tick=2\n"), ctx()));
    expect(err).toBeInstanceOf(InvalidError);
    expect((err as Error).message).toBe("invalid: telemetry line 1 is not a JSON object");
    expect(await caught(() => f.write(0, bytes('{"tick":3}'), ctx()))).toBeInstanceOf(InvalidError);
    expect(log.lines()).toEqual(['{"tick":1,"load":0.5}']);
  });

  it("keeps arrival order when an asynchronous validator finishes out of order", async () => {
    const delays = [30, 0, 10];
    const log = new AppendLog("l", {
      writable: true,
      validate: async (data) => {
        const d = delays.shift() ?? 0;
        await new Promise((r) => setTimeout(r, d));
        if (text(data).startsWith("bad")) throw new InvalidError("bad line");
      },
    });
    const f = await log.open(WRITE, ctx());
    const results = await Promise.allSettled([
      f.write(0, bytes("first\n"), ctx()),
      f.write(0, bytes("bad\n"), ctx()),
      f.write(0, bytes("third\n"), ctx()),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(log.lines()).toEqual(["first", "third"]);
  });

  it("returns empty at the end without blockingReads", async () => {
    const log = new AppendLog("l");
    log.append("x\n");
    const f = await log.open(READ, ctx());
    expect((await f.read(2, 10, ctx())).length).toBe(0);
  });

  it("wakes a blocked tail read when data is appended", async () => {
    const log = new AppendLog("l", { blockingReads: true });
    log.append("old\n");
    const f = await log.open(READ, ctx());
    const pending = Promise.resolve(f.read(4, 100, ctx()));
    await new Promise((r) => setTimeout(r, 5));
    log.append("new\n");
    expect(text(await pending)).toBe("new\n");
  });

  it("fails blocked reads with closed when the log is closed, and refuses later writes", async () => {
    const log = new AppendLog("l", { writable: true, blockingReads: true });
    const f = await log.open(RDWR, ctx());
    const pending = Promise.resolve(f.read(0, 100, ctx()));
    log.close("worker-3 killed");
    const err = await caught(() => pending);
    expect(err).toBeInstanceOf(ClosedError);
    expect((err as Error).message).toBe("closed: worker-3 killed");
    expect(await caught(() => f.write(0, bytes("x"), ctx()))).toBeInstanceOf(ClosedError);
    expect(() => log.append("x")).toThrow(ClosedError);
  });

  it("throws the abort reason when it is a NineError", async () => {
    const log = new AppendLog("l", { blockingReads: true });
    const f = await log.open(READ, ctx());
    const ac = new AbortController();
    const pending = Promise.resolve(f.read(0, 10, ctx({ signal: ac.signal })));
    ac.abort(new ClosedError("tick budget exhausted"));
    const err = await caught(() => pending);
    expect((err as NineError).message).toBe("closed: tick budget exhausted");
  });

  it("tells onAppend listeners about client and owner appends until unsubscribed", async () => {
    const log = new AppendLog("l", { writable: true });
    const events: AppendEvent[] = [];
    const stop = log.onAppend((e) => events.push(e));
    log.onAppend(() => {
      throw new Error("a bad listener");
    });
    log.append("owner\n");
    const f = await log.open(WRITE, ctx({ caller: { role: "worker-heartbeat", subject: "worker-1" } }));
    await f.write(0, bytes("client\n"), ctx({ caller: { role: "worker-heartbeat", subject: "worker-1" } }));
    stop();
    log.append("unseen\n");
    expect(events.map((e) => [e.offset, text(e.data), e.by])).toEqual([
      [0, "owner\n", "cohesix"],
      [6, "client\n", "worker-1"],
    ]);
    expect(log.lines()).toEqual(["owner", "client", "unseen"]);
  });

  it("bumps the version on every append", () => {
    const log = new AppendLog("l");
    log.append("a\n");
    log.append("b\n");
    expect(log.qid.version).toBe(2);
  });
});
