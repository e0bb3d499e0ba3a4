/**
 * The supervisor: runs each worker as its own OS process, hands it its
 * ticket through an inherited pipe (never argv, never the environment),
 * delivers its output to the root task, stops it with SIGTERM then SIGKILL,
 * and watches its heartbeats. It decides nothing: restarts, audit lines and
 * logs are the root task's, told through callbacks.
 * @module
 */
import type { ChildProcess } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import type { Writable } from "node:stream";
import { BusyError, InvalidError, NotFoundError } from "../nine-door/index.ts";
import { WORKER_ENV } from "../workers/index.ts";
import { BUILTIN_WORKERS, workerProgram, type WorkerProgram } from "./programs.ts";

/** Options of `new Supervisor(options)`. */
export interface SupervisorOptions {
  /**
   * Called once per stale episode: no {@link Supervisor.heartbeat} for
   * `staleAfter × intervalMs` since the spawn or the last beat. A later beat
   * ends the episode.
   */
  readonly onStale?: (id: string) => void;
  /** Intervals without a beat before a worker is stale; default 3. */
  readonly staleAfter?: number;
  /** Programs by kind (entry relative to `root`, role); default the built-in ones. */
  readonly programs?: Readonly<Record<string, { readonly entry: string; readonly role: string }>>;
  /** Folder program entries are relative to; default the installed package's root. */
  readonly root?: string;
  /**
   * Where to record each worker's pid and start time (`<id>.pid`), so the
   * next boot can stop workers a killed root task left behind.
   */
  readonly runDir?: string;
}

/** Options of {@link Supervisor.spawn}. */
export interface SpawnOptions {
  /** The worker's id, e.g. `worker-1`; one process per id. */
  readonly id: string;
  /** Program kind, e.g. `heartbeat`. */
  readonly kind: string;
  /** The worker's ticket, written to the child's descriptor 3 and closed. */
  readonly ticket: string;
  /** NineDoor's dial string, e.g. `unix!/run/cohesix/nine-door.sock`. */
  readonly addr: string;
  /** The heartbeat interval: passed as COHESIX_INTERVAL_MS and used by the watchdog. */
  readonly intervalMs: number;
  /** Extra environment for the child (the `COHESIX_*` identity always wins). */
  readonly env?: Readonly<Record<string, string>>;
  /** Run this script instead of the kind's bundled entry (tests, development). */
  readonly program?: string;
  /** Each chunk of the child's stderr (and stdout), as it arrives. */
  readonly onStderr?: (chunk: Buffer) => void;
  /** Once, when the process is gone: its exit code, or the signal that ended it. */
  readonly onExit?: (code: number | null, signal: NodeJS.Signals | null) => void;
}

/** Options of {@link Supervisor.stop}. */
export interface StopWorkerOptions {
  /** How long after SIGTERM before SIGKILL; default 2000. */
  readonly graceMs?: number;
}

/** How a worker process ended. */
export interface WorkerExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

interface Running {
  readonly id: string;
  readonly pid: number;
  readonly exited: Promise<WorkerExit>;
  readonly watchdog: NodeJS.Timeout;
  gone: boolean;
  stale: boolean;
}

const DEFAULT_GRACE_MS = 2000;

/** Worker processes still running: sent SIGTERM if this process exits first. */
const children = new Set<ChildProcess>();
let exitHookInstalled = false;
function killChildrenOnExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const child of children) child.kill("SIGTERM");
  });
}

/**
 * Spawns and stops worker processes and watches their heartbeats.
 *
 * @example
 * ```ts
 * const supervisor = new Supervisor({ onStale: (id) => app.audit(`stale ${id}`) });
 * const ticket = mintTicket({ role: "worker-heartbeat", sub: "worker-1" }, app.bootKey);
 * supervisor.spawn({
 *   id: "worker-1", kind: "heartbeat", ticket, addr: "unix!/run/cohesix/nine-door.sock", intervalMs: 1000,
 *   onStderr: (chunk) => workerLog.append(chunk),
 *   onExit: (code, signal) => app.audit(`worker-1 exited code=${code} signal=${signal}`),
 * });
 * telemetry.onAppend(() => supervisor.heartbeat("worker-1"));
 * await supervisor.stop("worker-1", { graceMs: 2000 });
 * ```
 */
