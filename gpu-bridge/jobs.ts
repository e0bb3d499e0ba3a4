/**
 * Jobs: descriptor validation, and one queue per GPU that runs jobs on the
 * backend within each lease's streams, reporting every step to
 * `/<gpu-id>/status`.
 * @module
 */
import { createHash } from "node:crypto";
import { BusyError, InvalidError, NineError, PermissionError } from "../nine-door/index.ts";
import type { LeaseBook } from "./leases.ts";
import { WORKER_ID } from "./leases.ts";
import type { GpuBackend, GpuInfo, JobDescriptor, JobResult } from "./types.ts";

/** Limits on job descriptors. */
export interface JobLimits {
  /** Largest decoded payload, bytes. Default 256 KiB (the descriptor must fit one 9P write). */
  readonly maxPayloadBytes: number;
  /** Longest `timeout_ms`. Default 600 000 (10 minutes). */
  readonly maxTimeoutMs: number;
  /** Jobs one worker may have queued (not yet running) on one GPU. Default 64. */
  readonly maxQueuedPerLease: number;
  /** Jobs a GPU runs at once, across leases. Default 8. */
  readonly concurrency: number;
}

/** The default {@link JobLimits}. */
export const DEFAULT_JOB_LIMITS: JobLimits = { maxPayloadBytes: 256 * 1024, maxTimeoutMs: 600_000, maxQueuedPerLease: 64, concurrency: 8 };

const FIELDS = ["job", "worker", "kernel", "grid", "block", "bytes_hash", "payload_b64", "timeout_ms"] as const;
const JOB_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
const KERNEL = /^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$/;
const HASH = /^sha256:[0-9a-f]{64}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** CUDA's limits: grid x < 2^31, y and z ≤ 65 535; block x, y ≤ 1024, z ≤ 64, x·y·z ≤ 1024. */
const GRID_MAX = [2 ** 31 - 1, 65_535, 65_535] as const;
const BLOCK_MAX = [1024, 1024, 64] as const;

/**
 * A descriptor that passed {@link parseJobDescriptor}, with its payload decoded.
 *
 * @example
 * ```ts
 * const { descriptor, payload } = parseJobDescriptor(text);
 * ```
 */
export interface ParsedJob {
  readonly descriptor: JobDescriptor;
  readonly payload: Uint8Array;
}

/**
 * Builds a descriptor for `payload`, computing `bytes_hash` and
 * `payload_b64`: what a worker (or a test) writes to `/<gpu-id>/job`.
 *
 * @example
 * ```ts
 * const text = JSON.stringify(makeJobDescriptor({ job: "j1", worker: "worker-3", kernel: "saxpy", grid: [64, 1, 1], block: [256, 1, 1], timeout_ms: 5000 }, payload));
 * ```
 */
export function makeJobDescriptor(fields: Omit<JobDescriptor, "bytes_hash" | "payload_b64">, payload: Uint8Array): JobDescriptor {
  return {
    job: fields.job,
    worker: fields.worker,
    kernel: fields.kernel,
    grid: fields.grid,
    block: fields.block,
    bytes_hash: `sha256:${createHash("sha256").update(payload).digest("hex")}`,
    payload_b64: Buffer.from(payload).toString("base64"),
    timeout_ms: fields.timeout_ms,
  };
}

/**
 * Parses and checks one descriptor: strict JSON object, no unknown or
 * missing fields, ids and kernel names of a safe form, grid and block
 * within CUDA's limits, canonical base64, payload size, `bytes_hash` equal
 * to the SHA-256 of the decoded payload, `timeout_ms` from 1 to the limit.
 * Every refusal is `invalid: …` naming the field.
 *
 * @example
 * ```ts
 * parseJobDescriptor('{"job":"j1",…,"bytes_hash":"sha256:00…"}'); // throws "invalid: bytes_hash does not match the payload (sha256:9f86…)"
 * ```
 */
