/**
 * Leases: which worker holds how much of which GPU, for how long.
 * Commands arrive on `/<gpu-id>/ctl`; every change is a `gpu-lease/v1`
 * record appended to `/<gpu-id>/lease`.
 * @module
 */
import { BusyError, InvalidError, NotFoundError } from "../nine-door/index.ts";
import type { GpuLeaseRecord } from "../workers/index.ts";
import type { GpuBackend, GpuInfo } from "./types.ts";

/** The `schema` of every lease record. */
export const LEASE_SCHEMA = "gpu-lease/v1";

/** A worker id as the bridge accepts it (`worker-3`). */
export const WORKER_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * One line of `/<gpu-id>/lease`, and the `lease` in a LEASE reply: the
 * `gpu-lease/v1` record, defined once with the worker API that reads it.
 *
 * @example
 * ```json
 * {"schema":"gpu-lease/v1","gpu_id":"GPU-0","worker":"worker-3","mem_mb":4096,"streams":2,"priority":1,"ttl_s":120,"state":"ACTIVE","ts_ms":1710238443000}
 * ```
 */
export type LeaseRecord = GpuLeaseRecord;

/**
 * What a LEASE command asks for.
 *
 * @example
 * ```ts
 * parseCtlCommand("LEASE worker-3 mem=4096 streams=2 priority=1 ttl=120");
 * // { op: "LEASE", worker: "worker-3", mem_mb: 4096, streams: 2, priority: 1, ttl_s: 120 }
 * ```
 */
export interface LeaseRequest {
  readonly worker: string;
  readonly mem_mb: number;
  readonly streams: number;
  readonly priority: number;
  /** `undefined`: the bridge's default ttl. */
  readonly ttl_s: number | undefined;
}

/**
 * A parsed `ctl` command.
 *
 * @example
 * ```ts
 * const cmd: CtlCommand = { op: "RELEASE", worker: "worker-3", reason: "done" };
 * ```
 */
export type CtlCommand = ({ readonly op: "LEASE" } & LeaseRequest) | { readonly op: "RELEASE"; readonly worker: string; readonly reason: string };

/** Limits on lease commands. */
export interface LeaseLimits {
  /** Streams one GPU can lease out in all. Default 16. */
  readonly streamsPerGpu: number;
  /** Longest ttl, seconds. Default 86 400. */
  readonly maxTtlS: number;
  /** The ttl of a LEASE that names none, seconds. Default 3600. */
  readonly defaultTtlS: number;
  /** Highest priority. Default 1000. */
  readonly maxPriority: number;
}

/** The default {@link LeaseLimits}. */
export const DEFAULT_LEASE_LIMITS: LeaseLimits = { streamsPerGpu: 16, maxTtlS: 86_400, defaultTtlS: 3600, maxPriority: 1000 };

const USAGE = "LEASE <worker> mem=<MiB> streams=<n> [priority=<n>] [ttl=<s>] | RELEASE <worker> <reason>";

/**
 * Parses one `ctl` command. Throws `invalid:` naming what is wrong and the
 * expected form.
 *
 * @example
 * ```ts
 * parseCtlCommand("RELEASE worker-3 job done"); // { op: "RELEASE", worker: "worker-3", reason: "job done" }
 * parseCtlCommand("LEASE worker-3 mem=lots");   // throws "invalid: mem=lots: mem must be a whole number …"
 * ```
 */
export function parseCtlCommand(text: string, limits: LeaseLimits = DEFAULT_LEASE_LIMITS): CtlCommand {
  const words = text.trim().split(/\s+/);
  const [op, worker, ...rest] = words;
  if (op !== "LEASE" && op !== "RELEASE") throw new InvalidError(`unknown command ${JSON.stringify(op ?? "")}: expected ${USAGE}`);
  if (worker === undefined || !WORKER_ID.test(worker)) {
    throw new InvalidError(`${op} needs a worker id (letters, digits, '.', '-', '_'): expected ${USAGE}`);
  }
  if (op === "RELEASE") {
    const reason = rest.join(" ");
    if (reason === "") throw new InvalidError(`RELEASE needs a reason: RELEASE ${worker} <reason>`);
    if (reason.length > 200) throw new InvalidError("RELEASE reason is longer than 200 characters");
    return { op, worker, reason };
  }
  const ranges: Record<string, readonly [number, number]> = {
    mem: [1, 16 * 1024 * 1024],
    streams: [1, limits.streamsPerGpu],
    priority: [0, limits.maxPriority],
    ttl: [1, limits.maxTtlS],
  };
  const values = new Map<string, number>();
  for (const word of rest) {
    const m = /^([a-z_]+)=(.*)$/.exec(word);
    if (!m) throw new InvalidError(`${JSON.stringify(word)}: expected key=value; ${USAGE}`);
    const [, key, raw] = m as unknown as [string, string, string];
    const range = ranges[key];
    if (range === undefined) throw new InvalidError(`unknown LEASE field ${JSON.stringify(key)}: expected mem, streams, priority, ttl`);
    if (values.has(key)) throw new InvalidError(`LEASE field ${key} given twice`);
    const n = /^\d{1,12}$/.test(raw) ? Number(raw) : NaN;
    if (!(n >= range[0] && n <= range[1])) {
      throw new InvalidError(`${word}: ${key} must be a whole number from ${range[0]} to ${range[1]}`);
    }
    values.set(key, n);
  }
  for (const needed of ["mem", "streams"]) {
    if (!values.has(needed)) throw new InvalidError(`LEASE needs ${needed}=<n>: expected ${USAGE}`);
  }
  return { op, worker, mem_mb: values.get("mem")!, streams: values.get("streams")!, priority: values.get("priority") ?? 0, ttl_s: values.get("ttl") };
}

