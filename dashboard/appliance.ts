/**
 * One appliance the server holds a 9P session to: it reads `/proc/*` every
 * `poll_ms`, follows each worker's telemetry and `/log/queen.log` every
 * `tail_ms`, and publishes what changed. A lost session is dialled again
 * with a growing pause; the page shows why it is not live meanwhile.
 * @module
 */
import { setTimeout as sleep } from "node:timers/promises";
import { ClosedError, type Fid } from "../nine-door/index.ts";
import type { DashboardLimits } from "./limits.ts";
import type { ApplianceView, DashEvent, GpuView, TelemetryPoint, WorkerView } from "./model.ts";
import { bootPairs, fleetIdOf, parsePairs, parseWorkers, programsOf, versionOf } from "./records.ts";

/** A queen session to one appliance, as the CLI opens it (cli/dashboard.ts makes these). */
export interface QueenLink {
  readonly root: Fid;
  /**
   * Sends one JSON command to a ctl file (default `/queen/ctl`), signed as
   * `cohesix ctl` signs it, and resolves with the reply.
   */
  ctl(command: string, options?: { path?: string }): Promise<string>;
  close(): void;
}

/** A kill switch operation of a VM. */
export type KillSwitchOp = { op: "pause" } | { op: "resume" } | { op: "snapshot"; name: string } | { op: "restore"; name: string };

/** The kill switch of a VM that `cohesix boot` or `up` runs (QMP). */
export interface KillSwitch {
  /** Runs `op`; resolves with the VM's status after it (`running`, `paused`). */
  control(op: KillSwitchOp): Promise<string>;
  /** The snapshots its state disk holds. */
  snapshots(): Promise<string[]>;
}

/** An appliance the server talks to over 9P. */
export interface ApplianceSource {
  /** Its dial string, which is also its id. */
  readonly dial: string;
  /** Connects and attaches as the queen. */
  connect(): Promise<QueenLink>;
  readonly killSwitch?: KillSwitch;
}

interface Follower {
  readonly fid: Fid;
  offset: number;
  partial: string;
  readonly points: TelemetryPoint[];
}

/** The A/B slot that runs and its state (`good`, `trying`, `rolled_back`), from `/proc/boot`'s or a birth's facts. */
export function slotOf(boot: Readonly<Record<string, string>>): { slot?: string; update?: string; fleetId?: string } {
  const update = boot.slot_state ?? boot.update;
  const fleetId = fleetIdOf(boot);
  return { ...(boot.slot ? { slot: boot.slot } : {}), ...(update ? { update } : {}), ...(fleetId ? { fleetId } : {}) };
}