export function parseJobDescriptor(text: string, limits: Pick<JobLimits, "maxPayloadBytes" | "maxTimeoutMs"> = DEFAULT_JOB_LIMITS): ParsedJob {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new InvalidError("job descriptor is not JSON: write one JSON object per write");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new InvalidError("job descriptor must be a JSON object");
  const d = value as Record<string, unknown>;
  for (const k of Object.keys(d)) {
    if (!(FIELDS as readonly string[]).includes(k)) throw new InvalidError(`job descriptor field ${JSON.stringify(k).slice(0, 40)} is unknown: expected ${FIELDS.join(", ")}`);
  }
  for (const k of FIELDS) if (!(k in d)) throw new InvalidError(`job descriptor lacks ${k}`);
  const { job, worker, kernel, grid, block, bytes_hash, payload_b64, timeout_ms } = d;
  if (typeof job !== "string" || !JOB_ID.test(job)) throw new InvalidError("job must be 1-64 letters, digits, '.', '_', ':', '-'");
  if (typeof worker !== "string" || !WORKER_ID.test(worker)) throw new InvalidError("worker must be a worker id such as worker-3");
  if (typeof kernel !== "string" || !KERNEL.test(kernel)) throw new InvalidError("kernel must be a name of letters, digits, '_', '.', ':', '-'");
  const g = dims("grid", grid, GRID_MAX);
  const b = dims("block", block, BLOCK_MAX);
  if (b[0] * b[1] * b[2] > 1024) throw new InvalidError(`block has ${b[0] * b[1] * b[2]} threads, at most 1024`);
  if (typeof timeout_ms !== "number" || !Number.isSafeInteger(timeout_ms) || timeout_ms < 1 || timeout_ms > limits.maxTimeoutMs) {
    throw new InvalidError(`timeout_ms must be a whole number from 1 to ${limits.maxTimeoutMs}`);
  }
  if (typeof bytes_hash !== "string" || !HASH.test(bytes_hash)) throw new InvalidError("bytes_hash must be sha256:<64 lowercase hex digits>");
  if (typeof payload_b64 !== "string" || !BASE64.test(payload_b64)) throw new InvalidError("payload_b64 is not canonical base64");
  const size = (payload_b64.length / 4) * 3 - (payload_b64.endsWith("==") ? 2 : payload_b64.endsWith("=") ? 1 : 0);
  if (size > limits.maxPayloadBytes) throw new InvalidError(`payload is ${size} bytes, the limit is ${limits.maxPayloadBytes}`);
  const payload = new Uint8Array(Buffer.from(payload_b64, "base64"));
  const actual = `sha256:${createHash("sha256").update(payload).digest("hex")}`;
  if (actual !== bytes_hash) throw new InvalidError(`bytes_hash does not match the payload (its SHA-256 is ${actual})`);
  return { descriptor: { job, worker, kernel, grid: g, block: b, bytes_hash, payload_b64, timeout_ms }, payload };
}

function dims(name: string, v: unknown, max: readonly [number, number, number]): [number, number, number] {
  if (!Array.isArray(v) || v.length !== 3 || !v.every((n, i) => Number.isSafeInteger(n) && n >= 1 && n <= max[i]!)) {
    throw new InvalidError(`${name} must be [x, y, z] whole numbers ≥ 1, at most [${max.join(", ")}]`);
  }
  return [v[0], v[1], v[2]] as [number, number, number];
}

/**
 * One line of `/<gpu-id>/status`.
 *
 * @example
 * ```json
 * {"job":"j1","worker":"worker-3","state":"OK","result":{"checksum":"sha256:9f86d081884c7d65","duration_ms":0.19},"ts_ms":1710238443210}
 * ```
 */
export interface StatusRecord {
  readonly job: string;
  readonly worker: string;
  readonly state: "QUEUED" | "RUNNING" | "OK" | "ERR";
  readonly reason?: string;
  readonly result?: JobResult;
  readonly ts_ms: number;
}

/**
 * Options of `new JobRunner(gpu, options)`.
 *
 * @example
 * ```ts
 * new JobRunner(gpu, { backend, leases, onStatus: (s) => status.append(`${JSON.stringify(s)}\n`) });
 * ```
 */