/** An ACTIVE lease held in the book. */
export interface Lease {
  readonly gpuId: string;
  readonly worker: string;
  readonly mem_mb: number;
  readonly streams: number;
  readonly priority: number;
  readonly ttl_s: number;
  readonly granted_ms: number;
}

/**
 * Options of `new LeaseBook(options)`.
 *
 * @example
 * ```ts
 * const book = new LeaseBook({ backend, gpus, onRecord: (r) => leaseLog(r.gpu_id).append(`${JSON.stringify(r)}\n`) });
 * ```
 */
export interface LeaseBookOptions {
  readonly backend: GpuBackend;
  readonly gpus: readonly GpuInfo[];
  readonly limits?: Partial<LeaseLimits>;
  /** Every ACTIVE and RELEASED record, in order. */
  onRecord(record: LeaseRecord): void;
  /** A lease ended (RELEASE, ttl, close): its jobs must stop. */
  onRelease?(lease: Lease, reason: string): void;
  /** The clock, ms since the epoch. Default `Date.now`. */
  readonly now?: () => number;
}

/**
 * The leases of every GPU. A worker holds at most one lease per GPU. A
 * lease is granted when the GPU's unleased memory (total − leased −
 * memory of processes the bridge did not start, from `backend.foreignMemoryMb`) and unleased streams (`streamsPerGpu` −
 * leased) cover it; otherwise `busy: <gpu-id> is fully leased (…)`.
 * Priority does not preempt: it orders the GPU's job queue. Each lease
 * expires after its ttl, with a RELEASED record whose reason is
 * `ttl expired`. Lease commands on one GPU run one at a time.
 *
 * @example
 * ```ts
 * const record = await book.lease("GPU-0", { worker: "worker-3", mem_mb: 4096, streams: 2, priority: 0, ttl_s: 120 });
 * book.release("GPU-0", "worker-3", "done");
 * ```
 */
export class LeaseBook {
  readonly #options: LeaseBookOptions;
  readonly #limits: LeaseLimits;
  readonly #gpus: Map<string, GpuInfo>;
  readonly #leases = new Map<string, Map<string, Lease>>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #chains = new Map<string, Promise<unknown>>();
  readonly #now: () => number;

  constructor(options: LeaseBookOptions) {
    this.#options = options;
    this.#limits = { ...DEFAULT_LEASE_LIMITS, ...options.limits };
    this.#gpus = new Map(options.gpus.map((g) => [g.id, g]));
    this.#now = options.now ?? Date.now;
  }

  /** The limits in force. */
  get limits(): LeaseLimits {
    return this.#limits;
  }

