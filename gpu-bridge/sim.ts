/**
 * The simulated backend: deterministic GPUs for CI, demos and benchmarks.
 * @module
 */
import { createHash } from "node:crypto";
import type { GpuBackend, GpuInfo, GpuProcess, JobResult, RunRequest } from "./types.ts";
import { JobFailedError } from "./types.ts";
import { BusyError, NotFoundError } from "../nine-door/index.ts";

/**
 * One simulated GPU's description.
 *
 * @example
 * ```ts
 * const spec: SimGpuSpec = { name: "Cohesix SimGPU 16G", memory_mb: 16384, sm_count: 48 };
 * ```
 */
export interface SimGpuSpec {
  readonly name: string;
  readonly memory_mb: number;
  readonly sm_count: number;
}

/**
 * Options of `new SimBackend(options)`.
 *
 * @example
 * ```ts
 * const sim = new SimBackend({ timeScale: 0 }); // jobs finish at once (benchmarks of the bridge itself)
 * ```
 */
export interface SimBackendOptions {
  /** The GPUs; default GPU-0 16 GiB / 48 SMs and GPU-1 24 GiB / 72 SMs. */
  readonly gpus?: readonly SimGpuSpec[];
  /** Multiplies the simulated duration before waiting it out; 0 finishes jobs at once. Default 1. */
  readonly timeScale?: number;
}

/** The default simulated GPUs. */
export const DEFAULT_SIM_GPUS: readonly SimGpuSpec[] = [
  { name: "Cohesix SimGPU 16G", memory_mb: 16384, sm_count: 48 },
  { name: "Cohesix SimGPU 24G", memory_mb: 24576, sm_count: 72 },
];

/** Host-to-device bandwidth assumed for the payload copy, bytes per millisecond (12 GB/s). */
const COPY_BYTES_PER_MS = 12_000_000;
/** Threads one SM retires per millisecond (64 lanes at ~1 GHz). */
const THREADS_PER_SM_MS = 64_000;
/** Fixed cost of a launch, milliseconds. */
const LAUNCH_MS = 0.02;

/**
 * The simulated duration of a job, in milliseconds: a fixed launch cost,
 * the payload's copy at 12 GB/s, and `grid × block` threads spread over the
 * GPU's SMs at 64 threads per SM per microsecond. Deterministic.
 *
 * @example
 * ```ts
 * simDurationMs({ payloadBytes: 1 << 20, grid: [1024, 1, 1], block: [256, 1, 1], smCount: 48 }); // ≈ 0.19
 * ```
 */
export function simDurationMs(job: { payloadBytes: number; grid: readonly number[]; block: readonly number[]; smCount: number }): number {
  const threads = job.grid.reduce((a, b) => a * b, 1) * job.block.reduce((a, b) => a * b, 1);
  const ms = LAUNCH_MS + job.payloadBytes / COPY_BYTES_PER_MS + threads / (Math.max(1, job.smCount) * THREADS_PER_SM_MS);
  return Math.round(ms * 1000) / 1000;
}

/**
 * Deterministic GPUs. `GPU-0` and `GPU-1` by default, with UUIDs derived
 * from their index and name. Memory is accounted per lease through
 * {@link SimBackend.reserve}: `listGpus()` reports reserved memory as used,
 * and `processes()` lists one pseudo-process per reservation. Jobs wait out
 * {@link simDurationMs} (scaled by `timeScale`) and return
 * `{checksum, threads, duration_ms, kernel}`, where `checksum` is the
 * payload's SHA-256 prefix; a kernel named `fault` fails with
 * `kernel fault`, for tests.
 *
 * @example
 * ```ts
 * const sim = new SimBackend();
 * const [gpu0] = await sim.listGpus(); // { id: "GPU-0", memory_mb: 16384, … }
 * sim.reserve("GPU-0", "worker-1", 4096);
 * (await sim.listGpus())[0].memory_used_mb; // 4096
 * ```
 */
export class SimBackend implements GpuBackend {
  readonly kind = "sim" as const;
  readonly #gpus: readonly GpuInfo[];
  readonly #timeScale: number;
  readonly #reserved = new Map<string, Map<string, number>>();

