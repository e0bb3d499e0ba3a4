import { describe, expect, it } from "vitest";
import { DirMode, QidType } from "../../../nine-door/wire/types.ts";
import { Errno, InvalidError, NotFoundError, PermissionError, TooBigError } from "../../../nine-door/errors.ts";
import {
  BaseNode,
  Directory,
  GeneratedFile,
  StaticFile,
  nextQidPath,
  readAt,
  toBytes,
} from "../../../nine-door/fs/index.ts";
import type { Node, OpenFile } from "../../../nine-door/fs/index.ts";
import { READ, RDWR, WRITE, bytes, caught, ctx, runProviderConformance, text } from "./conformance.ts";

runProviderConformance("Directory", () => new Directory("d", { children: [new StaticFile("a", "1"), new StaticFile("b", "2")] }));
runProviderConformance("Directory with generated entries", () => {
  const fixed = [new StaticFile("g1", "x"), new StaticFile("g2", "y")];
  return new Directory("worker", { children: [new StaticFile("a", "1")], entries: () => fixed });
});
runProviderConformance("Directory with asynchronous generated entries", () => {
  const fixed = [new StaticFile("g1", "x")];
  return new Directory("worker", { entries: async () => fixed });
});
runProviderConformance("StaticFile", () => new StaticFile("boot", "cohesix\n"));
runProviderConformance("writable StaticFile", () => new StaticFile("motd", "hi\n", { writable: true }));
runProviderConformance("GeneratedFile", () => new GeneratedFile("workers", () => "id=worker-1\n"));
runProviderConformance("asynchronous GeneratedFile", () => new GeneratedFile("mem", async () => bytes("rss=1\n")));

describe("qid paths", () => {
  it("nextQidPath() never repeats", () => {
    const seen = new Set<bigint>();
    for (let i = 0; i < 1000; i++) seen.add(nextQidPath());
    expect(seen.size).toBe(1000);
  });
});

describe("BaseNode", () => {
  class Uptime extends BaseNode {
    constructor() {
      super("uptime", { mode: 0o444, mtimeMs: 1000 });
    }
    override open(): OpenFile {
      const data = toBytes("42\n");
      return {
        read: (offset, count) => readAt(data, offset, count),
        write: () => {
          throw new PermissionError("uptime is read-only");
        },
      };
    }
  }

  it("lets a custom file be written in a few lines with default owners and a fixed mtime", async () => {
    const node = new Uptime();
    expect(node.stat()).toEqual({ length: 0, mtimeMs: 1000, atimeMs: 1000, uid: "cohesix", gid: "cohesix", muid: "cohesix" });
    expect(node.qid).toEqual({ type: QidType.FILE, version: 0, path: node.qid.path });
    expect(text(await (await node.open()).read(0, 10, ctx()))).toBe("42\n");
  });

  it("refuses names with a slash, dot or dot-dot", () => {
    for (const bad of ["", ".", "..", "a/b"]) expect(() => new StaticFile(bad, "")).toThrow(InvalidError);
  });
});