  /**
   * Runs one `ctl` command for `gpuId` and returns the reply line.
   *
   * @example
   * ```ts
   * await book.command("GPU-0", "LEASE worker-3 mem=4096 streams=2 ttl=120"); // {"ok":true,"lease":{…}}
   * ```
   */
  async command(gpuId: string, text: string): Promise<string> {
    const cmd = parseCtlCommand(text, this.#limits);
    if (cmd.op === "RELEASE") {
      this.release(gpuId, cmd.worker, cmd.reason);
      return JSON.stringify({ ok: true });
    }
    const record = await this.lease(gpuId, cmd);
    return JSON.stringify({ ok: true, lease: record });
  }

  /**
   * Grants a lease, or throws `busy:` (GPU fully leased, or the worker
   * already holds one here), `not found:` (no such GPU).
   *
   * @example
   * ```ts
   * await book.lease("GPU-1", { worker: "worker-2", mem_mb: 8192, streams: 1, priority: 0, ttl_s: undefined });
   * ```
   */
  lease(gpuId: string, request: LeaseRequest): Promise<LeaseRecord> {
    const run = (this.#chains.get(gpuId) ?? Promise.resolve()).then(() => this.#grant(gpuId, request));
    const settled = run.catch(() => undefined);
    this.#chains.set(gpuId, settled);
    void settled.then(() => {
      if (this.#chains.get(gpuId) === settled) this.#chains.delete(gpuId);
    });
    return run;
  }

  async #grant(gpuId: string, request: LeaseRequest): Promise<LeaseRecord> {
    const gpu = this.#gpu(gpuId);
    const held = this.#leases.get(gpuId) ?? new Map<string, Lease>();
    if (held.has(request.worker)) {
      throw new BusyError(`${request.worker} already holds a lease on ${gpuId}: RELEASE it before asking again`);
    }
    let leasedMb = 0;
    let leasedStreams = 0;
    for (const l of held.values()) {
      leasedMb += l.mem_mb;
      leasedStreams += l.streams;
    }
    const foreign = (await this.#options.backend.foreignMemoryMb?.(gpu)) ?? 0;
    const freeMb = gpu.memory_mb - leasedMb - foreign;
    const freeStreams = this.#limits.streamsPerGpu - leasedStreams;
    if (request.mem_mb > freeMb || request.streams > freeStreams) {
      throw new BusyError(
        `${gpuId} is fully leased (asked mem=${request.mem_mb} streams=${request.streams}; free ${Math.max(0, freeMb)} of ${gpu.memory_mb} MiB` +
          `${foreign > 0 ? ` with ${foreign} MiB used by other processes` : ""}, ${freeStreams} of ${this.#limits.streamsPerGpu} streams, ${held.size} lease(s))`,
      );
    }
    this.#options.backend.reserve?.(gpuId, request.worker, request.mem_mb);
    const lease: Lease = {
      gpuId,
      worker: request.worker,
      mem_mb: request.mem_mb,
      streams: request.streams,
      priority: request.priority,
      ttl_s: request.ttl_s ?? this.#limits.defaultTtlS,
      granted_ms: this.#now(),
    };
    held.set(lease.worker, lease);
    this.#leases.set(gpuId, held);
    const timer = setTimeout(() => {
      if (this.#leases.get(gpuId)?.get(lease.worker) === lease) this.release(gpuId, lease.worker, "ttl expired");
    }, lease.ttl_s * 1000);
    timer.unref();
    this.#timers.set(key(gpuId, lease.worker), timer);
    const record = this.#record(lease, "ACTIVE", undefined);
    this.#options.onRecord(record);
    return record;
  }

  /**
   * Ends `worker`'s lease on `gpuId` with a RELEASED record carrying
   * `reason`; its queued and running jobs stop. Throws `not found:` when it
   * holds none.
   *
   * @example
   * ```ts
   * book.release("GPU-0", "worker-3", "worker exited");
   * ```
   */
  release(gpuId: string, worker: string, reason: string): LeaseRecord {
    this.#gpu(gpuId);
    const lease = this.#leases.get(gpuId)?.get(worker);
    if (lease === undefined) throw new NotFoundError(`${worker} holds no lease on ${gpuId}`);
    this.#leases.get(gpuId)!.delete(worker);
    const k = key(gpuId, worker);
    clearTimeout(this.#timers.get(k));
    this.#timers.delete(k);
    this.#options.backend.unreserve?.(gpuId, worker);
    const record = this.#record(lease, "RELEASED", reason);
    this.#options.onRecord(record);
    this.#options.onRelease?.(lease, reason);
    return record;
  }

  /**
   * `worker`'s ACTIVE lease on `gpuId`, if any.
   *
   * @example
   * ```ts
   * book.get("GPU-0", "worker-3")?.streams; // 2
   * ```
   */
  get(gpuId: string, worker: string): Lease | undefined {
    return this.#leases.get(gpuId)?.get(worker);
  }

  /**
   * The ACTIVE leases on `gpuId`.
   *
   * @example
   * ```ts
   * book.active("GPU-0").map((l) => l.worker); // ["worker-3"]
   * ```
   */
  active(gpuId: string): Lease[] {
    return [...(this.#leases.get(gpuId)?.values() ?? [])];
  }

  /**
   * Stops the ttl timers; leases are forgotten without records (the bridge
   * is going away, and its files with it).
   *
   * @example
   * ```ts
   * book.close();
   * ```
   */
  close(): void {
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    this.#leases.clear();
  }

  #gpu(gpuId: string): GpuInfo {
    const gpu = this.#gpus.get(gpuId);
    if (gpu === undefined) throw new NotFoundError(`unknown GPU ${gpuId}: this bridge serves ${[...this.#gpus.keys()].join(", ")}`);
    return gpu;
  }

  #record(lease: Lease, state: "ACTIVE" | "RELEASED", reason: string | undefined): LeaseRecord {
    return {
      schema: LEASE_SCHEMA,
      gpu_id: lease.gpuId,
      worker: lease.worker,
      mem_mb: lease.mem_mb,
      streams: lease.streams,
      priority: lease.priority,
      ttl_s: lease.ttl_s,
      state,
      ...(reason === undefined ? {} : { reason }),
      ts_ms: this.#now(),
    };
  }
}

function key(gpuId: string, worker: string): string {
  return `${gpuId}\0${worker}`;
}
