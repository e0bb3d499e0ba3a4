/**
 * The real backend's path without a GPU: a fake `nvidia-smi` that prints the
 * recorded outputs, and a fake executor script that reports what it saw.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GpuDriverError, NvmlBackend, detectBackend } from "../../gpu-bridge/index.ts";
import { FIXTURES, command, descriptor, readUntil, startTestBridge } from "./helpers.ts";

let dir: string;
let smi: string;
let executor: string;

/** A fake nvidia-smi: prints the fixture set named by $FAKE_SMI_SET for each query. */
const FAKE_SMI = `#!/bin/sh
set -e
F="${FIXTURES}"
SET="\${FAKE_SMI_SET:-one-gpu}"
if [ "$SET" = driver-error ]; then cat "$F/driver-error.txt"; exit 9; fi
case "$1" in
  --query-gpu=*) cat "$F/$SET.query-gpu.csv" ;;
  --query-compute-apps=*)
    if [ -n "$WATCH_PID_FILE" ] && [ -s "$WATCH_PID_FILE" ]; then echo "$(cat "$WATCH_PID_FILE"), GPU-6f1c2d3e-8a9b-4c5d-9e0f-1a2b3c4d5e6f, 9000"; else cat "$F/$SET.compute-apps.csv"; fi ;;
  -q) cat "$F/$SET.q-x.xml" ;;
  *) echo "unexpected arguments: $*" >&2; exit 2 ;;
esac
`;

/** A fake executor: reads the descriptor, sleeps for kernel "sleep", fails for "crash", prints a JSON result. */
const FAKE_EXECUTOR = `#!/usr/bin/env node
let input = "";
process.stdin.on("data", (c) => (input += c));
process.stdin.on("end", () => {
  const d = JSON.parse(input);
  if (d.kernel === "sleep") { require("node:fs").writeFileSync(process.env.PID_FILE, String(process.pid)); setTimeout(() => {}, 60000); return; }
  if (d.kernel === "crash") { process.stderr.write("cudaErrorIllegalAddress\\n"); process.exit(3); }
  console.log("executor log line");
  console.log(JSON.stringify({ visible: process.env.CUDA_VISIBLE_DEVICES, gpu: process.env.COHESIX_GPU_ID, job: d.job, bytes: Buffer.from(d.payload_b64, "base64").length }));
});
`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-nvml-"));
  smi = join(dir, "nvidia-smi");
  executor = join(dir, "executor.cjs");
  await writeFile(smi, FAKE_SMI);
  await writeFile(executor, FAKE_EXECUTOR);
  await chmod(smi, 0o755);
  await chmod(executor, 0o755);
});
afterAll(async () => {
  delete process.env.FAKE_SMI_SET;
  delete process.env.WATCH_PID_FILE;
  await rm(dir, { recursive: true, force: true });
});

describe("NvmlBackend through nvidia-smi", () => {
  it("lists the recorded GPUs and their processes", async () => {
    process.env.FAKE_SMI_SET = "eight-gpus";
    const nvml = new NvmlBackend({ smi });
    const gpus = await nvml.listGpus();
    expect(gpus.map((g) => g.id)).toHaveLength(8);
    expect(nvml.description).toContain("driver 535.129.03");
    expect(await nvml.foreignMemoryMb(gpus[5]!)).toBe(16382);
    expect((await nvml.processes()).length).toBe(4);
  });

  it("is what auto detection picks when nvidia-smi answers", async () => {
    process.env.FAKE_SMI_SET = "mig";
    const { backend, reason } = await detectBackend("auto", { nvml: { smi } });
    expect(backend.kind).toBe("nvml");
    expect(reason).toBe("nvidia-smi answered with 4 GPU(s), driver 535.129.03");
  });

  it("throws GpuDriverError on the driver error, and auto falls back to the simulator", async () => {
    process.env.FAKE_SMI_SET = "driver-error";
    const err = await new NvmlBackend({ smi }).listGpus().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GpuDriverError);
    expect((err as GpuDriverError).exitCode).toBe(9);
    const { backend, reason } = await detectBackend("auto", { nvml: { smi } });
    expect(backend.kind).toBe("sim");
    expect(reason).toMatch(/^nvidia-smi: the NVIDIA driver is not loaded.*; using the simulated GPUs$/);
  });
});

