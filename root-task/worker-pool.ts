/**
 * The live side of workers: each running worker's namespace files, budget
 * counters, ttl timer and process. The pool decides nothing that needs a
 * commit by itself — revocations and exits go through `commit` first, then
 * act — so the state in the log and the processes on the machine agree.
 * @module
 */
import {
  AppendLog,
  BusyError,
  ClosedError,
  CtlFile,
  Directory,
  InvalidError,
  NotFoundError,
  validateJsonLines,
  type NineServer,
} from "../nine-door/index.ts";
import { Deadline } from "./deadline.ts";
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
  /**
   * Applies a commit to the state at once (its record takes the next seq)
   * and resolves once the record is durable; rejects, the state rolled
   * back, if it cannot be made durable.
   */
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
  /** Set while the commit of the worker's end is in flight; nothing has changed yet. */
  ending: boolean;
  ttl?: Deadline;
  restartTimer?: NodeJS.Timeout;
  /** A retry of an end whose commit failed (e.g. the disk was full). */
  retryTimer?: NodeJS.Timeout;
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
  /** Extra environment for every worker (the host board's `COHESIX_ROOT`); default none. */
  readonly env?: Readonly<Record<string, string>>;
}

const RESTART_DELAY_MS = 1000;
/** How long to wait before committing again an end whose commit failed. */
const END_RETRY_MS = 5000;
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
      env: {},
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
   * Checks that worker `w` could be started — its program is known and its
   * ticket can be minted — without starting anything, so a spawn that
   * cannot run is refused before it is committed.
   */
  check(w: WorkerState): void {
    this.#host.supervisor.program(w.kind);
    this.#ticket(w);
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
    live.ttl?.cancel();
    // A deadline, not one setTimeout: ttls past 24.8 days must not overflow to 1 ms.
    if (w.budget.ttl_s !== undefined) live.ttl = new Deadline(w.spawnedMs + w.budget.ttl_s * 1000, () => this.#endInBackground(w.id, "ttl expired"));
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
      this.#endInBackground(id, "ops budget exhausted", false);
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
    await this.beginKill(id, by)();
  }

  /**
   * The first step of a kill, for the control pipeline: checks that worker
   * `id` runs and stages its exit record (the state says `killed` at once),
   * and returns the second step, which waits until the record is durable
   * and then stops the worker (sessions closed, process stopped). Throws
   * `not found:`, `invalid:` (not running) or `busy:` (already stopping).
   *
   * @example
   * ```ts
   * const stop = pool.beginKill("worker-2", "queen"); // in the control queue
   * await stop(); // after it: durable, then the process is stopped
   * ```
   */
  beginKill(id: string, by: string): () => Promise<void> {
    const w = this.#host.worker(id);
    if (!w) throw new NotFoundError(`no worker ${id}`);
    if (w.status !== "running") throw new InvalidError(`${id} is not running (${w.status}${w.reason ? `: ${w.reason}` : ""})`);
    const act = this.#beginEnd(id, "killed", `killed by ${by}`, `killed ${id} by ${by}`);
    if (!act) throw new BusyError(`${id} is already being stopped`);
    return async () => {
      await act();
    };
  }

  /** Stops worker `id` gracefully with a commit (drain, quiesce, reset). */
  async retire(id: string, reason: string, graceMs = this.#options.graceMs): Promise<void> {
    await this.#end(id, "exited", reason, `stopped ${id}: ${reason}`, graceMs);
  }

  /**
   * The first step of retiring every running worker (drain, quiesce,
   * reset), for the control pipeline: stages each one's exit record now
   * and returns the second step, which waits until they are durable and
   * then stops the processes (within `graceMs`).
   *
   * @example
   * ```ts
   * const stop = pool.beginRetireAll("drained"); // in the control queue
   * await stop(); // after it
   * ```
   */
  beginRetireAll(reason: string, graceMs = this.#options.graceMs): () => Promise<void> {
    const acts: Array<() => Promise<boolean>> = [];
    for (const id of this.#live.keys()) {
      const act = this.#beginEnd(id, "exited", reason, `stopped ${id}: ${reason}`, graceMs);
      if (act) acts.push(act);
    }
    return async () => {
      const results = await Promise.allSettled(acts.map((act) => act()));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) throw failed.reason;
    };
  }

  /**
   * Stops every process without committing anything (shutdown): the state
   * still says they run, so the next boot respawns them.
   */
  async shutdown(graceMs = this.#options.graceMs): Promise<void> {
    for (const live of this.#live.values()) {
      live.stopping = true;
      live.ttl?.cancel();
      clearTimeout(live.restartTimer);
      clearTimeout(live.retryTimer);
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
    const live: Live = { id: w.id, dir, telemetry, stderr, ticks: 0, ops: 0, restarts: 0, stale: false, stopping: false, ending: false };
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
    if (w.budget.ticks !== undefined && live.ticks >= w.budget.ticks) this.#endInBackground(live.id, "tick budget exhausted", false);
  }

  #ticket(w: WorkerState): string {
    // A ticket's expiry ends its sessions: without a ttl budget the worker
    // runs until killed, so its ticket lasts a year (restarts mint anew).
    const ttlS = w.budget.ttl_s ?? 366 * 24 * 3600;
    return mintTicket(
      { role: w.role, sub: w.id, budget: w.budget, ...(w.lease ? { mounts: [`/gpu/${w.lease.gpu_id}`] } : {}) },
      this.#host.bootKey,
      { ttlS: ttlS + 60 },
    );
  }

  #spawn(w: WorkerState, live: Live): void {
    const ticket = this.#ticket(w);
    const pid = this.#host.supervisor.spawn({
      id: w.id,
      kind: w.kind,
      ticket,
      addr: this.#options.addr,
      intervalMs: this.#options.intervalMs,
      // The leased GPU's path, which the worker API offers as `worker.gpu`.
      env: { ...this.#options.env, ...(w.lease ? { [WORKER_ENV.gpu]: `/gpu/${w.lease.gpu_id}` } : {}) },
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
    this.#endInBackground(id, `exited with ${how}`, true, "exited");
  }

  /**
   * Ends worker `id` from a timer or a callback (ttl, budgets, the process
   * exiting), where nobody awaits the result: a commit that fails is
   * audited and, when `retry`, tried again later (a budget's next op or
   * tick tries again by itself); nothing changed in between.
   */
  #endInBackground(id: string, reason: string, retry = true, status: "revoked" | "exited" = "revoked"): void {
    const end =
      status === "revoked" ? this.#end(id, "revoked", reason, `revoked ${id}: ${reason}`) : this.#end(id, "exited", reason, `${id} ${reason}`);
    const again = (): void => {
      const live = this.#live.get(id);
      if (!retry || !live) return;
      clearTimeout(live.retryTimer);
      live.retryTimer = setTimeout(() => this.#endInBackground(id, reason, retry, status), END_RETRY_MS);
      live.retryTimer.unref();
    };
    end.then(
      // Another end's commit was in flight: if it fails, this one must still happen.
      (done) => {
        if (!done && this.#live.get(id)?.ending) again();
      },
      (err: unknown) => {
        this.#host.audit(`${id} ${reason}, but the end was not committed: ${(err as Error).message}${retry ? `; trying again in ${END_RETRY_MS / 1000} s` : ""}`);
        again();
      },
    );
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

  /**
   * Commits the end of worker `id`, then acts on it. Effects follow
   * durability: until the commit is on disk nothing changes (timers, the
   * process, sessions), so a failed commit leaves the worker as it was.
   * False when the worker is not running or already being stopped.
   */
  async #end(id: string, status: "exited" | "killed" | "revoked", reason: string, line: string, graceMs = this.#options.graceMs): Promise<boolean> {
    const act = this.#beginEnd(id, status, reason, line, graceMs);
    return act ? act() : false;
  }

  /**
   * Stages the end of worker `id` now (the state says so at once) and
   * returns what to do once its record is durable: stop timers, sessions
   * and the process. Undefined when the worker is not running or already
   * being stopped. The returned step rejects, having changed nothing, when
   * the record cannot be made durable.
   */
  #beginEnd(id: string, status: "exited" | "killed" | "revoked", reason: string, line: string, graceMs = this.#options.graceMs): (() => Promise<boolean>) | undefined {
    const live = this.#live.get(id);
    const w = this.#host.worker(id);
    if (!live || !w || w.status !== "running" || live.stopping || live.ending) return undefined;
    live.ending = true;
    const durable = this.#host.commit({ kind: "exit", body: { id, status, reason } });
    const settled = (): void => {
      live.ending = false;
    };
    durable.then(settled, settled);
    return async () => {
      await durable;
      live.stopping = true;
      live.ttl?.cancel();
      clearTimeout(live.restartTimer);
      clearTimeout(live.retryTimer);
      this.#host.audit(line);
      this.#host.ended?.(w, reason);
      this.#host.server.revoke((c) => c.subject === id && c.role === w.role, reason);
      // A revoked worker learns why from its next request (`closed: …`) and
      // exits by itself; give it one interval before signalling it.
      if (status === "revoked") await this.#host.supervisor.waitExit(id, this.#options.intervalMs + 1000);
      if (this.#host.supervisor.pid(id) !== undefined) {
        await this.#host.supervisor.stop(id, { graceMs }).catch(() => undefined);
      }
      return true;
    };
  }
}
