/**
 * The real backend: GPUs, memory and processes from `nvidia-smi` (which
 * reads NVML), jobs run by a configured executor command pinned to the
 * leased GPU with `CUDA_VISIBLE_DEVICES`.
 * @module
 */
import { readFile } from "node:fs/promises";
import { execa, parseCommandString } from "execa";
import type { GpuBackend, GpuInfo, GpuProcess, JobResult, RunRequest } from "./types.ts";
import { GpuDriverError, JobFailedError } from "./types.ts";
import { APPS_QUERY_FIELDS, GPU_QUERY_FIELDS, gpusFromSmi, parseComputeApps, parseGpuCsv, parseSmiXml, smiFailure, type SmiXmlLog } from "./smi-parse.ts";

/**
 * Options of `new NvmlBackend(options)`.
 *
 * @example
 * ```ts
 * const nvml = new NvmlBackend({ executor: "/opt/kernels/run-job --verbose" });
 * ```
 */
export interface NvmlBackendOptions {
  /** The nvidia-smi program. Default `nvidia-smi` (found on PATH). */
  readonly smi?: string;
  /**
   * The job executor: a command line (split like a shell would, without
   * expansion) or an argv. It gets the descriptor as one JSON line on stdin
   * and `CUDA_VISIBLE_DEVICES` pinned to the GPU; it prints its result as a
   * JSON object on its last stdout line and exits 0. Without one, jobs fail
   * with `no executor configured`.
   */
  readonly executor?: string | readonly string[];
  /** How often a running job's GPU memory is checked against its lease, ms. Default 1000; 0 turns it off. */
  readonly memoryPollMs?: number;
  /** Longest nvidia-smi may take, ms. Default 15 000. */
  readonly smiTimeoutMs?: number;
}

/**
 * GPUs from `nvidia-smi --query-gpu` (CSV) merged with `nvidia-smi -q -x`
 * (for MIG devices and their SM counts); per-process memory from
 * `--query-compute-apps`. Every failure of nvidia-smi is a
 * {@link GpuDriverError} that says what to do.
 *
 * A job runs the executor in its own process group with the descriptor on
 * stdin and `CUDA_VISIBLE_DEVICES=<uuid>`, plus `COHESIX_GPU_ID`,
 * `COHESIX_GPU_UUID` and `COHESIX_JOB_ID`. Aborting (timeout, lease end)
 * kills the group by its PID with SIGKILL. While it runs, the memory its
 * processes hold (by `--query-compute-apps`, matched by process group) is
 * compared with the lease's `mem_mb`; over it, the job is killed and fails
 * with `memory: …`.
 *
 * @example
 * ```ts
 * const nvml = new NvmlBackend({ executor: ["node", "run-kernel.js"] });
 * for (const gpu of await nvml.listGpus()) console.log(gpu.id, gpu.name, gpu.memory_mb);
 * ```
 */
export class NvmlBackend implements GpuBackend {
  readonly kind = "nvml" as const;
  readonly #smi: string;
  readonly #executor: readonly string[] | undefined;
  readonly #pollMs: number;
  readonly #timeoutMs: number;
  #driver = "unknown";
  /** Process groups (= executor PIDs) of the jobs running now. */
  readonly #groups = new Set<number>();