export interface JobRunnerOptions {
  readonly backend: GpuBackend;
  readonly leases: LeaseBook;
  readonly limits?: Partial<JobLimits>;
  /** Every status record, in order. */
  onStatus(record: StatusRecord): void;
  readonly now?: () => number;
}

interface QueuedJob {
  readonly descriptor: JobDescriptor;
  readonly payload: Uint8Array;
  readonly seq: number;
}

/**
 * The job queue of one GPU. `submit` checks the worker's lease and queues
 * the job (status `QUEUED`); jobs start (`RUNNING`) while the GPU runs
 * fewer than `concurrency` jobs and the worker's lease has a free stream,
 * highest lease priority first, then in arrival order; they end `OK` with
 * the backend's result, or `ERR` with a reason: `timeout: …` (the backend
 * is aborted, which kills a real executor), `lease released: …`, or the
 * backend's failure.
 *
 * @example
 * ```ts
 * const runner = new JobRunner(gpu, { backend, leases, onStatus });
 * runner.submit(parseJobDescriptor(text)); // QUEUED, then RUNNING, then OK
 * ```
 */
export class JobRunner {
  readonly #gpu: GpuInfo;
  readonly #options: JobRunnerOptions;
  readonly #limits: JobLimits;
  readonly #now: () => number;
  readonly #queue: QueuedJob[] = [];
  readonly #running = new Map<string, { worker: string; abort: AbortController }>();
  readonly #runningPerWorker = new Map<string, number>();
  #seq = 0;
  #closed = false;

  constructor(gpu: GpuInfo, options: JobRunnerOptions) {
    this.#gpu = gpu;
    this.#options = options;
    this.#limits = { ...DEFAULT_JOB_LIMITS, ...options.limits };
    this.#now = options.now ?? Date.now;
  }

