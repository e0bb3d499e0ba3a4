/**
 * The GPU side of the worker API: a worker spawned with a lease reaches its
 * GPU at `/gpu/<gpu-id>/` (the only GPU its ticket mounts) and uses it
 * through a {@link GpuSession}: read the GPU's `info` and the worker's own
 * lease record, submit job descriptors (the session fills in the worker's
 * id, the payload's SHA-256 and its base64), and wait for each job's final
 * status line (`OK` or `ERR`).
 *
 * Errors: `closed:` means the appliance revoked the worker (it is reported
 * through `Worker.onClosed` like any other); `busy:` means the bridge is
 * away for now (the status follower reopens the file by itself); refusals
 * from the bridge keep their class (`invalid:` for a bad descriptor,
 * `permission:` for a job without a lease).
 * @module
 */
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { BusyError, InvalidError, NineError, TooBigError, type Fid } from "../nine-door/index.ts";

/** `/gpu/<gpu-id>/info`: what the bridge says about the GPU. */
export interface GpuInfoRecord {
  readonly id: string;
  readonly name: string;
  readonly uuid: string;
  readonly memory_mb: number;
  readonly sm_count: number;
  readonly driver_version: string;
}

/** One `gpu-lease/v1` line of `/gpu/<gpu-id>/lease`. */
export interface GpuLeaseRecord {
  readonly schema: "gpu-lease/v1";
  readonly gpu_id: string;
  readonly worker: string;
  readonly mem_mb: number;
  readonly streams: number;
  readonly priority: number;
  readonly ttl_s: number;
  readonly state: "ACTIVE" | "RELEASED";
  readonly reason?: string;
  readonly ts_ms: number;
}

/** One line of `/gpu/<gpu-id>/status`. */
export interface GpuStatusRecord {
  readonly job: string;
  readonly worker: string;
  readonly state: "QUEUED" | "RUNNING" | "OK" | "ERR";
  readonly reason?: string;
  readonly result?: Readonly<Record<string, unknown>>;
  readonly ts_ms: number;
}

/**
 * A job as a worker hands it to {@link GpuSession.submit}: the session adds
 * `worker`, `bytes_hash` and `payload_b64`.
 *
 * @example
 * ```ts
 * const job: GpuJob = { job: "worker-3.1", kernel: "saxpy", grid: [64, 1, 1], block: [256, 1, 1], payload, timeout_ms: 5000 };
 * ```
 */
export interface GpuJob {
  /** Unique on the GPU while queued or running, e.g. `worker-3.17`. */
  readonly job: string;
  readonly kernel: string;
  /** Default `[1, 1, 1]`. */
  readonly grid?: readonly [number, number, number];
  /** Default `[1, 1, 1]`. */
  readonly block?: readonly [number, number, number];
  readonly payload: Uint8Array;
  /** Default 10 000. */
  readonly timeout_ms?: number;
}

/** Options of {@link GpuSession.waitStatus}. */
export interface WaitStatusOptions {
  /** Give up with `busy:` after this long; default the job's timeout plus 5 s, or 15 s. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** What the session needs from its Worker. */
interface SessionHooks {
  /** Types an error and reports `closed:` to the worker's listeners. */
  observe(err: unknown): NineError;
  /** Why the worker cannot send requests now, if it cannot. */
  unusable(): NineError | undefined;
}

const REOPEN_DELAY_MS = 500;
/** Final statuses kept for jobs nobody waits for yet. */
const KEEP_FINISHED = 256;

/**
 * The leased GPU of a worker: `worker.gpu` when the root task spawned it
 * with a lease.
 *
 * Concurrency: `submit` calls are written one at a time in call order;
 * any number of `waitStatus` calls may wait at once (one follower reads the
 * status file for all of them).
 *
 * @example
 * ```ts
 * const worker = await attachWorker();
 * const gpu = worker.gpu!;                       // "/gpu/GPU-0"
 * console.log((await gpu.info()).name, (await gpu.lease())?.state);
 * const status = await gpu.run({ job: `${worker.id}.1`, kernel: "saxpy", payload: new Uint8Array(64) });
 * status.state; // "OK"
 * ```
 */
export class GpuSession {
  /** The GPU's id, e.g. `GPU-0`. */
  readonly id: string;
  /** Its path in the namespace, e.g. `/gpu/GPU-0`. */
  readonly path: string;
  readonly #root: Fid;
  readonly #worker: string;
  readonly #hooks: SessionHooks;
  readonly #waiters = new Map<string, Set<(s: GpuStatusRecord) => void>>();
  readonly #finished = new Map<string, GpuStatusRecord>();
  readonly #stop = new AbortController();
  #jobFid: Promise<Fid> | undefined;
  #submitQueue: Promise<unknown> = Promise.resolve();
  #follower: Promise<void> | undefined;
  /** Resolves once the follower has its offset: lines after it are seen. */
  #following: Promise<void> | undefined;