  constructor(options: SimBackendOptions = {}) {
    const specs = options.gpus ?? DEFAULT_SIM_GPUS;
    this.#timeScale = options.timeScale ?? 1;
    this.#gpus = specs.map((spec, index) => {
      const h = createHash("sha256").update(`cohesix-sim-gpu/${index}/${spec.name}`).digest("hex");
      const uuid = `GPU-${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
      return { id: `GPU-${index}`, name: spec.name, uuid, memory_mb: spec.memory_mb, sm_count: spec.sm_count, driver_version: "sim-1.0", index, visibleDevice: uuid, memory_used_mb: 0 };
    });
  }

  get description(): string {
    return `sim (${this.#gpus.length} simulated GPUs: ${this.#gpus.map((g) => `${g.id} ${g.memory_mb} MiB`).join(", ")})`;
  }

  async listGpus(): Promise<readonly GpuInfo[]> {
    return this.#gpus.map((g) => ({ ...g, memory_used_mb: this.reservedMb(g.id) }));
  }

  async processes(): Promise<readonly GpuProcess[]> {
    const out: GpuProcess[] = [];
    let pid = 100_000;
    for (const g of this.#gpus) {
      for (const mb of this.#reserved.get(g.id)?.values() ?? []) out.push({ pid: pid++, gpuUuid: g.uuid, usedMb: mb });
    }
    return out;
  }

  /**
   * Reserves `mb` MiB on `gpuId` for `holder` (a worker's lease). Throws
   * `not found:` for an unknown GPU and `busy:` when the memory is not free.
   *
   * @example
   * ```ts
   * sim.reserve("GPU-1", "worker-2", 8192);
   * ```
   */
  reserve(gpuId: string, holder: string, mb: number): void {
    const gpu = this.#gpus.find((g) => g.id === gpuId);
    if (gpu === undefined) throw new NotFoundError(`simulated GPU ${gpuId} does not exist`);
    const held = this.#reserved.get(gpuId) ?? new Map<string, number>();
    const used = this.reservedMb(gpuId) - (held.get(holder) ?? 0);
    if (used + mb > gpu.memory_mb) throw new BusyError(`${gpuId} has ${gpu.memory_mb - used} MiB free, ${mb} MiB asked`);
    held.set(holder, mb);
    this.#reserved.set(gpuId, held);
  }

  /**
   * Drops `holder`'s reservation on `gpuId` (no-op when there is none).
   *
   * @example
   * ```ts
   * sim.unreserve("GPU-1", "worker-2");
   * ```
   */
  unreserve(gpuId: string, holder: string): void {
    this.#reserved.get(gpuId)?.delete(holder);
  }

  /**
   * MiB reserved on `gpuId` by all holders.
   *
   * @example
   * ```ts
   * sim.reservedMb("GPU-0"); // 0
   * ```
   */
  reservedMb(gpuId: string): number {
    let sum = 0;
    for (const mb of this.#reserved.get(gpuId)?.values() ?? []) sum += mb;
    return sum;
  }

  runJob(request: RunRequest): Promise<JobResult> {
    const { gpu, descriptor, payload, signal } = request;
    const duration = simDurationMs({ payloadBytes: payload.length, grid: descriptor.grid, block: descriptor.block, smCount: gpu.sm_count });
    const threads = descriptor.grid.reduce((a, b) => a * b, 1) * descriptor.block.reduce((a, b) => a * b, 1);
    const finish = (): JobResult => {
      if (descriptor.kernel === "fault") throw new JobFailedError("kernel fault: simulated illegal address");
      return {
        kernel: descriptor.kernel,
        checksum: `sha256:${createHash("sha256").update(payload).digest("hex").slice(0, 16)}`,
        threads,
        duration_ms: duration,
      };
    };
    const wait = duration * this.#timeScale;
    if (signal.aborted) return Promise.reject(signal.reason);
    if (wait <= 0) {
      try {
        return Promise.resolve(finish());
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return new Promise<JobResult>((resolve, reject) => {
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(signal.reason);
      };
      const timer = setTimeout(() => {
        signal.removeEventListener("abort", onAbort);
        try {
          resolve(finish());
        } catch (err) {
          reject(err);
        }
      }, wait);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }
}
