import { describe, expect, test } from "vitest";
import { CtlFile, Directory, type OpenFlags, type RequestContext } from "../../nine-door/index.ts";
import { checkGpuWrite, guardGpuMount } from "../../root-task/index.ts";

const gpuWorker = { role: "worker-gpu", subject: "worker-3" };
const queen = { role: "queen", subject: "queen" };

describe("checkGpuWrite", () => {
  test("a worker's descriptor naming itself passes", () => {
    expect(() => checkGpuWrite(gpuWorker, ["GPU-0", "job"], '{"job":"j1","worker":"worker-3"}')).not.toThrow();
  });

  test("a worker's descriptor naming another worker is refused with permission:", () => {
    expect(() => checkGpuWrite(gpuWorker, ["GPU-0", "job"], '{"job":"j1","worker":"worker-4"}')).toThrow(/^permission: job descriptor names worker "worker-4"/);
    expect(() => checkGpuWrite(gpuWorker, ["GPU-0", "job"], '{"job":"j1"}')).toThrow(/^permission:/);
  });

  test("text that is not JSON is left for the bridge to refuse", () => {
    expect(() => checkGpuWrite(gpuWorker, ["GPU-0", "job"], "not json")).not.toThrow();
  });

  test("a worker may RELEASE only its own lease and never LEASE", () => {
    expect(() => checkGpuWrite(gpuWorker, ["GPU-0", "ctl"], "RELEASE worker-3 done")).not.toThrow();
    expect(() => checkGpuWrite(gpuWorker, ["GPU-0", "ctl"], "RELEASE worker-4 done")).toThrow(/^permission:/);
    expect(() => checkGpuWrite(gpuWorker, ["GPU-0", "ctl"], "LEASE worker-3 mem=1 streams=1")).toThrow(/^permission:/);
  });

  test("the queen is not checked", () => {
    expect(() => checkGpuWrite(queen, ["GPU-0", "job"], '{"worker":"worker-9"}')).not.toThrow();
    expect(() => checkGpuWrite(queen, ["GPU-0", "ctl"], "LEASE worker-9 mem=1 streams=1")).not.toThrow();
  });
});

describe("under --policy signed-ctl", () => {
  const signed = { signedCtl: true };

  test("the queen's unsigned LEASE, RELEASE and job writes below /gpu are refused with permission:, naming the signed path", () => {
    expect(() => checkGpuWrite(queen, ["GPU-0", "ctl"], "LEASE worker-9 mem=1 streams=1", signed)).toThrow(
      /^permission: under --policy signed-ctl \/gpu\/GPU-0\/ctl takes no unsigned writes: leases are granted by signed spawn commands on \/queen\/ctl/,
    );
    expect(() => checkGpuWrite(queen, ["GPU-0", "ctl"], "RELEASE worker-9 done", signed)).toThrow(/^permission:/);
    expect(() => checkGpuWrite(queen, ["GPU-0", "job"], '{"worker":"worker-9"}', signed)).toThrow(/^permission:/);
  });

  test("the root task's own lease calls and a worker's release of its own lease still pass", () => {
    expect(() => checkGpuWrite({ role: "root-task", subject: "root-task" }, ["GPU-0", "ctl"], "LEASE worker-3 mem=1 streams=1", signed)).not.toThrow();
    expect(() => checkGpuWrite(gpuWorker, ["GPU-0", "ctl"], "RELEASE worker-3 done", signed)).not.toThrow();
  });

  test("the guarded mount refuses the queen's write before it reaches the bridge, and tells the audit", async () => {
    const reached: string[] = [];
    const bridge = new Directory("gpu", {
      children: [new Directory("GPU-0", { children: [new CtlFile("ctl", (text) => (reached.push(text), "ok"), { perm: 0o222 })] })],
    });
    const refused: string[] = [];
    const guarded = guardGpuMount(bridge, { signedCtl: true, onRefused: (c, path, e) => refused.push(`${c.subject} ${path} ${e.message}`) });
    const ctx = (caller: { role: string; subject: string }): RequestContext => ({ caller, signal: new AbortController().signal }) as RequestContext;
    const open = async (caller: { role: string; subject: string }) => {
      const c = ctx(caller);
      const gpu = await guarded.walk("GPU-0", c);
      const ctl = await gpu.walk("ctl", c);
      return { file: await ctl.open({ read: false, write: true, truncate: false } as OpenFlags, c), c };
    };
    const q = await open(queen);
    await expect(Promise.resolve().then(() => q.file.write(0, Buffer.from("LEASE worker-9 mem=1 streams=1"), q.c))).rejects.toThrow(/^permission: under --policy signed-ctl/);
    expect(reached).toEqual([]);
    expect(refused).toEqual([expect.stringMatching(/^queen \/gpu\/GPU-0\/ctl permission: under --policy signed-ctl/)]);
    const w = await open(gpuWorker);
    await w.file.write(0, Buffer.from("RELEASE worker-3 done"), w.c);
    expect(reached).toEqual(["RELEASE worker-3 done"]);
  });
});