/** Cuts a line to `max` bytes (roughly: characters). */
function cut(line: string, max: number): string {
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

/**
 * Watches one appliance and keeps its view, its log tail and its workers'
 * recent telemetry for new pages.
 *
 * @example
 * ```ts
 * const watch = new ApplianceWatch(source, { limits: DEFAULT_LIMITS, publish: (e) => hub.publish(e) });
 * watch.start();
 * await watch.ctl('{"spawn":"heartbeat","ticks":10}'); // '{"ok":true,"worker":"worker-1"}'
 * ```
 */
export class ApplianceWatch {
  readonly source: ApplianceSource;
  readonly #limits: DashboardLimits;
  readonly #publish: (event: DashEvent) => void;
  readonly #stop = new AbortController();
  #view: ApplianceView;
  #link: QueenLink | undefined;
  readonly #followers = new Map<string, Follower>();
  readonly #log: string[] = [];
  #logFid: Fid | undefined;
  #logOffset = 0;
  #logPartial = "";
  #lastJson = "";
  #lastCpu: { us: number; at: number } | undefined;

  constructor(source: ApplianceSource, options: { limits: DashboardLimits; publish: (event: DashEvent) => void }) {
    this.source = source;
    this.#limits = options.limits;
    this.#publish = options.publish;
    this.#view = { id: source.dial, source: "9p", dial: source.dial, live: "connecting", boot: {}, mem: {}, sessions: [], workers: [], workerCount: 0, programs: [], gpus: [], ...(source.killSwitch ? { vm: { status: "unknown", snapshots: [] } } : {}) };
  }

  /** Its id: the dial string. */
  get id(): string {
    return this.source.dial;
  }

  /** What the page shows now. */
  get view(): ApplianceView {
    return this.#view;
  }

  /** The last lines of `/log/queen.log`. */
  get log(): readonly string[] {
    return this.#log;
  }

  /** Recent telemetry of each followed worker. */
  get telemetry(): Record<string, readonly TelemetryPoint[]> {
    return Object.fromEntries([...this.#followers].map(([id, f]) => [id, f.points]));
  }

  /** The workers it runs now, by id. */
  hasWorker(id: string): boolean {
    return this.#view.workers.some((w) => w.id === id);
  }

  /** Starts watching; runs until {@link close}. */
  start(): void {
    void this.#run();
  }

  /** Stops watching and closes the session. */
  close(): void {
    this.#stop.abort();
    this.#drop();
  }

  /**
   * Sends a command through the session's queen link (see {@link QueenLink.ctl}).
   *
   * @throws {ClosedError} while the appliance is not connected.
   */
  async ctl(command: string, options: { path?: string } = {}): Promise<string> {
    const link = this.#link;
    if (!link) throw new ClosedError(`${this.id} is ${this.#view.live}${this.#view.error ? ` (${this.#view.error})` : ""}: try again once it is live`);
    const reply = await link.ctl(command, options);
    void this.#poll().catch(() => {});
    return reply;
  }

  /** Runs a kill switch operation and shows the VM's new status. */
  async killSwitch(op: KillSwitchOp): Promise<string> {
    const ks = this.source.killSwitch;
    if (!ks) throw new ClosedError(`${this.id} is not a VM that cohesix boot or up runs: it has no kill switch`);
    const status = await ks.control(op);
    const snapshots = await ks.snapshots().catch(() => this.#view.vm?.snapshots ?? []);
    this.#set({ vm: { status, snapshots } });
    return status;
  }

  #set(patch: Partial<ApplianceView>): void {
    this.#view = { ...this.#view, ...patch };
    const json = JSON.stringify(this.#view);
    if (json === this.#lastJson) return;
    this.#lastJson = json;
    this.#publish({ type: "appliance", appliance: this.#view });
  }

  #drop(): void {
    this.#link?.close();
    this.#link = undefined;
    this.#logFid = undefined;
    this.#followers.clear();
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    for (let pause = 500; !signal.aborted; pause = Math.min(pause * 2, 5000)) {
      try {
        const link = await this.source.connect();
        // Closed while it dialled: the new session must not outlive the watch.
        if (signal.aborted) {
          link.close();
          return;
        }
        this.#link = link;
        pause = 500;
        await this.#session(signal);
      } catch (err) {
        if (signal.aborted) return;
        this.#drop();
        this.#set({ live: "unreachable", error: (err as Error).message.split("\n")[0]! });
      }
      if (this.source.killSwitch) {
        const ks = this.source.killSwitch;
        const snapshots = await ks.snapshots().catch(() => this.#view.vm?.snapshots ?? []);
        this.#set({ vm: { status: this.#view.vm?.status ?? "unknown", snapshots } });
      }
      await sleep(pause, undefined, { signal }).catch(() => {});
    }
  }

  async #session(signal: AbortSignal): Promise<void> {
    const root = this.#link!.root;
    const bootText = await root.readText("proc/boot");
    const boot = bootPairs(bootText);
    const version = versionOf(bootText);
    this.#set({ live: "live", error: undefined, bootText, boot, programs: programsOf(boot), ...(version ? { version } : {}), ...slotOf(boot) } as Partial<ApplianceView>);
    if (this.source.killSwitch && this.#view.vm?.status !== "paused") this.#set({ vm: { status: "running", snapshots: this.#view.vm?.snapshots ?? [] } });
    await this.#openLog(root);
    await this.#poll();
    let nextPoll = Date.now() + this.#limits.poll_ms;
    while (!signal.aborted) {
      await this.#tail();
      if (Date.now() >= nextPoll) {
        await this.#poll();
        nextPoll = Date.now() + this.#limits.poll_ms;
      }
      await sleep(this.#limits.tail_ms, undefined, { signal }).catch(() => {});
    }
  }

  async #openLog(root: Fid): Promise<void> {
    const f = await root.walk("log/queen.log");
    await f.open("r");
    const { length } = await f.stat();
    // Start a few KiB before the end: the page shows the last lines.
    const from = Math.max(0, length - this.#limits.log_lines * 160);
    this.#logFid = f;
    this.#logOffset = from;
    this.#logPartial = "";
    this.#log.length = 0;
    const first = await this.#readLines(f, () => this.#logOffset, (n) => (this.#logOffset = n), "log");
    if (from > 0) first.shift();
    this.#pushLog(first);
  }

  #pushLog(lines: string[]): void {
    if (lines.length === 0) return;
    const shown = lines.map((l) => cut(l, this.#limits.max_line_bytes));
    this.#log.push(...shown);
    if (this.#log.length > this.#limits.log_lines) this.#log.splice(0, this.#log.length - this.#limits.log_lines);
    this.#publish({ type: "log", app: this.id, lines: shown });
  }

  /** Reads from the offset to the end; returns the complete lines. */
  async #readLines(f: Fid, get: () => number, set: (n: number) => void, which: "log" | Follower): Promise<string[]> {
    let text = "";
    for (let i = 0; i < 64; i++) {
      const data = await f.read(get());
      if (data.length === 0) break;
      set(get() + data.length);
      text += Buffer.from(data).toString("utf8");
    }
    if (text === "") return [];
    const partial = which === "log" ? this.#logPartial : which.partial;
    const all = (partial + text).split("\n");
    const rest = all.pop() ?? "";
    if (which === "log") this.#logPartial = rest.slice(-this.#limits.max_line_bytes);
    else which.partial = rest.slice(-this.#limits.max_line_bytes);
    return all.filter((l) => l !== "");
  }

  async #tail(): Promise<void> {
    const jobs: Promise<void>[] = [];
    if (this.#logFid) {
      const f = this.#logFid;
      jobs.push(this.#readLines(f, () => this.#logOffset, (n) => (this.#logOffset = n), "log").then((lines) => this.#pushLog(lines)));
    }
    for (const [id, follower] of this.#followers) jobs.push(this.#tailWorker(id, follower));
    await Promise.all(jobs);
  }

  async #tailWorker(id: string, f: Follower): Promise<void> {
    let lines: string[];
    try {
      lines = await this.#readLines(f.fid, () => f.offset, (n) => (f.offset = n), f);
    } catch {
      // The worker went (its files with it), or the session broke: the
      // poll of /proc tells the two apart and dials again for the latter.
      this.#followers.delete(id);
      void f.fid.clunk().catch(() => {});
      return;
    }
    if (lines.length === 0) return;
    const at = Date.now();
    const points: TelemetryPoint[] = [];
    for (const line of lines) {
      if (line.length > this.#limits.max_line_bytes) continue;
      try {
        const data = JSON.parse(line) as unknown;
        if (data !== null && typeof data === "object" && !Array.isArray(data)) points.push({ at, data: data as Record<string, unknown> });
      } catch {
        // The appliance only keeps JSON lines; anything else is skipped.
      }
    }
    if (points.length === 0) return;
    f.points.push(...points);
    if (f.points.length > this.#limits.telemetry_points) f.points.splice(0, f.points.length - this.#limits.telemetry_points);
    this.#publish({ type: "telemetry", app: this.id, worker: id, points });
  }

  async #follow(root: Fid, workers: readonly WorkerView[]): Promise<void> {
    const running = new Set(workers.filter((w) => w.status === "running" || w.status === "starting" || w.status === "unlisted").map((w) => w.id));
    for (const [id, f] of this.#followers) {
      if (running.has(id)) continue;
      this.#followers.delete(id);
      void f.fid.clunk().catch(() => {});
    }
    for (const id of running) {
      if (this.#followers.has(id) || this.#followers.size >= this.#limits.max_followed_workers) continue;
      try {
        const fid = await root.walk(`worker/${id}/telemetry`);
        await fid.open("r");
        const { length } = await fid.stat();
        const follower: Follower = { fid, offset: Math.max(0, length - 4096), partial: "", points: [] };
        this.#followers.set(id, follower);
        // Skip a cut first line when starting inside the file.
        if (follower.offset > 0) {
          const lines = await this.#readLines(fid, () => follower.offset, (n) => (follower.offset = n), follower);
          lines.shift();
          follower.partial = "";
          void lines;
        }
      } catch {
        // Gone between the listing and the walk: the next poll looks again.
      }
    }
  }

  async #poll(): Promise<void> {
    const link = this.#link;
    if (!link) return;
    const root = link.root;
    const [state, reason, since, workersText, memText, sessionsText] = await Promise.all([
      root.readText("proc/lifecycle/state"),
      root.readText("proc/lifecycle/reason").catch(() => ""),
      root.readText("proc/lifecycle/since").catch(() => ""),
      root.readText("proc/workers"),
      root.readText("proc/mem"),
      root.readText("proc/sessions"),
    ]);
    const workers = parseWorkers(workersText);
    // A worker directory with no record (made outside the pool) is shown and followed too.
    const listed = new Set(workers.map((w) => w.id));
    for (const e of await root.list("worker").catch(() => [])) {
      if (!e.isDir || listed.has(e.name) || workers.length >= this.#limits.max_followed_workers * 2) continue;
      workers.push({ id: e.name, kind: "?", role: "?", status: "unlisted", restarts: 0, budgetLeft: "?", fields: {} });
    }
    await this.#follow(root, workers);
    const gpus = await this.#gpus(root);
    const mem = parsePairs(memText);
    // The root task's CPU share since the last poll, from /proc/mem's cpu_*_us.
    const cpuUs = Number(mem.cpu_user_us) + Number(mem.cpu_system_us);
    const now = Date.now();
    let cpu: string | undefined = this.#view.cpu;
    if (Number.isFinite(cpuUs)) {
      if (this.#lastCpu && now > this.#lastCpu.at && cpuUs >= this.#lastCpu.us) cpu = `${(((cpuUs - this.#lastCpu.us) / 1000 / (now - this.#lastCpu.at)) * 100).toFixed(1)} %`;
      this.#lastCpu = { us: cpuUs, at: now };
    }
    // /proc/boot again: the A/B slot's state changes while it runs (trying → good).
    const bootText = await root.readText("proc/boot");
    const boot = bootPairs(bootText);
    this.#set({
      live: "live",
      error: undefined,
      lifecycle: state.trim(),
      lifecycleReason: reason.trim(),
      lifecycleSince: since.trim(),
      workers,
      workerCount: workers.filter((w) => w.status === "running" || w.status === "unlisted").length,
      mem,
      sessions: sessionsText.split("\n").filter((l) => l.trim() !== ""),
      gpus,
      lastSeenMs: now,
      ...(cpu !== undefined ? { cpu } : {}),
      ...slotOf(boot),
      bootText,
      boot,
    } as Partial<ApplianceView>);
  }

  async #gpus(root: Fid): Promise<GpuView[]> {
    const entries = await root.list("gpu").catch(() => []);
    const out: GpuView[] = [];
    for (const e of entries.slice(0, 16)) {
      if (!e.isDir) continue;
      const lastLine = async (name: string): Promise<string> => {
        const st = await root.statPath(`gpu/${e.name}/${name}`).catch(() => undefined);
        if (!st || st.length === 0) return "";
        const text = await root.with(`gpu/${e.name}/${name}`, async (f) => {
          await f.open("r");
          return Buffer.from(await f.read(Math.max(0, st.length - 2048), 2048)).toString("utf8");
        }).catch(() => "");
        return text.trim().split("\n").pop() ?? "";
      };
      let name = e.name;
      try {
        name = (JSON.parse(await root.readText(`gpu/${e.name}/info`)) as { name?: string }).name ?? e.name;
      } catch {
        // No info: the id stands for the name.
      }
      out.push({ id: e.name, name, lease: await lastLine("lease"), status: await lastLine("status") });
    }
    return out;
  }
}