  /** Jobs queued and running. */
  get load(): { queued: number; running: number } {
    return { queued: this.#queue.length, running: this.#running.size };
  }

  /**
   * Queues a validated job. Throws `permission:` when the worker holds no
   * ACTIVE lease on this GPU, `invalid:` for a job id already queued or
   * running here, `busy:` when the worker's queue is full.
   *
   * @example
   * ```ts
   * runner.submit(parseJobDescriptor(text));
   * ```
   */
  submit(job: ParsedJob): void {
    const { descriptor } = job;
    if (this.#closed) throw new BusyError(`${this.#gpu.id} is shutting down`);
    if (this.#options.leases.get(this.#gpu.id, descriptor.worker) === undefined) {
      throw new PermissionError(`${descriptor.worker} holds no lease on ${this.#gpu.id}`);
    }
    if (this.#running.has(descriptor.job) || this.#queue.some((q) => q.descriptor.job === descriptor.job)) {
      throw new InvalidError(`job ${descriptor.job} is already queued or running on ${this.#gpu.id}: use a new job id`);
    }
    const queued = this.#queue.filter((q) => q.descriptor.worker === descriptor.worker).length;
    if (queued >= this.#limits.maxQueuedPerLease) {
      throw new BusyError(`${descriptor.worker} has ${queued} jobs queued on ${this.#gpu.id}, the limit: wait for some to finish`);
    }
    this.#queue.push({ descriptor, payload: job.payload, seq: this.#seq++ });
    this.#status(descriptor, "QUEUED");
    this.#pump();
  }

  /**
   * Ends `worker`'s queued and running jobs with `ERR` `lease released: <reason>`.
   *
   * @example
   * ```ts
   * runner.cancelWorker("worker-3", "ttl expired");
   * ```
   */
  cancelWorker(worker: string, reason: string): void {
    const why = new BusyError(`lease released: ${reason}`);
    for (let i = this.#queue.length - 1; i >= 0; i--) {
      const q = this.#queue[i]!;
      if (q.descriptor.worker !== worker) continue;
      this.#queue.splice(i, 1);
      this.#status(q.descriptor, "ERR", { reason: why.detail });
    }
    for (const r of this.#running.values()) if (r.worker === worker) r.abort.abort(why);
  }

  /**
   * Refuses new jobs and aborts the running ones (`ERR closed: …`).
   *
   * @example
   * ```ts
   * runner.close("bridge stopping");
   * ```
   */
  close(reason: string): void {
    this.#closed = true;
    const why = new BusyError(`bridge closing: ${reason}`);
    for (const q of this.#queue.splice(0)) this.#status(q.descriptor, "ERR", { reason: why.detail });
    for (const r of this.#running.values()) r.abort.abort(why);
  }

  #pump(): void {
    while (this.#running.size < this.#limits.concurrency) {
      const next = this.#pick();
      if (next === undefined) return;
      this.#queue.splice(this.#queue.indexOf(next), 1);
      this.#start(next);
    }
  }

  /** The highest-priority, earliest job whose lease has a free stream. */
  #pick(): QueuedJob | undefined {
    let best: QueuedJob | undefined;
    let bestPriority = -1;
    for (const q of this.#queue) {
      const lease = this.#options.leases.get(this.#gpu.id, q.descriptor.worker);
      if (lease === undefined) continue;
      if ((this.#runningPerWorker.get(q.descriptor.worker) ?? 0) >= lease.streams) continue;
      if (lease.priority > bestPriority) {
        best = q;
        bestPriority = lease.priority;
      }
    }
    return best;
  }

  #start(job: QueuedJob): void {
    const { descriptor } = job;
    const abort = new AbortController();
    this.#running.set(descriptor.job, { worker: descriptor.worker, abort });
    this.#runningPerWorker.set(descriptor.worker, (this.#runningPerWorker.get(descriptor.worker) ?? 0) + 1);
    this.#status(descriptor, "RUNNING");
    const timer = setTimeout(() => abort.abort(new BusyError(`timeout: job ran past its timeout_ms of ${descriptor.timeout_ms}`)), descriptor.timeout_ms);
    const lease = this.#options.leases.get(this.#gpu.id, descriptor.worker);
    let run: Promise<JobResult>;
    try {
      run = this.#options.backend.runJob({ gpu: this.#gpu, descriptor, payload: job.payload, signal: abort.signal, ...(lease ? { memoryLimitMb: lease.mem_mb } : {}) });
    } catch (err) {
      run = Promise.reject(err);
    }
    run.then(
      (result) => this.#finish(descriptor, timer, abort.signal.aborted ? { reason: reasonOf(abort.signal.reason) } : { result }),
      (err: unknown) => this.#finish(descriptor, timer, { reason: abort.signal.aborted ? reasonOf(abort.signal.reason) : reasonOf(err) }),
    );
  }

  #finish(descriptor: JobDescriptor, timer: NodeJS.Timeout, end: { result?: JobResult; reason?: string }): void {
    clearTimeout(timer);
    this.#running.delete(descriptor.job);
    const n = (this.#runningPerWorker.get(descriptor.worker) ?? 1) - 1;
    if (n > 0) this.#runningPerWorker.set(descriptor.worker, n);
    else this.#runningPerWorker.delete(descriptor.worker);
    if (end.result !== undefined) this.#status(descriptor, "OK", { result: end.result });
    else this.#status(descriptor, "ERR", { reason: end.reason ?? "failed" });
    this.#pump();
  }

  #status(descriptor: JobDescriptor, state: StatusRecord["state"], extra: { reason?: string; result?: JobResult } = {}): void {
    this.#options.onStatus({ job: descriptor.job, worker: descriptor.worker, state, ...extra, ts_ms: this.#now() });
  }
}

/** A status reason: a NineError's detail (`timeout: …` keeps its own words), else the message. */
function reasonOf(err: unknown): string {
  if (err instanceof NineError) return err.detail.slice(0, 300);
  if (err instanceof Error) return err.message.slice(0, 300);
  return String(err).slice(0, 300);
}

