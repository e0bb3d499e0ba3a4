/**
 * The live side of workers: each running worker's namespace files, budget
 * counters, ttl timer and process. The pool decides nothing that needs a
 * commit by itself — revocations and exits go through `commit` first, then
 * act — so the state in the log and the processes on the machine agree.
 * @module
 */
import {
  AppendLog,
  ClosedError,
  CtlFile,
  Directory,
  InvalidError,
  NotFoundError,
  validateJsonLines,
  type NineServer,
} from "../nine-door/index.ts";
import type { Commit, WorkerState } from "./state.ts";
import type { Supervisor } from "./supervisor.ts";
import { mintTicket } from "./ticket.ts";
import { WORKER_ENV } from "../workers/index.ts";
import type { CountedOp } from "../nine-door/index.ts";

/** What the pool needs from the appliance around it. */
export interface PoolHost {
  readonly server: NineServer;
  /** `/worker`. */
  readonly workers: Directory;
  /** `/log`. */
  readonly logs: Directory;
  readonly supervisor: Supervisor;
  readonly bootKey: Uint8Array;
  audit(line: string): void;
  /** Appends a commit durably, then applies it to the state. */
  commit(c: Commit): Promise<void>;
  /** The worker's view of the state (may have changed since spawn). */
  worker(id: string): WorkerState | undefined;
  /** Told after a worker's end is committed (kill, revoke, exit, retire): e.g. to release its GPU lease. */
  ended?(w: WorkerState, reason: string): void;
  /**
   * Runs a write to `/worker/<id>/ctl` (policy, signing, serialising);
   * without it the ctl takes the plain word `kill`.
   */
  workerCommand?(id: string, text: string, caller: { role: string; subject: string }): Promise<string>;
}

/** Runtime facts of one worker. */
interface Live {
  readonly id: string;
  dir: Directory;
  telemetry: AppendLog;
  stderr: AppendLog;
  ticks: number;
  ops: number;
  restarts: number;
  stale: boolean;
  /** Set while the root task itself is stopping the process. */
  stopping: boolean;
  ttl?: NodeJS.Timeout;
  restartTimer?: NodeJS.Timeout;
}

/** Options of `WorkerPool`. */
export interface PoolOptions {
  /** NineDoor's Unix socket dial string, handed to worker processes. */
  readonly addr: string;
  /** Telemetry interval (and watchdog period); default 1000 ms. */
  readonly intervalMs?: number;
  /** SIGTERM → SIGKILL grace when stopping a worker; default 2000 ms. */
  readonly graceMs?: number;
  /** Bytes of each worker's stderr kept in /log/<id>.log; default 64 KiB. */
  readonly stderrBytes?: number;
  /** Bytes of telemetry kept per worker; default 64 KiB (1,000 workers stay well under 200 MB). */
  readonly telemetryBytes?: number;
}

const RESTART_DELAY_MS = 1000;
const MAX_RESTART_DELAY_MS = 30_000;

/**
 * Runs the workers the state says are running.
 *
 * @example
 * ```ts
 * const pool = new WorkerPool(host, { addr: "unix!/var/lib/cohesix/nine-door.sock" });
 * pool.start(state.workers["worker-1"]);
 * await pool.revoke("worker-1", "tick budget exhausted");
 * ```
 */
export class WorkerPool {
  readonly #host: PoolHost;
  readonly #options: Required<PoolOptions>;
  readonly #live = new Map<string, Live>();

