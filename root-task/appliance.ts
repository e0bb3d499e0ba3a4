/**
 * The root task: the appliance program. Boot opens the state directory,
 * loads the boot key, verifies and replays the commit log, builds the
 * namespace of DESIGN §5, and — once NineDoor listens — respawns the
 * workers the log says are running and goes ONLINE. Every state change is
 * committed before it takes effect (DESIGN §7); `/log/queen.log` is the
 * human view.
 * @module
 */
import { access, constants, mkdir } from "node:fs/promises";
import { createHash } from "node:crypto";
import os from "node:os";
import { join } from "node:path";
import {
  AppendLog,
  BusyError,
  Directory,
  InvalidError,
  Namespace,
  NineServer,
  PermissionError,
  type Caller,
  type NineError,
  type Node,
  type ServerLimits,
} from "../nine-door/index.ts";
import { BUILTIN_WORKERS } from "./programs.ts";
import { CommitLog, type CommitLogFs } from "./commit-log.ts";
import type { ControlHost } from "./control.ts";
import { ControlPipeline } from "./control-pipeline.ts";
import { buildTree } from "./namespace-tree.ts";
import type { Budget } from "./queen-command.ts";
import { keyId, publicKeyOf, readPrivateKey, writeKeyPair } from "./keys.ts";
import { applyCommit, commitFromRecord, genesis, runningWorkers, type ApplianceState, type Commit, type LifecycleState, type WorkerState } from "./state.ts";
import { AuditFile, type AuditFileLimits } from "./audit-file.ts";
import { RefusalAudit, peerSource, type RefusalLimits, type RefusalLineKind } from "./refusal-audit.ts";
import { checkBind, protectedTarget } from "./binds.ts";
import { MAX_WORKER_CAP, defaultWorkerCap } from "./limits.ts";
import { GpuMount, type GpuBridgeConfig } from "./gpu-mount.ts";
import { Supervisor } from "./supervisor.ts";
import { Authority } from "./authority.ts";
import { loadDeviceCert, type DeviceCert } from "./device-cert.ts";
import { WorkerPool } from "./worker-pool.ts";
import { UpdateService, updateDirectory, type UpdateServiceOptions } from "../update/index.ts";

/** The package version, reported in /proc/boot. */
export const VERSION = "0.1.0";


export type { LifecycleState };

/** Options of `Appliance.boot`. */
export interface ApplianceOptions {
  /** Board name shown in /proc/boot, e.g. `host`. */
  readonly board: string;
  /** Boot key, commit log and NineDoor's Unix socket live here. */
  readonly stateDir: string;
  /** The queen's public key: queen tickets and envelopes must verify against it. */
  readonly queenPublicKey: Uint8Array;
  /**
   * `signed-ctl` accepts only signed envelopes on every ctl file that
   * changes state (`/queen/ctl`, `/queen/lifecycle/ctl`, `/worker/<id>/ctl`).
   * Default `open`.
   */
  readonly policy?: "open" | "signed-ctl";
  /** Digest of the image this appliance booted from; `none` on the host. */
  readonly imageDigest?: string;
  /**
   * The boot manifest check of a flashed disk (see `checkBootManifest`),
   * read each time /proc/boot is: `manifest=` its digest and
   * `manifest_check=` `pending`, `ok` or `FAILED: …`. Absent: `manifest=none`.
   */
  readonly bootManifest?: () => { readonly digest: string; readonly status: string };
  /**
   * The A/B slot lines of /proc/boot (`slot=`, `slot_version=`,
   * `slot_state=`, `tries_left=`, `rolled_back from=… reason=…`, see
   * `slotLines`), read each time /proc/boot is. Absent (no A/B image): none.
   */
  readonly bootSlot?: () => readonly string[];
  /** Retention of /log/queen.log in bytes (default 1 MiB). */
  readonly logRetainBytes?: number;
  /**
   * Audit limits (docs/security.md, "Audit and the state disk"): the on-disk
   * `queen.log` rotation size, the separate `refused.log` rotation size,
   * the free space kept for the commit log, and how refusals aggregate.
   */
  readonly audit?: Partial<AuditLimits>;
  /**
   * Worker programs by kind; default the built-in ones. A project's workers
   * (cohesix.config.json) carry a default budget and restart policy.
   */
  readonly programs?: Readonly<Record<string, { readonly entry: string; readonly role: string; readonly budget?: Budget; readonly restart?: boolean }>>;
  /**
   * Most workers running at once (`busy: worker cap N reached` past it).
   * Default derived from memory: half of `os.totalmem()` at 32 MiB a
   * worker, at least 4 and at most 512 (`defaultWorkerCap`).
   */
  readonly maxWorkers?: number;
  /** Telemetry interval handed to workers, ms; default 1000. */
  readonly intervalMs?: number;
  /** Grace between SIGTERM and SIGKILL for workers, ms; default 2000. */
  readonly graceMs?: number;
  /** Extra environment for every worker, e.g. `COHESIX_ROOT` on the host board (see the worker API's `appPath`). */
  readonly workerEnv?: Readonly<Record<string, string>>;
  /**
   * The host GPU bridge to mount at `/gpu` (`--gpu-bridge DIAL`): its dial
   * string, the bridge's private key (tickets are signed with it) and, for
   * TLS, the pinned certificate fingerprint. Without it, GPU spawns answer
   * `busy: no gpu bridge mounted`.
   */
  readonly gpuBridge?: GpuBridgeConfig;
  /**
   * The hardware clock the system clock follows (the guest's RTC, see
   * `GuestClock`), so a guest restored from an old snapshot works on the
   * host's time, not the snapshot's: tickets are checked against its
   * `now()`, and each control command waits for its `sync()` (which steps
   * the system clock when it is behind, and never rejects). Absent (the
   * host board): the system clock as it is.
   */
  readonly clock?: { now(): number; sync(): Promise<unknown> };
  /**
   * NineDoor's connection and memory limits (docs/security.md); the rest
   * keep their defaults. `/proc/sessions` shows the ones in force.
   */
  readonly limits?: Partial<ServerLimits>;
  /**
   * NineDoor's TLS as `chooseTls` decided it, shown in /proc/boot. With
   * `device`, boot loads the device certificate from the state directory
   * (making it on first boot, see `device-cert.ts`) and tickets arriving
   * over TLS (peer `tls!…`) must name this appliance as their audience.
   * Default: off, reason `not configured`.
   */
  readonly network?: { readonly tls: boolean; readonly reason: string; readonly device?: boolean };
  /** The commit log's file layer (default the real file system); tests inject failing fsyncs through it. */
  readonly commitLogFs?: CommitLogFs;
  /**
   * This appliance's fleet id (docs/fleet.md); default `cx-<boot key id>`.
   * A signed envelope addressed with `to` must name it.
   */
  readonly fleetId?: string;
  /**
   * The `/update/` service (queen only, docs/updates.md), published when the
   * appliance runs from an A/B boot partition: where it is mounted, the
   * running slot and version, the release key bundles must be signed with,
   * the limits, and the guest's remount and reboot. The state directory,
   * board and audit are the appliance's own.
   */
  readonly update?: Omit<UpdateServiceOptions, "stateDir" | "board" | "audit">;
}

