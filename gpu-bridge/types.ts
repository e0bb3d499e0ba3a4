/**
 * The bridge's vocabulary: what a GPU is, what a backend does, what a job
 * descriptor holds and what a finished job reports. Plain data and one
 * interface; no I/O here.
 * @module
 */
import { NineError } from "../nine-door/index.ts";

/** Which backend serves the GPUs. */
export type BackendKind = "nvml" | "sim";

/**
 * One GPU as the bridge serves it. The first six fields are exactly the
 * `info` file's JSON (see {@link infoRecord}); the rest are for the bridge.
 *
 * @example
 * ```ts
 * const gpu: GpuInfo = {
 *   id: "GPU-0", name: "NVIDIA A100-SXM4-40GB", uuid: "GPU-5e1b…", memory_mb: 40960,
 *   sm_count: 108, driver_version: "535.129.03", index: 0, visibleDevice: "GPU-5e1b…", memory_used_mb: 0,
 * };
 * ```
 */
export interface GpuInfo {
  /** `GPU-<index>`; a MIG device of a MIG-enabled GPU is `GPU-<index>-MIG-<n>`. */
  readonly id: string;
  readonly name: string;
  /** The NVML UUID (`GPU-…`, or `MIG-…` for a MIG device). */
  readonly uuid: string;
  readonly memory_mb: number;
  /** Streaming multiprocessors; 0 when the driver does not say and the product is unknown. */
  readonly sm_count: number;
  readonly driver_version: string;
  /** The NVML index of the physical GPU. */
  readonly index: number;
  /** What `CUDA_VISIBLE_DEVICES` is set to for jobs on this GPU. */
  readonly visibleDevice: string;
  /** Memory in use on the device when it was listed, MiB (0 when unknown). */
  readonly memory_used_mb: number;
}

/**
 * The `info` file's record: exactly `{id, name, uuid, memory_mb, sm_count, driver_version}`.
 *
 * @example
 * ```ts
 * JSON.stringify(infoRecord(gpu)); // {"id":"GPU-0","name":…,"driver_version":"535.129.03"}
 * ```
 */
export function infoRecord(gpu: GpuInfo): Record<string, string | number> {
  return {
    id: gpu.id,
    name: gpu.name,
    uuid: gpu.uuid,
    memory_mb: gpu.memory_mb,
    sm_count: gpu.sm_count,
    driver_version: gpu.driver_version,
  };
}

/**
 * A process holding GPU memory, from `--query-compute-apps` (or the
 * simulator's own table).
 *
 * @example
 * ```ts
 * const p: GpuProcess = { pid: 4242, gpuUuid: "GPU-5e1b…", usedMb: 1024 };
 * ```
 */
export interface GpuProcess {
  readonly pid: number;
  readonly gpuUuid: string;
  /** MiB; `undefined` when the driver answers `[N/A]` (MIG, some Windows modes). */
  readonly usedMb: number | undefined;
}

/**
 * A validated job descriptor, as written to `/<gpu-id>/job`.
 *
 * @example
 * ```ts
 * const d: JobDescriptor = {
 *   job: "j1", worker: "worker-3", kernel: "saxpy", grid: [64, 1, 1], block: [256, 1, 1],
 *   bytes_hash: "sha256:…", payload_b64: "AAEC", timeout_ms: 5000,
 * };
 * ```
 */
export interface JobDescriptor {
  readonly job: string;
  readonly worker: string;
  readonly kernel: string;
  readonly grid: readonly [number, number, number];
  readonly block: readonly [number, number, number];
  readonly bytes_hash: string;
  readonly payload_b64: string;
  readonly timeout_ms: number;
}

/** A small JSON object a finished job reports in its `OK` status line. */
export type JobResult = Readonly<Record<string, string | number | boolean | null>>;

