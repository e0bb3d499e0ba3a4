import { describe, expect, it } from "vitest";
import { InvalidError, NotFoundError } from "../../../nine-door/errors.ts";
import { Directory, Namespace, StaticFile } from "../../../nine-door/fs/index.ts";
import type { Node } from "../../../nine-door/fs/index.ts";
import { READ, caught, ctx, text } from "./conformance.ts";

function appliance(): { root: Directory; workers: Map<string, Node> } {
  const workers = new Map<string, Node>();
  for (const id of ["worker-1", "worker-2"]) {
    workers.set(id, new Directory(id, { children: [new StaticFile("telemetry", `${id}\n`)] }));
  }
  const root = new Directory("/", {
    children: [
      new Directory("proc", { children: [new StaticFile("boot", "cohesix\n")] }),
      new Directory("worker", { entries: () => workers.values() }),
    ],
  });
  return { root, workers };
}

async function read(node: Node): Promise<string> {
  const f = await node.open(READ, ctx());
  return text(await f.read(0, 1000, ctx()));
}

describe("Namespace", () => {
  it("walkPath() resolves absolute paths, normalising slashes and dots", async () => {
    const ns = new Namespace(appliance().root);
    expect(await read(await ns.walkPath("/proc/boot", ctx()))).toBe("cohesix\n");
    expect(await read(await ns.walkPath("//proc/./boot/", ctx()))).toBe("cohesix\n");
    expect(await read(await ns.walkPath("/worker/worker-1/../worker-2/telemetry", ctx()))).toBe("worker-2\n");
    expect(await ns.walkPath("/", ctx())).toBe(ns.root);
  });

  it("walkPath() refuses relative paths and missing names", async () => {
    const ns = new Namespace(appliance().root);
    expect(await caught(() => ns.walkPath("proc", ctx()))).toBeInstanceOf(InvalidError);
    const err = await caught(() => ns.walkPath("/proc/nope", ctx()));
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toBe("not found: nope");
  });

  it("step() walks one name and tracks the path", async () => {
    const ns = new Namespace(appliance().root);
    const proc = await ns.step(ns.attach(), "proc", ctx());
    expect(proc.path).toBe("/proc");
    const boot = await ns.step(proc, "boot", ctx());
    expect(boot.path).toBe("/proc/boot");
    expect((await ns.step(boot, ".", ctx())).path).toBe("/proc/boot");
  });

  it("step() takes .. to the parent path re-resolved from the root", async () => {
    const ns = new Namespace(appliance().root);
    const w1 = await ns.resolve("/worker/worker-1", ctx());
    const up = await ns.step(w1, "..", ctx());
    expect(up.path).toBe("/worker");
    expect(up.node.qid.path).toBe((await ns.walkPath("/worker", ctx())).qid.path);
    expect((await ns.step(up, "..", ctx())).node).toBe(ns.root);
  });

  it("refuses .. above the root", async () => {
    const ns = new Namespace(appliance().root);
    const err = await caught(() => ns.step(ns.attach(), "..", ctx()));
    expect(err).toBeInstanceOf(InvalidError);
    expect((err as Error).message).toBe("invalid: walk above the root");
    expect(await caught(() => ns.walkPath("/proc/../..", ctx()))).toBeInstanceOf(InvalidError);
  });

  it("step() refuses a name containing a slash", async () => {
    const ns = new Namespace(appliance().root);
    expect(await caught(() => ns.step(ns.attach(), "proc/boot", ctx()))).toBeInstanceOf(InvalidError);
  });

  it("bind() makes walking the target yield the source node, replacing what was there", async () => {
    const ns = new Namespace(appliance().root);
    ns.bind("/worker/worker-2", "/worker/worker-1");
    const w1 = await ns.walkPath("/worker/worker-1", ctx());
    expect(w1.qid.path).toBe((await ns.walkPath("/worker/worker-2", ctx())).qid.path);
    expect(w1.name).toBe("worker-1");
    expect(await read(await ns.walkPath("/worker/worker-1/telemetry", ctx()))).toBe("worker-2\n");
  });

  it("bind() onto a new name adds it to the directory listing", async () => {
    const ns = new Namespace(appliance().root);
    ns.bind("/worker/worker-1", "/w1");
    expect(await read(await ns.walkPath("/w1/telemetry", ctx()))).toBe("worker-1\n");
    const names = (await ns.list(ns.attach(), ctx())).map((n) => n.name);
    expect(names).toEqual(["proc", "worker", "w1"]);
    const w1 = await ns.step(ns.attach(), "w1", ctx());
    expect(w1.path).toBe("/w1");
    expect((await ns.step(await ns.step(w1, "telemetry", ctx()), "..", ctx())).path).toBe("/w1");
  });

  it("binds follow the source path, so a removed worker's bind answers not found", async () => {
    const { root, workers } = appliance();
    const ns = new Namespace(root);
    ns.bind("/worker/worker-1", "/w1");
    workers.delete("worker-1");
    expect(await caught(() => ns.walkPath("/w1", ctx()))).toBeInstanceOf(NotFoundError);
    expect((await ns.list(ns.attach(), ctx())).map((n) => n.name)).toEqual(["proc", "worker"]);
  });

  it("keeps binds per session: a fork does not see later binds of its parent, nor the parent its", async () => {
    const base = new Namespace(appliance().root);
    base.bind("/proc", "/p");
    const a = base.fork();
    const b = base.fork();
    a.bind("/worker/worker-1", "/w1");
    expect((await a.walkPath("/w1", ctx())).name).toBe("w1");
    expect(await caught(() => b.walkPath("/w1", ctx()))).toBeInstanceOf(NotFoundError);
    expect(await caught(() => base.walkPath("/w1", ctx()))).toBeInstanceOf(NotFoundError);
    expect((await b.walkPath("/p/boot", ctx())).name).toBe("boot");
    expect(a.binds()).toEqual([
      { from: "/proc", to: "/p" },
      { from: "/worker/worker-1", to: "/w1" },
    ]);
  });

  it("refuses a bind onto the root", () => {
    const ns = new Namespace(appliance().root);
    expect(() => ns.bind("/proc", "/")).toThrow("invalid: bind onto the root");
    expect(() => ns.bind("/proc", "//")).toThrow(InvalidError);
  });

  it("refuses binds involving .. and relative paths", () => {
    const ns = new Namespace(appliance().root);
    expect(() => ns.bind("/proc/..", "/x")).toThrow(InvalidError);
    expect(() => ns.bind("/proc", "/x/../y")).toThrow(InvalidError);
    expect(() => ns.bind("proc", "/x")).toThrow(InvalidError);
  });

  it("refuses a bind of a path into itself and stops a loop made of several binds", async () => {
    const ns = new Namespace(appliance().root);
    expect(() => ns.bind("/proc/boot", "/proc")).toThrow("invalid: bind loop");
    ns.bind("/b/x", "/a");
    ns.bind("/a/x", "/b");
    const err = await caught(() => ns.walkPath("/a", ctx()));
    expect(err).toBeInstanceOf(InvalidError);
    expect((err as Error).message).toMatch(/^invalid: bind loop/);
  });

  it("unbind() restores the original node and refuses a path with no bind", async () => {
    const ns = new Namespace(appliance().root);
    ns.bind("/worker/worker-2", "/worker/worker-1");
    ns.unbind("/worker/worker-1");
    expect(await read(await ns.walkPath("/worker/worker-1/telemetry", ctx()))).toBe("worker-1\n");
    expect(() => ns.unbind("/worker/worker-1")).toThrow(NotFoundError);
  });

  it("a bound node keeps the source's qid and stat", async () => {
    const ns = new Namespace(appliance().root);
    ns.bind("/proc/boot", "/banner");
    const banner = await ns.walkPath("/banner", ctx());
    const boot = await ns.walkPath("/proc/boot", ctx());
    expect(banner.name).toBe("banner");
    expect(banner.qid).toEqual(boot.qid);
    expect(banner.stat()).toEqual(boot.stat());
    expect(banner.mode).toBe(boot.mode);
  });
});