export class Supervisor {
  readonly #options: SupervisorOptions;
  readonly #running = new Map<string, Running>();

  constructor(options: SupervisorOptions = {}) {
    const staleAfter = options.staleAfter ?? 3;
    if (!(staleAfter > 0)) throw new InvalidError(`supervisor: staleAfter must be > 0, got ${staleAfter}`);
    this.#options = { ...options, staleAfter };
    killChildrenOnExit();
  }

  /** Ids of the workers whose processes are running. */
  get ids(): readonly string[] {
    return [...this.#running.keys()];
  }

  /** The pid of worker `id`, while its process runs. */
  pid(id: string): number | undefined {
    return this.#running.get(id)?.pid;
  }

  /**
   * The program `kind` resolves to (absolute entry and role), or `not found:`
   * listing the known kinds.
   *
   * @example
   * ```ts
   * supervisor.program("heartbeat").role; // "worker-heartbeat"
   * ```
   */
  program(kind: string): WorkerProgram {
    return workerProgram(kind, {
      programs: this.#options.programs ?? BUILTIN_WORKERS,
      ...(this.#options.root !== undefined ? { root: this.#options.root } : {}),
    });
  }

  /**
   * Starts worker `id` as `node <entry>` and returns its pid. The child
   * gets COHESIX_ADDR, COHESIX_WORKER_ID, COHESIX_WORKER_ROLE,
   * COHESIX_INTERVAL_MS and COHESIX_TICKET_FD=3; the ticket is written to
   * that pipe, which is then closed. Refuses a second process for a running
   * id (`busy:`), an unknown kind (`not found:`) and a bad interval
   * (`invalid:`).
   *
   * @example
   * ```ts
   * const pid = supervisor.spawn({ id: "worker-1", kind: "heartbeat", ticket, addr, intervalMs: 1000 });
   * ```
   */
  spawn(options: SpawnOptions): number {
    const { id } = options;
    if (this.#running.has(id)) throw new BusyError(`worker ${id} is already running (pid ${this.#running.get(id)!.pid})`);
    if (!Number.isSafeInteger(options.intervalMs) || options.intervalMs <= 0) {
      throw new InvalidError(`spawn ${id}: intervalMs must be a whole number > 0, got ${options.intervalMs}`);
    }
    const program = options.program === undefined ? this.program(options.kind) : this.#known(options.kind, options.program);
    const entry = program.entry;
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (v !== undefined && !k.startsWith("COHESIX_")) env[k] = v;
    }
    Object.assign(env, options.env, {
      [WORKER_ENV.addr]: options.addr,
      [WORKER_ENV.id]: id,
      [WORKER_ENV.role]: program.role,
      [WORKER_ENV.intervalMs]: String(options.intervalMs),
      [WORKER_ENV.ticketFd]: "3",
    });
    delete env[WORKER_ENV.ticket];

    // node:child_process rather than execa: the supervisor runs in the
    // guest's root task, where execa and its dependencies were ~40 % of the
    // bundle every boot parses.
    // node:child_process on the first spawn: the guest's boot does not pay for it when no worker runs.
    const { spawn } = createRequire(import.meta.url)("node:child_process") as typeof import("node:child_process");
    const child = spawn(process.execPath, [entry], { env, stdio: ["ignore", "pipe", "pipe", "pipe"] });
    // Settles once the process is gone and its output has been read ('close'), or it could not start ('error').
    const ended = new Promise<WorkerExit>((resolve) => {
      child.once("close", (code, sig) => resolve({ code, signal: sig }));
      child.once("error", () => resolve({ code: null, signal: null }));
    });
    const pid = child.pid;
    if (pid === undefined) throw new BusyError(`spawn ${id}: ${process.execPath} ${entry} did not start`);
    const ticketPipe = child.stdio[3] as Writable;
    ticketPipe.on("error", () => {}); // a child that exits before reading its ticket
    ticketPipe.end(options.ticket);
    children.add(child);
    const deliver = (chunk: Buffer | string) => options.onStderr?.(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
    child.stdout?.on("data", deliver);
    child.stderr?.on("data", deliver);

    const intervalMs = options.intervalMs;
    const staleMs = intervalMs * this.#options.staleAfter!;
    const running: Running = {
      id,
      pid,
      stale: false,
      gone: false,
      watchdog: setTimeout(() => this.#stale(running), staleMs).unref(),
      exited: ended.finally(() => children.delete(child)),
    };
    this.#running.set(id, running);
    const pidFile = this.#options.runDir === undefined ? undefined : join(this.#options.runDir, `${id}.pid`);
    if (pidFile !== undefined) {
      try {
        mkdirSync(this.#options.runDir!, { recursive: true, mode: 0o700 });
        writeFileSync(pidFile, `${pid} ${startTime(pid) ?? 0}\n`);
      } catch {
        // Best effort: without the record a leftover is only not reaped.
      }
    }
    void running.exited.then((exit) => {
      if (pidFile !== undefined) rmSync(pidFile, { force: true });
      running.gone = true;
      clearTimeout(running.watchdog);
      if (this.#running.get(id) === running) this.#running.delete(id);
      options.onExit?.(exit.code, exit.signal);
    });
    return pid;
  }

  /**
   * Records a sign of life from worker `id` (the root task calls it on each
   * telemetry append). Ends a stale episode. Unknown ids are ignored.
   */
  heartbeat(id: string): void {
    const r = this.#running.get(id);
    if (!r || r.gone) return;
    r.stale = false;
    r.watchdog.refresh();
  }

  /**
   * Stops worker `id`: SIGTERM, then SIGKILL after `graceMs` if it is
   * still there; resolves when the process is gone. Signals go to the pid
   * only. Unknown ids answer `not found:`.
   *
   * @example
   * ```ts
   * const { code, signal } = await supervisor.stop("worker-1", { graceMs: 2000 });
   * ```
   */
  async stop(id: string, options: StopWorkerOptions = {}): Promise<WorkerExit> {
    const r = this.#running.get(id);
    if (!r) throw new NotFoundError(`no running worker ${id}`);
    const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
    clearTimeout(r.watchdog);
    signal(r, "SIGTERM");
    const timer = setTimeout(() => signal(r, "SIGKILL"), graceMs);
    try {
      return await r.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Waits up to `ms` for worker `id` to exit by itself; true if it did (or
   * was not running).
   */
  async waitExit(id: string, ms: number): Promise<boolean> {
    const r = this.#running.get(id);
    if (!r) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
    try {
      return await Promise.race([r.exited.then(() => true), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Stops workers recorded in `runDir` by an earlier boot whose processes
   * are still there: a pid is signalled only when its start time still
   * matches the record, so a reused pid is never touched. Returns the pids
   * stopped.
   */
  static reapLeftovers(runDir: string): number[] {
    const reaped: number[] = [];
    let names: string[];
    try {
      names = readdirSync(runDir).filter((n) => n.endsWith(".pid"));
    } catch {
      return reaped;
    }
    for (const name of names) {
      const file = join(runDir, name);
      const [pidText, startText] = readFileSync(file, "utf8").trim().split(" ");
      const pid = Number(pidText);
      if (Number.isSafeInteger(pid) && pid > 1 && startTime(pid) === Number(startText)) {
        try {
          process.kill(pid, "SIGKILL");
          reaped.push(pid);
        } catch {
          // Gone in the meantime.
        }
      }
      rmSync(file, { force: true });
    }
    return reaped;
  }

  /** Stops every running worker (in parallel) with the same grace period. */
  async stopAll(graceMs = DEFAULT_GRACE_MS): Promise<void> {
    await Promise.all(this.ids.map((id) => this.stop(id, { graceMs }).catch(() => undefined)));
  }

  #known(kind: string, entry: string): WorkerProgram {
    const programs = this.#options.programs ?? BUILTIN_WORKERS;
    const found = Object.hasOwn(programs, kind) ? programs[kind] : undefined;
    if (!found) throw new NotFoundError(`no worker program ${JSON.stringify(kind)} (known: ${Object.keys(programs).sort().join(", ") || "none"})`);
    return { kind, entry, role: found.role };
  }

  #stale(r: Running): void {
    if (r.gone || r.stale) return;
    r.stale = true;
    this.#options.onStale?.(r.id);
  }
}

/** A process's start time in clock ticks since boot (/proc/<pid>/stat field 22). */
function startTime(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name may hold spaces and parentheses: count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[19]);
  } catch {
    return undefined;
  }
}

function signal(r: Running, sig: NodeJS.Signals): void {
  if (r.gone) return;
  try {
    process.kill(r.pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}