/**
 * The audit's limits. Authenticated lines (and the appliance's own) go to
 * `queen.log`; refusals of peers without a ticket go, rate-limited and
 * aggregated, to `refused.log`, each file with
 * its own budget, so a peer without a ticket cannot push authenticated
 * history off the disk. Both leave `reserveBytes` free for commits.
 */
export interface AuditLimits extends AuditFileLimits, RefusalLimits {
  /** Bytes of `refused.log` before rotation (the file and `.1` hold at most twice this). */
  readonly refusedRotateBytes: number;
  /** Refusal lines written in full to `/log/queen.log` before only window totals are (default 64). */
  readonly viewBurst: number;
  /** One more full refusal line in `/log/queen.log` per this many ms (default 10,000). */
  readonly viewRefillMs: number;
}

/** Default {@link AuditLimits.viewBurst}. */
export const DEFAULT_VIEW_BURST = 64;
/** Default {@link AuditLimits.viewRefillMs}. */
export const DEFAULT_VIEW_REFILL_MS = 10_000;

/** Default rotation size of `refused.log`. */
export const DEFAULT_REFUSED_ROTATE_BYTES = 64 << 10;

/** How long each boot stage took, for /proc/boot. */
interface Stage {
  readonly name: string;
  readonly ms: number;
}

/** Derives the commit log's HMAC key from the boot key (never stored). */
export function commitLogKey(bootKey: Uint8Array): Uint8Array {
  return createHash("sha256").update("cohesix commit-log key v1\n").update(bootKey).digest();
}

/**
 * The appliance: state, namespace, policy, audit log, workers and the
 * NineDoor server.
 *
 * @example
 * ```ts
 * const app = await Appliance.boot({ board: "host", stateDir: "/var/lib/cohesix", queenPublicKey });
 * const tcp = await listen("tcp!0.0.0.0!5640", (conn, peer) => app.server.accept(conn, peer.remote));
 * const unix = await listen(`unix!${app.socketPath}`, (conn, peer) => app.server.accept(conn, peer.remote));
 * await app.start({ workerAddr: unix.dialString });
 * ```
 */