/**
 * What a backend is asked to run: the job, its decoded payload and the GPU.
 * `signal` aborts when the job times out or its lease ends; the backend must
 * stop the work (kill the executor) and settle promptly.
 *
 * @example
 * ```ts
 * const result = await backend.runJob({ gpu, descriptor, payload, signal: AbortSignal.timeout(5000) });
 * ```
 */
export interface RunRequest {
  readonly gpu: GpuInfo;
  readonly descriptor: JobDescriptor;
  readonly payload: Uint8Array;
  readonly signal: AbortSignal;
  /** The lease's `mem_mb`; a backend that can watch memory stops a job that uses more. */
  readonly memoryLimitMb?: number;
}

/**
 * A GPU backend: lists GPUs, reports per-process memory, runs jobs.
 * Implementations: {@link NvmlBackend} (nvidia-smi) and {@link SimBackend}.
 *
 * Concurrency: `runJob` is called concurrently (one call per running job);
 * `listGpus` and `processes` may run while jobs run.
 *
 * @example
 * ```ts
 * const backend: GpuBackend = new SimBackend();
 * const [gpu] = await backend.listGpus();
 * const result = await backend.runJob({ gpu, descriptor, payload, signal });
 * ```
 */
export interface GpuBackend {
  readonly kind: BackendKind;
  /** One line for logs: `sim (2 simulated GPUs)`, `nvml (nvidia-smi 535.129.03)`. */
  readonly description: string;
  /** The GPUs, in index order. Throws {@link GpuDriverError} when the driver cannot be reached. */
  listGpus(): Promise<readonly GpuInfo[]>;
  /** Processes holding GPU memory, across all GPUs. */
  processes(): Promise<readonly GpuProcess[]>;
  /**
   * Runs one job and resolves with its result; rejects with a
   * {@link JobFailedError} when the job itself failed, or with the signal's
   * reason once aborted.
   */
  runJob(request: RunRequest): Promise<JobResult>;
  /**
   * Memory on `gpu` held by processes the bridge did not start, MiB; leases
   * are granted only from what is left. Absent: none (the simulator).
   */
  foreignMemoryMb?(gpu: GpuInfo): Promise<number>;
  /** Memory reserved for a lease (the simulator accounts it; NVML only records it). */
  reserve?(gpuId: string, holder: string, mb: number): void;
  /** Drops a reservation made by {@link GpuBackend.reserve}. */
  unreserve?(gpuId: string, holder: string): void;
}

/**
 * `nvidia-smi` failed: no driver, no NVML library, GPU lost. Its class is
 * `io`, so a 9P client sees `io: nvidia-smi failed …`.
 *
 * @example
 * ```ts
 * try { await backend.listGpus(); } catch (err) { if (err instanceof GpuDriverError) console.error(err.exitCode); }
 * ```
 */
export class GpuDriverError extends NineError {
  /** nvidia-smi's exit code (9: driver not loaded; 12: NVML library missing), or -1 when it did not run. */
  readonly exitCode: number;
  /** What nvidia-smi printed (stdout and stderr, trimmed). */
  readonly output: string;

  constructor(detail: string, options: { exitCode: number; output: string; cause?: unknown }) {
    super("io", detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "GpuDriverError";
    this.exitCode = options.exitCode;
    this.output = options.output;
  }
}

/**
 * nvidia-smi printed something the parsers do not understand (a format
 * change). Class `io`.
 *
 * @example
 * ```ts
 * parseGpuCsv("garbage"); // throws SmiFormatError "io: nvidia-smi --query-gpu line 1: …"
 * ```
 */
export class SmiFormatError extends NineError {
  constructor(detail: string) {
    super("io", detail);
    this.name = "SmiFormatError";
  }
}

/**
 * A job ran and failed (the executor exited non-zero, the kernel faulted).
 * The status line reads `ERR` with this error's detail as its reason.
 *
 * @example
 * ```ts
 * throw new JobFailedError("executor exited 3: out of memory");
 * ```
 */
export class JobFailedError extends NineError {
  constructor(detail: string) {
    super("io", detail);
    this.name = "JobFailedError";
  }
}
