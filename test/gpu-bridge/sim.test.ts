/**
 * The simulated backend, lease commands and descriptor checks, without a socket.
 */
import { describe, expect, it } from "vitest";
import {
  LeaseBook,
  SimBackend,
  detectBackend,
  makeJobDescriptor,
  parseCtlCommand,
  parseJobDescriptor,
  simDurationMs,
  type LeaseRecord,
} from "../../gpu-bridge/index.ts";

const payload = new Uint8Array(4096).map((_, i) => i & 0xff);

describe("SimBackend", () => {
  it("lists the same two GPUs every time", async () => {
    const a = await new SimBackend().listGpus();
    const b = await new SimBackend().listGpus();
    expect(a).toEqual(b);
    expect(a.map((g) => [g.id, g.memory_mb, g.sm_count])).toEqual([
      ["GPU-0", 16384, 48],
      ["GPU-1", 24576, 72],
    ]);
    expect(a[0]!.uuid).toMatch(/^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  });

  it("gives the same result for the same job, timed from payload size and grid × block", async () => {
    const sim = new SimBackend({ timeScale: 0 });
    const [gpu] = await sim.listGpus();
    const descriptor = makeJobDescriptor({ job: "j1", worker: "worker-1", kernel: "saxpy", grid: [1024, 1, 1], block: [256, 1, 1], timeout_ms: 1000 }, payload);
    const run = () => sim.runJob({ gpu: gpu!, descriptor, payload, signal: new AbortController().signal });
    const first = await run();
    expect(await run()).toEqual(first);
    expect(first).toMatchObject({ kernel: "saxpy", threads: 262_144 });
    expect(first.duration_ms).toBe(simDurationMs({ payloadBytes: 4096, grid: [1024, 1, 1], block: [256, 1, 1], smCount: 48 }));
    // Bigger payloads and grids take longer; more SMs take less.
    expect(simDurationMs({ payloadBytes: 1 << 20, grid: [1, 1, 1], block: [1, 1, 1], smCount: 48 })).toBeGreaterThan(simDurationMs({ payloadBytes: 1024, grid: [1, 1, 1], block: [1, 1, 1], smCount: 48 }));
    expect(simDurationMs({ payloadBytes: 0, grid: [65535, 64, 1], block: [1024, 1, 1], smCount: 72 })).toBeLessThan(simDurationMs({ payloadBytes: 0, grid: [65535, 64, 1], block: [1024, 1, 1], smCount: 48 }));
  });

  it("waits out the simulated duration and stops when aborted", async () => {
    const sim = new SimBackend();
    const [gpu] = await sim.listGpus();
    const descriptor = makeJobDescriptor({ job: "j2", worker: "worker-1", kernel: "k", grid: [65535, 100, 1], block: [1024, 1, 1], timeout_ms: 60_000 }, payload);
    const abort = new AbortController();
    const started = Date.now();
    const run = sim.runJob({ gpu: gpu!, descriptor, payload, signal: abort.signal });
    setTimeout(() => abort.abort(new Error("stop")), 30);
    await expect(run).rejects.toThrow("stop");
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it("accounts memory per lease holder", async () => {
    const sim = new SimBackend();
    sim.reserve("GPU-0", "worker-1", 4096);
    sim.reserve("GPU-0", "worker-2", 8192);
    expect((await sim.listGpus())[0]!.memory_used_mb).toBe(12288);
    expect((await sim.processes()).map((p) => p.usedMb)).toEqual([4096, 8192]);
    expect(() => sim.reserve("GPU-0", "worker-3", 8192)).toThrow(/^busy: GPU-0 has 4096 MiB free/);
    sim.unreserve("GPU-0", "worker-1");
    expect(sim.reservedMb("GPU-0")).toBe(8192);
  });
});

describe("detectBackend", () => {
  it("says why it fell back to the simulator when nvidia-smi is missing", async () => {
    const { backend, reason } = await detectBackend("auto", { nvml: { smi: "/nonexistent/nvidia-smi" } });
    expect(backend.kind).toBe("sim");
    expect(reason).toMatch(/not found.*using the simulated GPUs/);
    await expect(detectBackend("nvml", { nvml: { smi: "/nonexistent/nvidia-smi" } })).rejects.toThrow(/^io: .*not found/);
    expect((await detectBackend("sim")).backend.kind).toBe("sim");
  });
});

describe("lease commands", () => {
  it("parse LEASE with defaults and refuse malformed ones with invalid:", () => {
    expect(parseCtlCommand("LEASE worker-3 mem=4096 streams=2 priority=1 ttl=120")).toEqual({ op: "LEASE", worker: "worker-3", mem_mb: 4096, streams: 2, priority: 1, ttl_s: 120 });
    expect(parseCtlCommand("LEASE worker-3 mem=1 streams=1")).toMatchObject({ priority: 0, ttl_s: undefined });
    expect(parseCtlCommand("RELEASE worker-3 all done")).toEqual({ op: "RELEASE", worker: "worker-3", reason: "all done" });
    for (const bad of ["LEASE", "LEASE worker-3 mem=x streams=1", "LEASE worker-3 streams=1", "LEASE worker-3 mem=1 streams=1 colour=red", "LEASE worker-3 mem=1 mem=2 streams=1", "RELEASE worker-3", "GRAB worker-3", "LEASE w/3 mem=1 streams=1", "LEASE worker-3 mem=1 streams=99"]) {
      expect(() => parseCtlCommand(bad), bad).toThrow(/^invalid: /);
    }
  });

  it("grant within memory and streams, refuse beyond with busy:, one lease per worker", async () => {
    const sim = new SimBackend();
    const records: LeaseRecord[] = [];
    const book = new LeaseBook({ backend: sim, gpus: await sim.listGpus(), onRecord: (r) => records.push(r), limits: { streamsPerGpu: 4 } });
    await book.lease("GPU-0", { worker: "worker-1", mem_mb: 12288, streams: 2, priority: 0, ttl_s: 60 });
    expect(sim.reservedMb("GPU-0")).toBe(12288);
    await expect(book.lease("GPU-0", { worker: "worker-2", mem_mb: 8192, streams: 1, priority: 0, ttl_s: 60 })).rejects.toThrow(/^busy: GPU-0 is fully leased \(.*free 4096 of 16384 MiB/);
    await expect(book.lease("GPU-0", { worker: "worker-2", mem_mb: 1024, streams: 3, priority: 0, ttl_s: 60 })).rejects.toThrow(/^busy: GPU-0 is fully leased \(.*2 of 4 streams/);
    await expect(book.lease("GPU-0", { worker: "worker-1", mem_mb: 1, streams: 1, priority: 0, ttl_s: 60 })).rejects.toThrow(/^busy: worker-1 already holds a lease on GPU-0/);
    book.release("GPU-0", "worker-1", "done");
    expect(sim.reservedMb("GPU-0")).toBe(0);
    expect(() => book.release("GPU-0", "worker-1", "again")).toThrow(/^not found: worker-1 holds no lease on GPU-0/);
    expect(records.map((r) => [r.worker, r.state, r.reason])).toEqual([
      ["worker-1", "ACTIVE", undefined],
      ["worker-1", "RELEASED", "done"],
    ]);
    book.close();
  });
});

describe("job descriptors", () => {
  const good = makeJobDescriptor({ job: "j1", worker: "worker-1", kernel: "saxpy", grid: [64, 1, 1], block: [256, 1, 1], timeout_ms: 5000 }, payload);

  it("accept a well-formed descriptor and decode its payload", () => {
    const { descriptor, payload: decoded } = parseJobDescriptor(JSON.stringify(good));
    expect(descriptor).toEqual(good);
    expect(Buffer.from(decoded).equals(Buffer.from(payload))).toBe(true);
  });

  it("refuse each malformation with invalid: naming the field", () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ ...good, bytes_hash: `sha256:${"0".repeat(64)}` }, /bytes_hash does not match the payload/],
      [{ ...good, extra: 1 }, /field "extra" is unknown/],
      [{ ...good, timeout_ms: 0 }, /timeout_ms must be/],
      [{ ...good, timeout_ms: 10_000_000 }, /timeout_ms must be/],
      [{ ...good, grid: [1, 1] }, /grid must be/],
      [{ ...good, block: [1024, 2, 1] }, /block has 2048 threads/],
      [{ ...good, payload_b64: "not base64!" }, /payload_b64 is not canonical base64/],
      [{ ...good, job: "" }, /job must be/],
      [Object.fromEntries(Object.entries(good).filter(([k]) => k !== "kernel")), /lacks kernel/],
    ];
    for (const [d, re] of cases) expect(() => parseJobDescriptor(JSON.stringify(d)), re.source).toThrow(new RegExp(`^invalid: .*${re.source}`));
    expect(() => parseJobDescriptor("[1]")).toThrow(/^invalid: job descriptor must be a JSON object/);
    expect(() => parseJobDescriptor("{")).toThrow(/^invalid: job descriptor is not JSON/);
    const big = makeJobDescriptor({ ...good }, new Uint8Array(300 * 1024));
    expect(() => parseJobDescriptor(JSON.stringify(big))).toThrow(/^invalid: payload is 307200 bytes, the limit is 262144/);
  });
});