export class Appliance {
  readonly server: NineServer;
  readonly root: Directory;
  readonly queenLog: AppendLog;
  /** `/log/refused.log`: every refusal line of peers without a ticket (queen only). */
  readonly refusedLog: AppendLog;
  readonly workers: Directory;
  readonly logs: Directory;
  readonly gpu: Directory;
  readonly namespace: Namespace;
  readonly options: ApplianceOptions;
  readonly bootPublicKey: Uint8Array;
  readonly supervisor: Supervisor;
  readonly #bootKey: Uint8Array;
  readonly #log: CommitLog;
  readonly #stages: Stage[];
  readonly #startedMs: number;
  readonly #uptimeAtStart: number;
  #state: ApplianceState;
  /** Seq of the last record folded into `#state` (staged, maybe not yet durable). */
  #appliedSeq: number;
  /** The state as of the last durable record: what a failed commit rolls back to. */
  #durable: { seq: number; state: ApplianceState };
  /** Queen, lifecycle and worker ctl commands, in arrival order (made by `start`). */
  #pipeline: ControlPipeline | undefined;
  #booting = true;
  /** Audit lines for replayed binds that were not applied (written once the log is open). */
  readonly #skippedBinds: string[] = [];
  #offline = false;
  #degraded: string | undefined;
  #pool: WorkerPool | undefined;
  #gpuMount: GpuMount | undefined;
  readonly #auditFile: AuditFile;
  /** Why the commit log cannot write now (the appliance is DEGRADED), or undefined. */
  #storageFault: string | undefined;
  readonly #refusedFile: AuditFile;
  readonly #refusals: RefusalAudit;
  readonly #viewTokens: { tokens: number; at: number };
  readonly #device: DeviceCert | undefined;
  readonly #authority: Authority;
  #updates: UpdateService | undefined;
  readonly #bootLines: (() => string[])[] = [];