  /** @internal Created by the Worker from its identity's `gpu` path. */
  constructor(root: Fid, worker: string, path: string, hooks: SessionHooks) {
    const names = path.split("/").filter(Boolean);
    if (names.length !== 2 || names[0] !== "gpu") throw new InvalidError(`gpu path must look like /gpu/<gpu-id>, got ${JSON.stringify(path)}`);
    this.id = names[1]!;
    this.path = `/gpu/${this.id}`;
    this.#root = root;
    this.#worker = worker;
    this.#hooks = hooks;
  }

  /**
   * The GPU's `info` record.
   *
   * @example
   * ```ts
   * (await worker.gpu!.info()).memory_mb; // 16384
   * ```
   */
  async info(signal?: AbortSignal): Promise<GpuInfoRecord> {
    const text = await this.#call(() => this.#root.readText(this.#rel("info"), signal));
    return JSON.parse(text) as GpuInfoRecord;
  }

  /**
   * This worker's latest record in the GPU's `lease` file (ACTIVE while it
   * holds the lease), or undefined when it has none there. Reads what the
   * file holds now; never waits for more.
   *
   * @example
   * ```ts
   * const lease = await worker.gpu!.lease(); // { state: "ACTIVE", mem_mb: 4096, … }
   * ```
   */
  async lease(signal?: AbortSignal): Promise<GpuLeaseRecord | undefined> {
    const text = await this.#call(() => this.#readCurrent("lease", signal));
    let mine: GpuLeaseRecord | undefined;
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      try {
        const r = JSON.parse(line) as GpuLeaseRecord;
        if (r.worker === this.#worker) mine = r;
      } catch {
        // a line cut by the file's retention: skip it
      }
    }
    return mine;
  }