  constructor(options: NvmlBackendOptions = {}) {
    this.#smi = options.smi ?? "nvidia-smi";
    const ex = options.executor;
    this.#executor = ex === undefined ? undefined : typeof ex === "string" ? parseCommandString(ex) : [...ex];
    if (this.#executor !== undefined && this.#executor.length === 0) throw new JobFailedError("executor command is empty");
    this.#pollMs = options.memoryPollMs ?? 1000;
    this.#timeoutMs = options.smiTimeoutMs ?? 15_000;
  }

  get description(): string {
    return `nvml (nvidia-smi, driver ${this.#driver}${this.#executor ? `, executor ${this.#executor.join(" ")}` : ", no executor"})`;
  }

  async listGpus(): Promise<readonly GpuInfo[]> {
    const [csv, xml] = await Promise.all([
      this.#run([`--query-gpu=${GPU_QUERY_FIELDS.join(",")}`, "--format=csv,noheader,nounits"]),
      this.#run(["-q", "-x"]).then(
        (text): SmiXmlLog | undefined => parseSmiXml(text),
        (err: unknown) => {
          if (err instanceof GpuDriverError) throw err;
          return undefined; // MIG details are a refinement; the CSV alone still lists the GPUs.
        },
      ),
    ]);
    const gpus = gpusFromSmi(parseGpuCsv(csv), xml);
    if (gpus[0] !== undefined) this.#driver = gpus[0].driver_version;
    return gpus;
  }

  async processes(): Promise<readonly GpuProcess[]> {
    return parseComputeApps(await this.#run([`--query-compute-apps=${APPS_QUERY_FIELDS.join(",")}`, "--format=csv,noheader,nounits"]));
  }

  async foreignMemoryMb(gpu: GpuInfo): Promise<number> {
    let sum = 0;
    for (const p of await this.processes()) {
      if (p.gpuUuid !== gpu.uuid || p.usedMb === undefined) continue;
      if (this.#groups.has(p.pid) || this.#groups.has((await groupOf(p.pid)) ?? -1)) continue;
      sum += p.usedMb;
    }
    return sum;
  }

  async runJob(request: RunRequest): Promise<JobResult> {
    const { gpu, descriptor, signal } = request;
    if (this.#executor === undefined) throw new JobFailedError("no executor configured: start the bridge with --executor CMD");
    if (signal.aborted) throw signal.reason;
    const [file, ...args] = this.#executor as [string, ...string[]];
    const started = performance.now();
    const child = execa(file, args, {
      input: `${JSON.stringify(descriptor)}\n`,
      env: {
        CUDA_VISIBLE_DEVICES: gpu.visibleDevice,
        COHESIX_GPU_ID: gpu.id,
        COHESIX_GPU_UUID: gpu.uuid,
        COHESIX_JOB_ID: descriptor.job,
      },
      detached: true,
      reject: false,
      maxBuffer: 1 << 20,
    });
    const pid = child.pid;
    if (pid !== undefined) this.#groups.add(pid);
    let killedFor: unknown;
    const kill = (why: unknown): void => {
      if (killedFor !== undefined) return;
      killedFor = why;
      if (pid === undefined) return;
      try {
        process.kill(-pid, "SIGKILL"); // the whole group: the executor and what it started
      } catch {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    };
    const onAbort = (): void => kill(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    const watch = this.#watchMemory(pid, request.memoryLimitMb, kill);
    try {
      const result = await child;
      if (killedFor !== undefined) throw killedFor;
      if (result.failed || result.exitCode !== 0) {
        const why = result.signal ? `killed by ${result.signal}` : result.exitCode === undefined ? `did not run (${result.shortMessage})` : `exited ${result.exitCode}`;
        const tail = String(result.stderr).trim().split("\n").pop() ?? "";
        throw new JobFailedError(`executor ${why}${tail ? `: ${tail.slice(0, 200)}` : ""}`);
      }
      return resultOf(String(result.stdout), performance.now() - started);
    } finally {
      watch.stop();
      if (pid !== undefined) this.#groups.delete(pid);
      signal.removeEventListener("abort", onAbort);
    }
  }

  #watchMemory(pid: number | undefined, limitMb: number | undefined, kill: (why: unknown) => void): { stop(): void } {
    if (pid === undefined || limitMb === undefined || this.#pollMs <= 0) return { stop() {} };
    let stopped = false;
    const tick = async (): Promise<void> => {
      let used = 0;
      try {
        for (const p of await this.processes()) {
          if (p.usedMb !== undefined && (p.pid === pid || (await groupOf(p.pid)) === pid)) used += p.usedMb;
        }
      } catch {
        return; // a failed poll is not the job's fault
      }
      if (!stopped && used > limitMb) kill(new JobFailedError(`memory: job used ${used} MiB, its lease allows ${limitMb} MiB`));
    };
    const timer = setInterval(() => void tick(), this.#pollMs);
    timer.unref();
    return {
      stop() {
        stopped = true;
        clearInterval(timer);
      },
    };
  }

  async #run(args: readonly string[]): Promise<string> {
    let result;
    try {
      result = await execa(this.#smi, args, { reject: false, timeout: this.#timeoutMs });
    } catch (err) {
      throw new GpuDriverError(`${this.#smi} could not run: ${(err as Error).message}`, { exitCode: -1, output: "", cause: err });
    }
    if (result.failed && result.exitCode === undefined) {
      const missing = (result as { code?: string }).code === "ENOENT";
      throw new GpuDriverError(
        missing ? `${this.#smi} not found: install the NVIDIA driver utilities or run the bridge with --backend sim` : `${this.#smi} did not finish: ${result.shortMessage}`,
        { exitCode: -1, output: String(result.stderr ?? "") },
      );
    }
    const failure = smiFailure({ exitCode: result.exitCode, stdout: String(result.stdout), stderr: String(result.stderr) });
    if (failure) throw failure;
    return String(result.stdout);
  }
}

/** The process group of `pid` (Linux /proc), or undefined. */
async function groupOf(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[2]); // state ppid pgrp …
  } catch {
    return undefined;
  }
}

/** The executor's result: its last stdout line if that is a flat JSON object, else a summary. */
function resultOf(stdout: string, elapsedMs: number): JobResult {
  const last = stdout.trim().split("\n").pop() ?? "";
  const duration_ms = Math.round(elapsedMs * 1000) / 1000;
  try {
    const parsed: unknown = JSON.parse(last);
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
      const out: Record<string, string | number | boolean | null> = {};
      for (const [k, v] of Object.entries(parsed)) {
        if (v === null || typeof v === "string" || typeof v === "number" || typeof v === "boolean") out[k] = v;
      }
      return { duration_ms, ...out };
    }
  } catch {
    // not JSON: summarised below
  }
  return { duration_ms, stdout: stdout.trim().slice(0, 200) };
}