  constructor(host: PoolHost, options: PoolOptions) {
    this.#host = host;
    this.#options = {
      intervalMs: 1000,
      graceMs: 2000,
      stderrBytes: 64 << 10,
      telemetryBytes: 64 << 10,
      ...options,
    };
  }

  /** Records for /proc/workers: one `key=value` line per worker ever spawned this boot. */
  describe(state: (id: string) => WorkerState | undefined): string {
    let out = "";
    for (const live of this.#live.values()) {
      const w = state(live.id);
      if (!w) continue;
      const b = w.budget;
      out +=
        `id=${w.id} kind=${w.kind} role=${w.role} status=${w.status} pid=${this.#host.supervisor.pid(w.id) ?? "-"}` +
        ` ticks=${live.ticks} ops=${live.ops} budget_ticks=${b.ticks ?? "-"} budget_ops=${b.ops ?? "-"} ttl_s=${b.ttl_s ?? "-"}` +
        ` restart=${w.restart} restarts=${live.restarts} stale=${live.stale}${w.reason ? ` reason=${JSON.stringify(w.reason)}` : ""}\n`;
    }
    return out;
  }

  /** How many worker processes run now. */
  get running(): number {
    return this.#host.supervisor.ids.length;
  }

  /**
   * Makes `/worker/<id>/{telemetry,ctl}` and `/log/<id>.log` (kept after
   * the worker ends, so the queen can read them) and starts the process
   * with a fresh ticket.
   */
  start(w: WorkerState): void {
    const live = this.#live.get(w.id) ?? this.#create(w);
    live.stopping = false;
    live.stale = false;
    this.#spawn(w, live);
    if (w.budget.ttl_s !== undefined) {
      const left = w.spawnedMs + w.budget.ttl_s * 1000 - Date.now();
      clearTimeout(live.ttl);
      live.ttl = setTimeout(() => void this.revoke(w.id, "ttl expired"), Math.max(0, left));
      live.ttl.unref();
    }
  }

  /**
   * Counts one budgeted operation by worker `id` (all its sessions
   * together); revokes the worker and throws `closed:` when the ops budget
   * is spent.
   */
  account(id: string, op: CountedOp): void {
    void op;
    const live = this.#live.get(id);
    const w = this.#host.worker(id);
    if (!live || !w) return;
    if (w.status !== "running") throw new ClosedError(w.reason ?? `${id} is not running`);
    live.ops++;
    if (w.budget.ops !== undefined && live.ops > w.budget.ops) {
      void this.revoke(id, "ops budget exhausted");
      throw new ClosedError("ops budget exhausted");
    }
  }

  /**
   * Revokes worker `id`: commits the revocation, answers every session of
   * the worker `closed: <reason>`, and stops its process.
   */
  async revoke(id: string, reason: string): Promise<void> {
    await this.#end(id, "revoked", reason, `revoked ${id}: ${reason}`);
  }

  /** Kills worker `id` on the queen's word (`{"kill":…}` or its ctl). */
  async kill(id: string, by: string): Promise<void> {
    const w = this.#host.worker(id);
    if (!w) throw new NotFoundError(`no worker ${id}`);
    if (w.status !== "running") throw new InvalidError(`${id} is not running (${w.status}${w.reason ? `: ${w.reason}` : ""})`);
    await this.#end(id, "killed", `killed by ${by}`, `killed ${id} by ${by}`);
  }

  /** Stops worker `id` gracefully with a commit (drain, quiesce, reset). */
  async retire(id: string, reason: string, graceMs = this.#options.graceMs): Promise<void> {
    await this.#end(id, "exited", reason, `stopped ${id}: ${reason}`, graceMs);
  }

  /**
   * Stops every process without committing anything (shutdown): the state
   * still says they run, so the next boot respawns them.
   */
  async shutdown(graceMs = this.#options.graceMs): Promise<void> {
    for (const live of this.#live.values()) {
      live.stopping = true;
      clearTimeout(live.ttl);
      clearTimeout(live.restartTimer);
    }
    await this.#host.supervisor.stopAll(graceMs);
  }

  /** Called by the supervisor's watchdog. */
  onStale(id: string): void {
    const live = this.#live.get(id);
    const w = this.#host.worker(id);
    if (!live || !w || w.status !== "running" || live.stopping) return;
    live.stale = true;
    this.#host.audit(`${id} stale: no heartbeat for 3 intervals${w.restart ? "; restarting" : ""}`);
    if (!w.restart) return;
    live.stopping = true;
    void this.#host.supervisor.stop(id, { graceMs: this.#options.graceMs }).then(
      () => this.#restartLater(id),
      () => this.#restartLater(id),
    );
  }

  #create(w: WorkerState): Live {
    const telemetry = new AppendLog("telemetry", {
      writable: true,
      retainBytes: this.#options.telemetryBytes,
      maxWrite: 4096,
      validate: validateJsonLines,
    });
    const ctl = new CtlFile("ctl", async (command, ctx) => {
      if (this.#host.workerCommand) return this.#host.workerCommand(w.id, command, ctx.caller);
      if (command.trim() !== "kill") throw new InvalidError(`unknown worker command ${JSON.stringify(command.trim())} (expected kill)`);
      await this.kill(w.id, ctx.caller.subject);
      return JSON.stringify({ ok: true, worker: w.id, status: "killed" });
    });
    const dir = new Directory(w.id, { children: [telemetry, ctl] });
    const stderr = new AppendLog(`${w.id}.log`, { retainBytes: this.#options.stderrBytes });
    if (!this.#host.workers.get(w.id)) this.#host.workers.add(dir);
    if (!this.#host.logs.get(stderr.name)) this.#host.logs.add(stderr);
    const live: Live = { id: w.id, dir, telemetry, stderr, ticks: 0, ops: 0, restarts: 0, stale: false, stopping: false };
    telemetry.onAppend((ev) => {
      if (ev.by !== w.id) return;
      this.#tick(live);
    });
    this.#live.set(w.id, live);
    return live;
  }

  #tick(live: Live): void {
    const w = this.#host.worker(live.id);
    if (!w || w.status !== "running") return;
    live.ticks++;
    live.stale = false;
    this.#host.supervisor.heartbeat(live.id);
    if (w.budget.ticks !== undefined && live.ticks >= w.budget.ticks) void this.revoke(live.id, "tick budget exhausted");
  }

  #spawn(w: WorkerState, live: Live): void {
    const ttlS = w.budget.ttl_s ?? 24 * 3600;
    const ticket = mintTicket(
      { role: w.role, sub: w.id, budget: w.budget, ...(w.lease ? { mounts: [`/gpu/${w.lease.gpu_id}`] } : {}) },
      this.#host.bootKey,
      { ttlS: ttlS + 60 },
    );
    const pid = this.#host.supervisor.spawn({
      id: w.id,
      kind: w.kind,
      ticket,
      addr: this.#options.addr,
      intervalMs: this.#options.intervalMs,
      // The leased GPU's path, which the worker API offers as `worker.gpu`.
      ...(w.lease ? { env: { [WORKER_ENV.gpu]: `/gpu/${w.lease.gpu_id}` } } : {}),
      onStderr: (chunk) => {
        if (!live.stderr.closed) live.stderr.append(chunk);
      },
      onExit: (code, signal) => this.#exited(w.id, code, signal),
    });
    this.#host.audit(`spawned ${w.id} role=${w.kind} pid=${pid}`);
  }

  #exited(id: string, code: number | null, signal: NodeJS.Signals | null): void {
    const live = this.#live.get(id);
    const w = this.#host.worker(id);
    if (!live || !w || live.stopping || w.status !== "running") return;
    const how = signal ? `signal ${signal}` : `code ${code}`;
    if (w.restart) {
      this.#host.audit(`${id} exited with ${how}; restarting`);
      this.#restartLater(id);
      return;
    }
    void this.#end(id, "exited", `exited with ${how}`, `${id} exited with ${how}`);
  }

  #restartLater(id: string): void {
    const live = this.#live.get(id);
    if (!live) return;
    const delay = Math.min(RESTART_DELAY_MS * 2 ** live.restarts, MAX_RESTART_DELAY_MS);
    live.restarts++;
    clearTimeout(live.restartTimer);
    live.restartTimer = setTimeout(() => {
      const w = this.#host.worker(id);
      if (!w || w.status !== "running") return;
      live.stopping = false;
      try {
        this.#spawn(w, live);
      } catch (err) {
        this.#host.audit(`${id} restart failed: ${(err as Error).message}`);
      }
    }, delay);
    live.restartTimer.unref();
  }

  async #end(id: string, status: "exited" | "killed" | "revoked", reason: string, line: string, graceMs = this.#options.graceMs): Promise<void> {
    const live = this.#live.get(id);
    const w = this.#host.worker(id);
    if (!live || !w || w.status !== "running" || live.stopping) return;
    live.stopping = true;
    clearTimeout(live.ttl);
    clearTimeout(live.restartTimer);
    await this.#host.commit({ kind: "exit", body: { id, status, reason } });
    this.#host.audit(line);
    this.#host.ended?.(w, reason);
    this.#host.server.revoke((c) => c.subject === id && c.role === w.role, reason);
    // A revoked worker learns why from its next request (`closed: …`) and
    // exits by itself; give it one interval before signalling it.
    if (status === "revoked") await this.#host.supervisor.waitExit(id, this.#options.intervalMs + 1000);
    if (this.#host.supervisor.pid(id) !== undefined) {
      await this.#host.supervisor.stop(id, { graceMs }).catch(() => undefined);
    }
  }
}