  /**
   * Writes one job descriptor to `job`, as this worker. Resolves once the
   * bridge has queued it; refusals keep their class (`invalid:`,
   * `permission:`, `busy:`). A descriptor larger than one 9P message is
   * refused with `too big:` before sending.
   *
   * @example
   * ```ts
   * await worker.gpu!.submit({ job: "worker-3.1", kernel: "saxpy", payload });
   * ```
   */
  submit(job: GpuJob): Promise<void> {
    const line = Buffer.from(
      JSON.stringify({
        job: job.job,
        worker: this.#worker,
        kernel: job.kernel,
        grid: job.grid ?? [1, 1, 1],
        block: job.block ?? [1, 1, 1],
        bytes_hash: `sha256:${createHash("sha256").update(job.payload).digest("hex")}`,
        payload_b64: Buffer.from(job.payload.buffer, job.payload.byteOffset, job.payload.byteLength).toString("base64"),
        timeout_ms: job.timeout_ms ?? 10_000,
      }),
    );
    const unit = this.#root.client.iounit;
    if (line.length > unit) return Promise.reject(new TooBigError(`job descriptor is ${line.length} bytes, one message holds ${unit}`));
    // Follow the status file before the job exists, so no line is missed.
    this.#startFollower();
    const run = this.#submitQueue.then(async () => {
      await this.#following;
      await this.#call(async () => {
        const fid = await this.#jobFile();
        try {
          await fid.write(line, 0);
        } catch (err) {
          // A lost remote file answers busy:/closed:; walk afresh next time.
          if (!(err instanceof NineError) || err.errorClass === "busy" || err.errorClass === "closed") this.#dropJobFile();
          throw err;
        }
      });
    });
    this.#submitQueue = run.catch(() => {});
    return run;
  }

  /**
   * Waits for `job`'s final status line (`OK` or `ERR`). Start waiting
   * before or after {@link submit}: final lines seen by the session since
   * its first submit are kept. Gives up with `busy:` after `timeoutMs`.
   *
   * @example
   * ```ts
   * const s = await worker.gpu!.waitStatus("worker-3.1", { timeoutMs: 5000 });
   * if (s.state === "ERR") console.error(s.reason);
   * ```
   */
  waitStatus(job: string, options: WaitStatusOptions = {}): Promise<GpuStatusRecord> {
    const done = this.#finished.get(job);
    if (done) return Promise.resolve(done);
    this.#startFollower();
    const timeoutMs = options.timeoutMs ?? 15_000;
    return new Promise<GpuStatusRecord>((resolve, reject) => {
      const set = this.#waiters.get(job) ?? new Set();
      this.#waiters.set(job, set);
      const cleanup = (): void => {
        clearTimeout(timer);
        set.delete(onStatus);
        if (set.size === 0) this.#waiters.delete(job);
        options.signal?.removeEventListener("abort", onAbort);
        this.#stop.signal.removeEventListener("abort", onAbort);
      };
      const onStatus = (s: GpuStatusRecord): void => {
        cleanup();
        resolve(s);
      };
      const onAbort = (): void => {
        cleanup();
        reject(this.#hooks.unusable() ?? new BusyError(`waiting for ${job} was cancelled`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new BusyError(`no final status for ${job} on ${this.id} within ${timeoutMs} ms`));
      }, timeoutMs);
      set.add(onStatus);
      options.signal?.addEventListener("abort", onAbort, { once: true });
      this.#stop.signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * {@link submit} then {@link waitStatus}: the job's final status.
   *
   * @example
   * ```ts
   * const s = await worker.gpu!.run({ job: "worker-3.2", kernel: "saxpy", payload, timeout_ms: 2000 });
   * ```
   */
  async run(job: GpuJob, options: WaitStatusOptions = {}): Promise<GpuStatusRecord> {
    const wait = this.waitStatus(job.job, { timeoutMs: options.timeoutMs ?? (job.timeout_ms ?? 10_000) + 5000, ...(options.signal ? { signal: options.signal } : {}) });
    wait.catch(() => {});
    await this.submit(job);
    return wait;
  }

  /** @internal Stops following status and clunks the session's fids. */
  async close(): Promise<void> {
    this.#stop.abort();
    const job = this.#jobFid;
    this.#jobFid = undefined;
    if (job) await (await job.catch(() => undefined))?.clunk().catch(() => {});
    await this.#follower?.catch(() => {});
  }

  #rel(file: string): string {
    return `gpu/${this.id}/${file}`;
  }

  /** Runs a request, refusing it once the worker is unusable and reporting `closed:`. */
  async #call<T>(fn: () => Promise<T>): Promise<T> {
    const gone = this.#hooks.unusable();
    if (gone) throw gone;
    try {
      return await fn();
    } catch (err) {
      throw this.#hooks.observe(err);
    }
  }

  /** The file's bytes up to its length now (lease and status block at their end). */
  async #readCurrent(file: string, signal?: AbortSignal): Promise<string> {
    return this.#root.with(
      this.#rel(file),
      async (f) => {
        const { length } = await f.stat(signal);
        await f.open("r", signal ? { signal } : {});
        const parts: Uint8Array[] = [];
        for (let at = 0; at < length; ) {
          const data = await f.read(at, length - at, signal);
          if (data.length === 0) break;
          parts.push(data);
          at += data.length;
        }
        return Buffer.concat(parts).toString("utf8");
      },
      signal,
    );
  }

  #jobFile(): Promise<Fid> {
    if (!this.#jobFid) {
      const opening = this.#root.walk(this.#rel("job")).then(async (f) => {
        try {
          return await f.open("w");
        } catch (err) {
          await f.clunk().catch(() => {});
          throw err;
        }
      });
      this.#jobFid = opening;
      opening.catch(() => {
        if (this.#jobFid === opening) this.#jobFid = undefined;
      });
    }
    return this.#jobFid;
  }

  #dropJobFile(): void {
    const f = this.#jobFid;
    this.#jobFid = undefined;
    void f?.then((fid) => fid.clunk()).catch(() => {});
  }

  #startFollower(): void {
    if (this.#follower) return;
    let ready!: () => void;
    this.#following = new Promise<void>((resolve) => (ready = resolve));
    this.#follower = this.#follow(ready);
    this.#follower.catch(() => {});
  }

  /**
   * Reads the status file from its end at open, forever: dispatches final
   * lines to waiters. A busy remote (bridge away) is reopened after a
   * pause; `closed:` (revocation) or stop ends it.
   */
  async #follow(ready: () => void): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted && !this.#hooks.unusable()) {
      let fid: Fid | undefined;
      try {
        fid = await this.#root.walk(this.#rel("status"), signal);
        const { length } = await fid.stat(signal);
        await fid.open("r", { signal });
        ready();
        let offset = length;
        let partial = "";
        for (;;) {
          const data = await fid.read(offset, undefined, signal);
          if (data.length === 0) {
            // Not a blocking file after all (or a reopened one): poll gently.
            await sleep(100, undefined, { signal });
            continue;
          }
          offset += data.length;
          const text = partial + Buffer.from(data).toString("utf8");
          const lines = text.split("\n");
          partial = lines.pop() ?? "";
          for (const line of lines) this.#dispatch(line);
        }
      } catch (err) {
        // Without this, a submit would wait for a follower that cannot start.
        ready();
        if (signal.aborted) return;
        const e = this.#hooks.observe(err);
        if (e.errorClass === "closed") return;
        await sleep(REOPEN_DELAY_MS, undefined, { signal }).catch(() => {});
      } finally {
        void fid?.clunk().catch(() => {});
      }
    }
  }

  #dispatch(line: string): void {
    if (!line.trim()) return;
    let s: GpuStatusRecord;
    try {
      s = JSON.parse(line) as GpuStatusRecord;
    } catch {
      return;
    }
    if (s.worker !== this.#worker || (s.state !== "OK" && s.state !== "ERR")) return;
    const waiters = this.#waiters.get(s.job);
    if (waiters && waiters.size > 0) {
      for (const w of [...waiters]) w(s);
      return;
    }
    this.#finished.set(s.job, s);
    if (this.#finished.size > KEEP_FINISHED) this.#finished.delete(this.#finished.keys().next().value!);
  }
}