describe("Directory", () => {
  it("keeps children in insertion order and walks to them", async () => {
    const dir = new Directory("proc");
    const boot = dir.add(new StaticFile("boot", "b"));
    dir.add(new StaticFile("mem", "m"));
    dir.add(new StaticFile("aardvark", "a"));
    expect((await dir.list(ctx())).map((n) => n.name)).toEqual(["boot", "mem", "aardvark"]);
    expect(await dir.walk("boot", ctx())).toBe(boot);
    expect(dir.get("mem")?.name).toBe("mem");
  });

  it("says not found with the name for a missing child", async () => {
    const err = await caught(() => new Directory("d").walk("worker-9", ctx()));
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toBe("not found: worker-9");
  });

  it("refuses a second child with the same name", () => {
    const dir = new Directory("d", { children: [new StaticFile("a", "")] });
    const err = (() => {
      try {
        dir.add(new StaticFile("a", ""));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(InvalidError);
    expect((err as InvalidError).errno).toBe(Errno.EEXIST);
  });

  it("bumps its version on add and remove, and forgets removed children", async () => {
    const dir = new Directory("d");
    dir.add(new StaticFile("a", ""));
    expect(dir.qid.version).toBe(1);
    expect(dir.remove("a")?.name).toBe("a");
    expect(dir.remove("a")).toBeUndefined();
    expect(dir.qid.version).toBe(2);
    expect(await caught(() => dir.walk("a", ctx()))).toBeInstanceOf(NotFoundError);
  });

  it("shows generated entries that change between calls, after the fixed children", async () => {
    const workers = new Map<string, Node>();
    const dir = new Directory("worker", { children: [new StaticFile("README", "")], entries: () => workers.values() });
    expect((await dir.list(ctx())).map((n) => n.name)).toEqual(["README"]);
    workers.set("worker-1", new Directory("worker-1"));
    workers.set("worker-2", new Directory("worker-2"));
    expect((await dir.list(ctx())).map((n) => n.name)).toEqual(["README", "worker-1", "worker-2"]);
    expect((await dir.walk("worker-2", ctx())).name).toBe("worker-2");
    workers.delete("worker-1");
    expect(await caught(() => dir.walk("worker-1", ctx()))).toBeInstanceOf(NotFoundError);
  });

  it("is a directory by mode and qid type", () => {
    const dir = new Directory("d");
    expect((dir.mode & DirMode.DIR) >>> 0).toBe(DirMode.DIR);
    expect(dir.mode).toBe((DirMode.DIR | 0o555) >>> 0);
    expect(dir.qid.type).toBe(QidType.DIR);
  });
});

describe("StaticFile", () => {
  it("reads bytes at an offset", async () => {
    const f = await new StaticFile("boot", "hello world").open(READ, ctx());
    expect(text(await f.read(6, 3, ctx()))).toBe("wor");
    expect(text(await f.read(6, 100, ctx()))).toBe("world");
  });

  it("is read-only unless made writable", async () => {
    expect(await caught(() => new StaticFile("boot", "x").open(WRITE, ctx()))).toBeInstanceOf(PermissionError);
    expect(await caught(() => new StaticFile("boot", "x").open({ read: true, write: false, truncate: true }, ctx()))).toBeInstanceOf(PermissionError);
  });

  it("writes at an offset, zero-fills a gap, truncates on OTRUNC and records who wrote", async () => {
    const node = new StaticFile("motd", "hello", { writable: true });
    const f = await node.open(RDWR, ctx());
    await f.write(0, bytes("J"), ctx({ caller: { role: "worker-heartbeat", subject: "worker-1" } }));
    expect(node.text).toBe("Jello");
    await f.write(7, bytes("!"), ctx());
    expect([...node.bytes]).toEqual([...bytes("Jello"), 0, 0, 33]);
    expect(node.stat().length).toBe(8);
    await node.open({ read: false, write: true, truncate: true }, ctx({ caller: { role: "x", subject: "worker-2" } }));
    expect(node.text).toBe("");
    expect(node.stat().muid).toBe("worker-2");
    expect(node.qid.version).toBe(3);
  });

  it("refuses a write that would grow it past maxBytes", async () => {
    const f = await new StaticFile("small", "", { writable: true, maxBytes: 4 }).open(WRITE, ctx());
    expect(await caught(() => f.write(2, bytes("abc"), ctx()))).toBeInstanceOf(TooBigError);
  });

  it("refuses a write on a fid opened only for reading", async () => {
    const f = await new StaticFile("motd", "", { writable: true }).open(READ, ctx());
    expect(await caught(() => f.write(0, bytes("x"), ctx()))).toBeInstanceOf(PermissionError);
  });
});

describe("GeneratedFile", () => {
  it("takes one snapshot per open so successive reads are consistent", async () => {
    let n = 0;
    const node = new GeneratedFile("counter", () => `count=${++n} ${"x".repeat(10)}\n`);
    const a = await node.open(READ, ctx());
    const first = text(await a.read(0, 8, ctx()));
    const b = await node.open(READ, ctx());
    const rest = text(await a.read(8, 100, ctx()));
    expect(first + rest).toBe(`count=1 ${"x".repeat(10)}\n`);
    expect(text(await b.read(0, 7, ctx()))).toBe("count=2");
  });

  it("passes the caller to the generator", async () => {
    const node = new GeneratedFile("whoami", (c) => `${c.caller.subject}\n`);
    const f = await node.open(READ, ctx({ caller: { role: "worker-heartbeat", subject: "worker-3" } }));
    expect(text(await f.read(0, 100, ctx()))).toBe("worker-3\n");
  });

  it("refuses opens for writing or truncation", async () => {
    const node = new GeneratedFile("g", () => "");
    expect(await caught(() => node.open(WRITE, ctx()))).toBeInstanceOf(PermissionError);
    expect(await caught(() => node.open({ read: true, write: false, truncate: true }, ctx()))).toBeInstanceOf(PermissionError);
  });

  it("answers the open with the generator's error", async () => {
    const node = new GeneratedFile("g", async () => {
      throw new NotFoundError("worker-9");
    });
    expect(await caught(() => node.open(READ, ctx()))).toBeInstanceOf(NotFoundError);
  });
});