  private constructor(init: {
    options: ApplianceOptions;
    bootKey: Uint8Array;
    log: CommitLog;
    state: ApplianceState;
    stages: Stage[];
    startedMs: number;
    uptime: number;
    audit: AuditFile;
    refused: AuditFile;
    device: DeviceCert | undefined;
  }) {
    this.options = init.options;
    this.#bootKey = init.bootKey;
    this.bootPublicKey = publicKeyOf(init.bootKey);
    this.#log = init.log;
    this.#state = init.state;
    this.#appliedSeq = init.log.lastSeq;
    this.#durable = { seq: init.log.lastSeq, state: init.state };
    this.#stages = init.stages;
    this.#startedMs = init.startedMs;
    this.#uptimeAtStart = init.uptime;
    this.queenLog = new AppendLog("queen.log", { retainBytes: init.options.logRetainBytes ?? 1 << 20 });
    this.#auditFile = init.audit;
    this.#refusedFile = init.refused;
    const limits = init.options.audit ?? {};
    this.refusedLog = new AppendLog("refused.log", { retainBytes: 128 << 10 });
    this.#viewTokens = { tokens: limits.viewBurst ?? DEFAULT_VIEW_BURST, at: Date.now() };
    this.#refusals = new RefusalAudit((line, kind) => this.#auditRefusal(line, kind), {
      ...(limits.windowMs !== undefined ? { windowMs: limits.windowMs } : {}),
      ...(limits.maxSources !== undefined ? { maxSources: limits.maxSources } : {}),
      ...(limits.burst !== undefined ? { burst: limits.burst } : {}),
      ...(limits.refillMs !== undefined ? { refillMs: limits.refillMs } : {}),
    });
    this.#device = init.device;
    // The log continues across restarts: show the tail the last boot left.
    const tail = init.audit.previous;
    if (tail.length > 0) this.queenLog.append(tail);
    this.workers = new Directory("worker", { perm: 0o555 });
    this.logs = new Directory("log", { children: [this.queenLog, this.refusedLog] });
    this.gpu = new Directory("gpu", { perm: 0o555 });
    this.root = this.#tree();
    this.namespace = new Namespace(this.root);
    this.#authority = new Authority({
      queenPublicKey: init.options.queenPublicKey,
      bootPublicKey: this.bootPublicKey,
      deviceCert: init.device !== undefined,
      ...(init.options.clock ? { clock: init.options.clock } : {}),
      namespace: this.namespace,
      worker: (id) => this.#state.workers[id],
      account: (id, op) => this.#pool?.account(id, op),
      revoke: (caller, reason) => this.server.revoke((c) => c === caller, reason),
      audit: (l) => this.audit(l),
    });
    this.#applyBinds();
    this.supervisor = new Supervisor({
      onStale: (id) => this.#pool?.onStale(id),
      runDir: join(init.options.stateDir, "run"),
      ...(init.options.programs ? { programs: init.options.programs } : {}),
    });
    this.server = new NineServer({
      root: this.root,
      attach: (req) => this.#authority.attach(req),
      onRefusal: (e) => this.#refused(e.caller, e.request, e.path, e.error, e.peer),
      onInternalError: (e) => this.audit(`internal error in ${e.request} from ${e.peer}: ${e.error.message}`),
      ...(init.options.limits ? { limits: init.options.limits } : {}),
    });
  }

  /**
   * Boots to the point where NineDoor can serve: state directory, boot key,
   * commit log verified and replayed, namespace built. Call `start` once
   * listening to respawn workers and go ONLINE.
   */
  static async boot(options: ApplianceOptions): Promise<Appliance> {
    const cap = options.maxWorkers;
    if (cap !== undefined && !(Number.isSafeInteger(cap) && cap >= 1 && cap <= MAX_WORKER_CAP)) {
      throw new InvalidError(`maxWorkers must be an integer 1..${MAX_WORKER_CAP}, got ${cap}`);
    }
    const startedMs = Date.now();
    const uptime = os.uptime();
    const stages: Stage[] = [];
    const timed = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
      const t = performance.now();
      const out = await fn();
      stages.push({ name, ms: performance.now() - t });
      return out;
    };
    await timed("state", () => openStateDir(options.stateDir));
    const { key: bootKey, created } = await timed("keys", () => loadBootKey(options.stateDir));
    const early: string[] = [];
    // The log heals by itself after a failed write; the appliance is DEGRADED meanwhile.
    const hooks: { audit: (l: string) => void; health: (f: string | undefined) => void } = { audit: (l) => void early.push(l), health: () => undefined };
    const log = await timed("log", () =>
      CommitLog.open(options.stateDir, {
        key: commitLogKey(bootKey),
        onAudit: (l) => hooks.audit(l),
        onHealth: (f) => hooks.health(f),
        ...(options.commitLogFs ? { fs: options.commitLogFs } : {}),
      }),
    );
    let state = genesis;
    await timed("replay", async () => {
      for (const r of log.recovered) state = applyCommit(state, commitFromRecord(r));
    });
    // Workers a killed root task left behind would hold on to stale state.
    const reaped = Supervisor.reapLeftovers(join(options.stateDir, "run"));
    const limits = options.audit ?? {};
    const fileLimits = (rotateBytes: number | undefined) => ({
      ...(rotateBytes !== undefined ? { rotateBytes } : {}),
      ...(limits.reserveBytes !== undefined ? { reserveBytes: limits.reserveBytes } : {}),
    });
    const audit = await timed("audit", () => AuditFile.open(join(options.stateDir, "queen.log"), fileLimits(limits.rotateBytes)));
    const refused = await AuditFile.open(join(options.stateDir, "refused.log"), fileLimits(limits.refusedRotateBytes ?? DEFAULT_REFUSED_ROTATE_BYTES));
    const device = options.network?.device === true ? await timed("tls", () => loadDeviceCert(options.stateDir, bootKey)) : undefined;
    const app = new Appliance({ options, bootKey, log, state, stages, startedMs, uptime, audit, refused, device });
    hooks.audit = (l) => app.audit(l);
    hooks.health = (f) => app.#storageHealth(f);
    app.audit(`boot board=${options.board} version=${VERSION} records=${log.recovered.length} head=${log.lastSeq}`);
    for (const line of early) app.audit(line);
    for (const line of app.#skippedBinds) app.audit(line);
    if (reaped.length > 0) app.audit(`stopped ${reaped.length} worker process(es) left by the previous boot: pids ${reaped.join(" ")}`);
    if (created) await app.commit({ kind: "key", body: { event: "boot key created", key_id: keyId(app.bootPublicKey) } });
    if (device) app.audit(`device certificate ${device.created ? "made" : "loaded"}: ${device.fingerprint}`);
    if (options.update) await app.#publishUpdates(options.update);
    return app;
  }

  /**
   * Opens the update service and publishes `/update/` (queen only: the
   * policy shows workers nothing there). Its ctl takes the same signed
   * envelopes as `/queen/ctl`, and its commands run outside the control
   * queue, so writing a slot holds up no other command.
   */
  async #publishUpdates(update: NonNullable<ApplianceOptions["update"]>): Promise<void> {
    const service = await UpdateService.open({ ...update, stateDir: this.options.stateDir, board: this.options.board, audit: (l) => this.audit(l) });
    this.#updates = service;
    this.root.add(
      updateDirectory(service, {
        ctl: (text, ctx) => this.#control().outside(text, ctx.caller, "update ctl", (command) => service.command(command, ctx.caller)),
      }),
    );
    this.audit(`update service on ${update.bootDir}: running slot ${update.runningSlot} version ${update.runningVersion}`);
  }

  /**
   * Applies the replayed binds to the namespace, except those an older
   * version accepted that cover the root task's own files (`/queen`,
   * `/proc`, `/log`) or cannot be made: those are skipped with an audit
   * line, so `/queen/ctl` stays reachable and the queen can unbind them.
   */
  #applyBinds(): void {
    for (const b of this.#state.binds) {
      const guarded = protectedTarget(b.to);
      let why = guarded ? `${guarded} cannot be covered` : undefined;
      try {
        if (!why) this.namespace.bind(b.from, b.to);
      } catch (err) {
        why = (err as Error).message;
      }
      if (why) this.#skippedBinds.push(`bind ${b.from} onto ${b.to} not applied: ${why}; remove it with {"unbind":${JSON.stringify(b.to)}}`);
    }
  }

  /** The cap on running workers in force. */
  get maxWorkers(): number {
    return this.options.maxWorkers ?? defaultWorkerCap();
  }

  /** The state as replayed from the log plus everything committed since. */
  get state(): ApplianceState {
    return this.#state;
  }

  /** The lifecycle as shown in /proc/lifecycle. */
  get lifecycle(): { state: LifecycleState; reason: string; since: number } {
    const l = this.#state.lifecycle;
    if (this.#offline) return { state: "OFFLINE", reason: "shutdown", since: Date.now() };
    if (this.#booting) return { state: "BOOTING", reason: "boot", since: this.#startedMs };
    const degraded = this.#storageFault ?? this.#degraded;
    if (degraded && l.state === "ONLINE") return { state: "DEGRADED", reason: degraded, since: l.sinceMs };
    return { state: l.state, reason: l.reason, since: l.sinceMs || this.#startedMs };
  }

  /** The fleet id: the configured one, else `cx-<boot key id>`. */
  get fleetId(): string {
    return this.options.fleetId ?? `cx-${keyId(this.bootPublicKey)}`;
  }

  /**
   * Adds lines to `/proc/boot` (before `started=`), read each time the file
   * is, e.g. the fleet link's `fleet=` and `fleet_problem=`.
   *
   * @example
   * ```ts
   * app.addBootLines(() => ["fleet=mqtt://10.0.2.2:1883 id=app-1"]);
   * ```
   */
  addBootLines(lines: () => string[]): void {
    this.#bootLines.push(lines);
  }

  /** The boot signing key's private half, for minting worker tickets. */
  get bootKey(): Uint8Array {
    return this.#bootKey;
  }

  /** The device certificate NineDoor's TLS listener presents, when `tls.device` was asked. */
  get deviceCert(): DeviceCert | undefined {
    return this.#device;
  }

  /** Where NineDoor's Unix socket for workers goes. */
  get socketPath(): string {
    return join(this.options.stateDir, "nine-door.sock");
  }

  /**
   * Respawns the workers the log says are running (same ids, fresh
   * tickets) and moves BOOTING → ONLINE (or the replayed lifecycle).
   */
  async start(options: { workerAddr: string }): Promise<void> {
    const t = performance.now();
    this.#pool = new WorkerPool(
      {
        server: this.server,
        workers: this.workers,
        logs: this.logs,
        supervisor: this.supervisor,
        bootKey: this.#bootKey,
        audit: (l) => this.audit(l),
        commit: (c) => this.commit(c),
        worker: (id) => this.#state.workers[id],
        ended: (w, reason) => this.#leaseEnded(w, reason),
        workerCommand: (id, text, caller) => this.#control().worker(id, text, caller),
      },
      {
        addr: options.workerAddr,
        ...(this.options.intervalMs !== undefined ? { intervalMs: this.options.intervalMs } : {}),
        ...(this.options.graceMs !== undefined ? { graceMs: this.options.graceMs } : {}),
        ...(this.options.workerEnv !== undefined ? { env: this.options.workerEnv } : {}),
      },
    );
    this.#pipeline = new ControlPipeline(this.#controlHost(this.#pool), {
      ...(this.options.clock ? { clock: this.options.clock } : {}),
      // While the commit log cannot write, every command answers busy: at once.
      refusal: () => (this.#storageFault ? this.#storageBusy() : undefined),
      audit: (l) => this.audit(l),
    });
    this.#mountGpu();
    for (const w of runningWorkers(this.#state)) {
      try {
        this.#pool.start(w);
      } catch (err) {
        await this.commit({ kind: "exit", body: { id: w.id, status: "exited", reason: `respawn failed: ${(err as Error).message}` } });
        this.audit(`respawn of ${w.id} failed: ${(err as Error).message}`);
      }
    }
    this.#stages.push({ name: "workers", ms: performance.now() - t });
    this.#booting = false;
    const l = this.lifecycle;
    this.audit(`lifecycle ${l.state} reason=${l.reason}`);
  }

  /**
   * Spawns a worker of `kind` as the root task itself (the required and
   * health workers of a try boot): the same spawn as a queen's, in the
   * same control queue, committed before the process starts, but no
   * envelope is asked for. Resolves with the worker's id.
   *
   * @example
   * ```ts
   * await app.spawnWorker("camera"); // "worker-3"
   * ```
   */
  async spawnWorker(kind: string): Promise<string> {
    const reply = JSON.parse(await this.#control().own(JSON.stringify({ spawn: kind }))) as { worker: string };
    return reply.worker;
  }

  /** Appends one human line to /log/queen.log. */
  audit(line: string): void {
    const text = `${new Date().toISOString()} ${line.replace(/\n/g, " ")}\n`;
    this.queenLog.append(text);
    this.#auditFile.write(text);
  }

  /** Commits a state change and resolves once it is durable (see {@link stage}). */
  async commit(c: Commit): Promise<void> {
    await this.stage(c);
  }

  /**
   * Stages a state change: its record takes the next seq and the change is
   * applied to the in-memory state at once, so the next command sees it;
   * the promise resolves once the record is durable. Effects of the change
   * (a process, a namespace node, a reply) must wait for that. If the log
   * cannot make it durable, the state rolls back to the last durable record,
   * the appliance goes DEGRADED with the reason, and the promise rejects
   * with `busy: …`; the same for every change staged behind it. `effect`
   * (e.g. a bind put into the namespace) runs once the record is durable,
   * before the promise resolves; effects run in record order.
   *
   * @example
   * ```ts
   * const durable = app.stage({ kind: "budget", body: { budget: { ops: 5 } } });
   * app.state.defaults.ops; // 5 already
   * await durable; // now it may be acknowledged
   * ```
   */
  stage(c: Commit, effect?: () => void): Promise<void> {
    const before = this.#log.assignedSeq;
    const appended = this.#log.append(c.kind, c.body);
    const seq = this.#log.assignedSeq;
    if (seq === before) return appended.then(() => undefined, (err: unknown) => Promise.reject(this.#notDurable(err)));
    const state = applyCommit(this.#state, c);
    this.#state = state;
    this.#appliedSeq = seq;
    return appended.then(
      () => {
        if (seq > this.#durable.seq) this.#durable = { seq, state };
        // Records become durable in seq order, and so their effects run.
        try {
          effect?.();
        } catch (err) {
          this.audit(`record ${seq} (${c.kind}) is durable but acting on it failed: ${(err as Error).message}`);
        }
      },
      (err: unknown) => {
        this.#rollBack();
        throw this.#notDurable(err);
      },
    );
  }

  /**
   * The binds a bind's checks must see: the namespace's, with the binds
   * and unbinds staged but not yet durable (not yet in the namespace)
   * folded in, so two binds in a row are checked against each other.
   */
  #bindsAhead(): Array<{ from: string; to: string }> {
    const staged = new Map(this.#state.binds.map((b) => [b.to, b.from]));
    const durable = new Map(this.#durable.state.binds.map((b) => [b.to, b.from]));
    const ahead = new Map(this.namespace.binds().map((b) => [b.to, b.from]));
    for (const [to, from] of durable) if (staged.get(to) !== from) ahead.delete(to);
    for (const [to, from] of staged) if (durable.get(to) !== from) ahead.set(to, from);
    return [...ahead].map(([to, from]) => ({ from, to }));
  }

  /** A failed commit as callers see it: `busy:` while the log cannot write (DEGRADED), `closed:` once it is closed. */
  #notDurable(err: unknown): unknown {
    return this.#storageFault ? this.#storageBusy() : err;
  }

  /**
   * The log failed a write (it is DEGRADED through `#storageHealth` and
   * heals by itself): the staged changes it rejected never happened, so
   * the state goes back to the last durable record.
   */
  #rollBack(): void {
    if (this.#appliedSeq <= this.#durable.seq) return;
    this.audit(`state rolled back from record ${this.#appliedSeq} to the last durable record ${this.#durable.seq}`);
    this.#state = this.#durable.state;
    this.#appliedSeq = this.#durable.seq;
  }

  /**
   * The durable state and the seq of the last record folded into it, as
   * shown in `/proc/state`: `replay(genesis, records 1..seq)` must equal
   * `state`. Changes staged but not yet durable are not in it.
   */
  get snapshot(): { seq: number; state: ApplianceState } {
    return { seq: this.#durable.seq, state: this.#durable.state };
  }

  /** The commit log's counters, as shown in `/proc/state` (`log`). */
  get logStats(): { appends: number; fsyncs: number; recordsPerFsync: number; head: number; failure: string | undefined } {
    const st = this.#log.stats;
    return { appends: st.appends, fsyncs: st.syncs, recordsPerFsync: st.syncs > 0 ? st.appends / st.syncs : 0, head: this.#log.lastSeq, failure: this.#storageFault };
  }

  /** The commit log started failing (a reason) or works again (undefined). */
  #storageHealth(failure: string | undefined): void {
    const reason = failure === undefined ? undefined : `state disk: commit log cannot write (${failure.replace(/^io: /, "")}); retrying`;
    if (this.#storageFault === reason) return;
    this.#storageFault = reason;
    this.audit(reason ? `lifecycle DEGRADED reason=${reason}` : "lifecycle ONLINE reason=commit log recovered");
  }

  #storageBusy(): BusyError {
    return new BusyError(`${this.#storageFault ?? "state disk: commit log cannot write"}: nothing was changed, try again when /proc/lifecycle/state is ONLINE`);
  }

  /** Marks the appliance DEGRADED (or clears it with undefined); not a commit. */
  setDegraded(reason: string | undefined): void {
    if (this.#degraded === reason) return;
    this.#degraded = reason;
    this.audit(reason ? `lifecycle DEGRADED reason=${reason}` : "lifecycle ONLINE reason=recovered");
  }

  /**
   * Stops serving: workers are stopped without a commit (the next boot
   * respawns them), sessions dropped, the commit log flushed and closed.
   */
  async shutdown(reason: string): Promise<void> {
    if (this.#offline) return;
    this.#offline = true;
    this.audit(`lifecycle OFFLINE reason=${reason}`);
    this.#gpuMount?.close();
    await this.#updates?.close();
    await this.#pool?.shutdown();
    this.server.close();
    this.#authority.close();
    await this.#log.close();
    this.#refusals.close();
    this.#auditFile.close();
    this.#refusedFile.close();
  }

  /** What the control commands act on; built once, when the worker pool exists. */
  #controlHost(pool: WorkerPool): ControlHost {
    // The getters read the live state after later commits.
    const app = this;
    return {
      get state() {
        return app.#state;
      },
      pool,
      queenPublicKey: this.options.queenPublicKey,
      policy: this.options.policy ?? "open",
      applianceId: this.fleetId,
      programs: this.options.programs ?? BUILTIN_WORKERS,
      gpuUnavailable: () => (this.#gpuMount ? this.#gpuMount.unavailable() : "no gpu bridge mounted"),
      leaseGpu: async (worker, lease) => {
        if (!this.#gpuMount) throw new BusyError("no gpu bridge mounted");
        const record = await this.#gpuMount.lease(worker, lease);
        this.audit(`gpu lease ${record.gpu_id} for ${worker}: mem=${record.mem_mb} streams=${record.streams} priority=${record.priority} ttl=${record.ttl_s}`);
      },
      releaseGpu: (worker, gpuId, reason) => this.#gpuMount?.release(worker, gpuId, reason) ?? Promise.resolve(),
      get maxWorkers() {
        return app.maxWorkers;
      },
      maxWorkersKnob: this.options.maxWorkers !== undefined ? "the maxWorkers option, cohesix serve --max-workers N" : "the maxWorkers option, cohesix serve --max-workers N (default derived from memory)",
      commit: (c) => this.commit(c),
      stage: (c, effect) => this.stage(c, effect),
      audit: (l) => this.audit(l),
      checkBind: (from, to) =>
        checkBind(
          { from, to },
          {
            namespace: this.namespace,
            binds: this.#bindsAhead(),
            workers: runningWorkers(this.#state).map((w) => ({ role: w.role, subject: w.id, ...(w.lease ? { mounts: [`/gpu/${w.lease.gpu_id}`] } : {}) })),
            ctx: { caller: { role: "queen", subject: "root-task" }, signal: AbortSignal.timeout(10_000) },
          },
        ),
      bind: (from, to) => this.namespace.bind(from, to),
      unbind: (to) => {
        // A replayed bind skipped at boot is in the state but not the namespace.
        if (this.namespace.binds().some((b) => b.to === to)) this.namespace.unbind(to);
      },
      checkMount: (service, at) => {
        if (service !== "gpu") throw new InvalidError(`no ${service} service to mount (known: gpu)`);
        if (at !== "/gpu") throw new InvalidError(`the gpu service mounts at /gpu, not ${at}`);
        if (!this.#gpuMount) throw new InvalidError("no gpu bridge configured: start the appliance with --gpu-bridge DIAL");
      },
      mount: () => {
        if (!this.#gpuMount) return;
        this.#placeGpu(this.#gpuMount.remount());
        this.audit(`mounted gpu bridge at /gpu`);
      },
    };
  }

  /** Mounts the configured bridge at /gpu (the placeholder stays without one). */
  #mountGpu(): void {
    const config = this.options.gpuBridge;
    if (!config) {
      if (this.#state.mounts.some((m) => m.service === "gpu")) this.audit("gpu mount recorded but no --gpu-bridge given: /gpu stays empty");
      return;
    }
    const app = this;
    this.#gpuMount = new GpuMount(config, {
      audit: (l) => this.audit(l),
      setDegraded: (r) => this.setDegraded(r),
      running: () => runningWorkers(this.#state),
      worker: (id) => this.#state.workers[id],
      revoke: (id, reason) => app.#pool?.revoke(id, reason) ?? Promise.resolve(),
      signedCtl: this.options.policy === "signed-ctl",
    });
    this.#placeGpu(this.#gpuMount.node);
    this.audit(`gpu bridge ${config.dial} mounted at /gpu${config.pin ? " (TLS, pinned)" : ""}`);
  }

  #placeGpu(node: Node): void {
    this.root.remove("gpu");
    this.root.add(node);
  }

  /** A worker with a lease ended: give the lease back to the bridge. */
  #leaseEnded(w: WorkerState, reason: string): void {
    const lease = w.lease;
    if (!lease || !this.#gpuMount) return;
    this.#gpuMount.release(w.id, lease.gpu_id, reason).then(
      () => this.audit(`gpu lease ${lease.gpu_id} of ${w.id} released: ${reason}`),
      (err: unknown) => this.audit(`gpu lease ${lease.gpu_id} of ${w.id} not released: ${(err as Error).message}`),
    );
  }

  #tree(): Directory {
    const app = this;
    return buildTree({
      banner: () => this.#banner(),
      lifecycle: () => this.lifecycle,
      get server() {
        return app.server;
      },
      workers: () => this.#pool?.describe((id) => this.#state.workers[id]) ?? "",
      snapshot: () => this.snapshot,
      log: () => this.logStats,
      ctr: () => this.#state.ctr,
      running: () => this.#pool?.running ?? 0,
      maxWorkers: () => this.maxWorkers,
      queenCtl: (text, ctx) => this.#control().queen(text, ctx.caller),
      lifecycleCtl: (text, ctx) => this.#control().lifecycle(text, ctx.caller),
      gpu: this.gpu,
      logs: this.logs,
      workerDir: this.workers,
    });
  }

  #manifestLines(): string[] {
    const check = this.options.bootManifest?.();
    return check ? [`manifest=${check.digest}`, `manifest_check=${check.status}`] : ["manifest=none"];
  }

  #banner(): string {
    const ids = Object.keys(this.options.programs ?? BUILTIN_WORKERS).sort();
    return [
      `cohesix ${VERSION}`,
      `board=${this.options.board}`,
      `node=${process.version}`,
      `kernel=${os.type()} ${os.release()} ${os.arch()}`,
      `kernel_uptime_at_start_s=${this.#uptimeAtStart.toFixed(1)}`,
      `image=${this.options.imageDigest ?? "none"}`,
      ...this.#manifestLines(),
      ...(this.options.bootSlot?.() ?? []),
      `boot_key=${keyId(this.bootPublicKey)}`,
      `tls=${this.options.network?.tls === true ? "on" : "off"}`,
      `tls_reason=${this.options.network?.reason ?? "not configured"}`,
      `tls_fingerprint=${this.#device?.fingerprint ?? "none"}`,
      `queen_key=${keyId(this.options.queenPublicKey)}`,
      `policy=${this.options.policy ?? "open"}`,
      `workers=${ids.join(",")}`,
      `log_head=${this.#log.lastSeq}`,
      ...this.#bootLines.flatMap((f) => f()),
      `started=${new Date(this.#startedMs).toISOString()}`,
      ...this.#stages.map((s) => `stage.${s.name}_ms=${s.ms.toFixed(1)}`),
      "",
    ].join("\n");
  }

  /** The control pipeline, once `start` has made it; before that, commands are refused. */
  #control(): ControlPipeline {
    if (!this.#pipeline) throw new InvalidError("appliance is still booting");
    return this.#pipeline;
  }

  #refused(caller: Caller | undefined, request: string, path: string | undefined, error: NineError, peer: string): void {
    if (caller) {
      // Authenticated: accountable (and budgeted), audited in full.
      this.audit(`refused ${caller.role} ${caller.subject} ${request}${path ? ` ${path}` : ""}: ${error.message}`);
      return;
    }
    this.#refusals.report({ who: `peer ${peer}`, source: peerSource(peer), request, ...(path ? { path } : {}), message: error.message });
  }

  /** A refusal line of a peer without a ticket: to /log/queen.log, and on disk to refused.log with its own budget. */
  #auditRefusal(line: string, kind: RefusalLineKind): void {
    const text = `${new Date().toISOString()} ${line.replace(/\n/g, " ")}\n`;
    this.refusedLog.append(text);
    this.#refusedFile.write(text);
    // The view of authenticated history gets few of them: full lines while
    // its own bucket lasts, then one total a window.
    if (kind === "count") return;
    if (kind === "first" && !this.#viewToken()) return;
    this.queenLog.append(text);
  }

  #viewToken(): boolean {
    const limits = this.options.audit ?? {};
    const burst = limits.viewBurst ?? DEFAULT_VIEW_BURST;
    const every = limits.viewRefillMs ?? DEFAULT_VIEW_REFILL_MS;
    const b = this.#viewTokens;
    const now = Date.now();
    const add = Math.floor((now - b.at) / every);
    if (add > 0) {
      b.tokens = Math.min(burst, b.tokens + add);
      b.at = b.tokens === burst ? now : b.at + add * every;
    }
    if (b.tokens <= 0) return false;
    b.tokens--;
    return true;
  }
}

async function openStateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 }).catch((err: Error) => {
    throw new InvalidError(`state directory ${dir} cannot be created: ${err.message}`);
  });
  await access(dir, constants.W_OK).catch(() => {
    throw new PermissionError(`state directory ${dir} is not writable: choose another --state DIR or fix its permissions`);
  });
}

async function loadBootKey(stateDir: string): Promise<{ key: Uint8Array; created: boolean }> {
  const path = join(stateDir, "boot.key");
  try {
    return { key: await readPrivateKey(path), created: false };
  } catch (err) {
    if ((err as NineError).errorClass !== "not found") throw err;
  }
  const written = await writeKeyPair(stateDir, { name: "boot" });
  return { key: written.privateKey, created: true };
}

export type { WorkerState };
