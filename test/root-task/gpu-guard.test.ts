import { describe, expect, test } from "vitest";
import { checkGpuWrite } from "../../root-task/index.ts";

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
