/**
 * The nvidia-smi parsers on recorded outputs: 1 GPU, 8 GPUs, a MIG-enabled
 * GPU and a driver error.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  GpuDriverError,
  SmiFormatError,
  gpusFromSmi,
  parseComputeApps,
  parseGpuCsv,
  parseSmiXml,
  smCountOf,
  smiFailure,
} from "../../gpu-bridge/index.ts";
import { FIXTURES } from "./helpers.ts";

const read = (name: string): string => readFileSync(`${FIXTURES}${name}`, "utf8");

describe("nvidia-smi parsers", () => {
  it("parse one GPU, its [N/A] MIG mode and its processes", () => {
    const rows = parseGpuCsv(read("one-gpu.query-gpu.csv"));
    expect(rows).toEqual([
      {
        index: 0,
        uuid: "GPU-6f1c2d3e-8a9b-4c5d-9e0f-1a2b3c4d5e6f",
        name: "NVIDIA GeForce RTX 3060",
        memoryTotalMb: 12288,
        memoryUsedMb: 911,
        driverVersion: "535.129.03",
        pciBusId: "00000000:2B:00.0",
        migMode: undefined,
      },
    ]);
    const xml = parseSmiXml(read("one-gpu.q-x.xml"));
    expect(xml.driverVersion).toBe("535.129.03");
    expect(xml.cudaVersion).toBe("12.2");
    expect(xml.gpus[0]).toMatchObject({ pciBusId: "00000000:2B:00.0", productName: "NVIDIA GeForce RTX 3060", memoryTotalMb: 12288, memoryUsedMb: 911, migMode: undefined, migDevices: [] });
    expect(xml.gpus[0]!.processes.map((p) => [p.pid, p.usedMb])).toEqual([[41394, 56], [41782, 207]]);
    expect(parseComputeApps(read("one-gpu.compute-apps.csv"))).toEqual([
      { pid: 41394, gpuUuid: rows[0]!.uuid, usedMb: 56 },
      { pid: 41782, gpuUuid: rows[0]!.uuid, usedMb: 207 },
    ]);
    const gpus = gpusFromSmi(rows, xml);
    expect(gpus).toEqual([
      {
        id: "GPU-0",
        name: "NVIDIA GeForce RTX 3060",
        uuid: rows[0]!.uuid,
        memory_mb: 12288,
        sm_count: 28,
        driver_version: "535.129.03",
        index: 0,
        visibleDevice: rows[0]!.uuid,
        memory_used_mb: 911,
      },
    ]);
  });

  it("parse eight GPUs in index order with per-process memory", () => {
    const rows = parseGpuCsv(read("eight-gpus.query-gpu.csv"));
    const xml = parseSmiXml(read("eight-gpus.q-x.xml"));
    expect(xml.attachedGpus).toBe(8);
    const gpus = gpusFromSmi(rows, xml);
    expect(gpus.map((g) => g.id)).toEqual(["GPU-0", "GPU-1", "GPU-2", "GPU-3", "GPU-4", "GPU-5", "GPU-6", "GPU-7"]);
    expect(new Set(gpus.map((g) => g.uuid)).size).toBe(8);
    expect(gpus.every((g) => g.memory_mb === 32768 && g.sm_count === 80 && g.name === "Tesla V100-SXM2-32GB")).toBe(true);
    expect(gpus[2]!.memory_used_mb).toBe(30120);
    const apps = parseComputeApps(read("eight-gpus.compute-apps.csv"));
    const on5 = apps.filter((a) => a.gpuUuid === gpus[5]!.uuid).reduce((s, a) => s + (a.usedMb ?? 0), 0);
    expect(on5).toBe(16382);
  });

  it("serve a MIG-enabled GPU as its MIG devices, pinned by MIG address", () => {
    const rows = parseGpuCsv(read("mig.query-gpu.csv"));
    expect(rows.map((r) => r.migMode)).toEqual(["Enabled", "Disabled"]);
    const xml = parseSmiXml(read("mig.q-x.xml"));
    expect(xml.gpus[0]!.migDevices).toEqual([
      { index: 0, gpuInstanceId: 1, computeInstanceId: 0, uuid: undefined, smCount: 42, memoryTotalMb: 19968, memoryUsedMb: 13 },
      { index: 1, gpuInstanceId: 7, computeInstanceId: 0, uuid: undefined, smCount: 14, memoryTotalMb: 4864, memoryUsedMb: 6 },
      { index: 2, gpuInstanceId: 8, computeInstanceId: 0, uuid: undefined, smCount: 14, memoryTotalMb: 4864, memoryUsedMb: 6 },
    ]);
    expect(xml.gpus[0]!.processes[0]).toMatchObject({ pid: 30011, usedMb: undefined, gpuInstanceId: 1, computeInstanceId: 0 });
    const gpus = gpusFromSmi(rows, xml);
    expect(gpus.map((g) => [g.id, g.memory_mb, g.sm_count])).toEqual([
      ["GPU-0-MIG-0", 19968, 42],
      ["GPU-0-MIG-1", 4864, 14],
      ["GPU-0-MIG-2", 4864, 14],
      ["GPU-1", 40960, 108],
    ]);
    expect(gpus[1]!.visibleDevice).toBe(`MIG-${rows[0]!.uuid}/7/0`);
    expect(parseComputeApps(read("mig.compute-apps.csv")).map((p) => p.usedMb)).toEqual([undefined, undefined]);
  });

  it("turn the driver error into a GpuDriverError that says what to do", () => {
    const err = smiFailure({ exitCode: 9, stdout: read("driver-error.txt"), stderr: "" });
    expect(err).toBeInstanceOf(GpuDriverError);
    expect(err!.exitCode).toBe(9);
    expect(err!.message).toMatch(/^io: nvidia-smi: the NVIDIA driver is not loaded .*--backend sim/);
    expect(err!.output).toContain("couldn't communicate with the NVIDIA driver");
    expect(smiFailure({ exitCode: 0, stdout: "", stderr: "" })).toBeUndefined();
    expect(smiFailure({ exitCode: 12, stdout: "NVML Shared Library Not Found", stderr: "" })!.message).toMatch(/libnvidia-ml/);
  });

  it("read an empty process list and the 'no running processes' line as no processes", () => {
    expect(parseComputeApps("")).toEqual([]);
    expect(parseComputeApps("No running processes found\n")).toEqual([]);
  });

  it("refuse malformed output with SmiFormatError naming the line", () => {
    expect(() => parseGpuCsv("0, GPU-x, name\n")).toThrow(SmiFormatError);
    expect(() => parseGpuCsv("zero, GPU-x, n, 1, 1, 1, b, [N/A]\n")).toThrow(/line 1: index/);
    expect(() => parseSmiXml("<html></html>")).toThrow(/nvidia_smi_log/);
    expect(() => parseSmiXml("<nvidia_smi_log><gpu></nvidia_smi_log>")).toThrow(SmiFormatError);
  });

  it("know SM counts of common products and say 0 for unknown ones", () => {
    expect(smCountOf("NVIDIA A100-SXM4-80GB")).toBe(108);
    expect(smCountOf("NVIDIA H100 80GB HBM3")).toBe(132);
    expect(smCountOf("Mystery GPU")).toBe(0);
  });

  it("survive seeded garbage without throwing anything but SmiFormatError", () => {
    let seed = 12345;
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const base = read("mig.q-x.xml");
    for (let i = 0; i < 300; i++) {
      const cut = Math.floor(rand() * base.length);
      const mutated = base.slice(0, cut) + String.fromCharCode(32 + Math.floor(rand() * 95)) + base.slice(cut + 1 + Math.floor(rand() * 20));
      try {
        parseSmiXml(mutated);
      } catch (err) {
        expect(err).toBeInstanceOf(SmiFormatError);
      }
    }
  });
});