describe("real jobs through the executor, over 9P", () => {
  it("pins CUDA_VISIBLE_DEVICES, passes the descriptor on stdin, reports OK, ERR for a crash, and kills on timeout", async () => {
    process.env.FAKE_SMI_SET = "one-gpu";
    const pidFile = join(dir, "sleeper.pid");
    process.env.PID_FILE = pidFile;
    const t = await startTestBridge({ backend: new NvmlBackend({ smi, executor: [process.execPath, executor], memoryPollMs: 0 }) });
    try {
      const { top } = await t.connect();
      expect(JSON.parse(await top.readText("GPU-0/info"))).toEqual({
        id: "GPU-0",
        name: "NVIDIA GeForce RTX 3060",
        uuid: "GPU-6f1c2d3e-8a9b-4c5d-9e0f-1a2b3c4d5e6f",
        memory_mb: 12288,
        sm_count: 28,
        driver_version: "535.129.03",
      });
      // 12288 MiB total, 263 MiB used by two foreign processes.
      await expect(command(top, "GPU-0/ctl", "LEASE worker-1 mem=12100 streams=2 ttl=60")).rejects.toThrow(/^busy: GPU-0 is fully leased .*263 MiB used by other processes/);
      await command(top, "GPU-0/ctl", "LEASE worker-1 mem=8192 streams=2 priority=0 ttl=60");

      await command(top, "GPU-0/job", JSON.stringify(descriptor({ job: "real-1", worker: "worker-1" })));
      await command(top, "GPU-0/job", JSON.stringify(descriptor({ job: "crash-1", worker: "worker-1", kernel: "crash" })));
      let lines = await readUntil(top, "GPU-0/status", (l) => ["real-1", "crash-1"].every((j) => l.some((r) => r.job === j && (r.state === "OK" || r.state === "ERR"))));
      const ok = lines.find((l) => l.job === "real-1" && l.state === "OK")!;
      expect(ok.result).toMatchObject({ visible: "GPU-6f1c2d3e-8a9b-4c5d-9e0f-1a2b3c4d5e6f", gpu: "GPU-0", job: "real-1", bytes: 4 });
      expect(lines.find((l) => l.job === "crash-1" && l.state === "ERR")!.reason).toBe("executor exited 3: cudaErrorIllegalAddress");

      await command(top, "GPU-0/job", JSON.stringify(descriptor({ job: "sleep-1", worker: "worker-1", kernel: "sleep", timeout_ms: 500 })));
      lines = await readUntil(top, "GPU-0/status", (l) => l.some((r) => r.job === "sleep-1" && r.state === "ERR"));
      expect(lines.find((l) => l.job === "sleep-1" && l.state === "ERR")!.reason).toMatch(/^timeout: /);
      const pid = Number(await readFile(pidFile, "utf8"));
      expect(() => process.kill(pid, 0)).toThrow(); // the executor is gone
    } finally {
      await t.close();
    }
  });
});

describe("the memory watch", () => {
  it("kills a real job whose processes hold more GPU memory than its lease", async () => {
    process.env.FAKE_SMI_SET = "one-gpu";
    const pidFile = join(dir, "hog.pid");
    process.env.PID_FILE = pidFile;
    const t = await startTestBridge({ backend: new NvmlBackend({ smi, executor: [process.execPath, executor], memoryPollMs: 100 }) });
    try {
      const { top } = await t.connect();
      await command(top, "GPU-0/ctl", "LEASE worker-1 mem=4096 streams=1 ttl=60");
      // From now on the fake nvidia-smi reports the executor holding 9000 MiB.
      process.env.WATCH_PID_FILE = pidFile;
      await command(top, "GPU-0/job", JSON.stringify(descriptor({ job: "hog-1", worker: "worker-1", kernel: "sleep", timeout_ms: 20_000 })));
      const lines = await readUntil(top, "GPU-0/status", (l) => l.some((r) => r.job === "hog-1" && r.state === "ERR"));
      expect(lines.find((l) => l.job === "hog-1" && l.state === "ERR")!.reason).toBe("memory: job used 9000 MiB, its lease allows 4096 MiB");
    } finally {
      delete process.env.WATCH_PID_FILE;
      await t.close();
    }
  });
});
