/**
 * Queen control: what each command of DESIGN §6, each lifecycle word and
 * each worker ctl word does. Every command runs in two steps. The first,
 * in the control queue, validates it without side effects and stages its
 * records (seq taken, state applied in memory). The second, after the
 * queue has moved on, waits until those records are durable, then acts
 * (a process started or stopped, a bind put into the namespace) and
 * replies. A command refused at any point before its records are durable
 * leaves nothing behind: no record, no namespace node, no process.
 * @module
 */
import { BusyError, InvalidError, NotFoundError, type Caller } from "../nine-door/index.ts";
import { parseBudget, parseQueenCommand, queenCommandOf, type Budget, type LeaseRequest, type QueenCommand } from "./queen-command.ts";
import { isEnvelope, openEnvelope, openParsedEnvelope } from "./signed-ctl.ts";
import { runningWorkers, type ApplianceState, type Commit, type LifecycleState } from "./state.ts";
import type { WorkerPool } from "./worker-pool.ts";

/** What control needs from the appliance. */
export interface ControlHost {
  readonly state: ApplianceState;
  readonly pool: WorkerPool;
  readonly queenPublicKey: Uint8Array;
  /** `open` accepts plain commands and envelopes; `signed-ctl` only envelopes. */
  readonly policy: "open" | "signed-ctl";
  /**
   * This appliance's fleet id: an envelope addressed with `to` must name
   * it (docs/fleet.md, "Commands").
   */
  readonly applianceId?: string;
  /**
   * Worker kinds this image can spawn, with their roles and, for a
   * project's workers, the config's default budget and restart policy.
   */
  readonly programs: Readonly<Record<string, { readonly role: string; readonly budget?: Budget; readonly restart?: boolean }>>;
  /** Why a GPU spawn cannot happen now, or undefined when it can. */
  gpuUnavailable(): string | undefined;
  /**
   * Asks the GPU bridge for `worker`'s lease (`LEASE` on its ctl); throws
   * the bridge's refusal (`busy:`, `invalid:`, `not found:`). Called before
   * the spawn is committed.
   */
  leaseGpu?(worker: string, lease: LeaseRequest): Promise<void>;
  /** Gives a lease back (`RELEASE`), e.g. when the spawn fails after the lease. */
  releaseGpu?(worker: string, gpuId: string, reason: string): Promise<void>;
  /** Most workers running at once; a spawn past it answers `busy:`. */
  readonly maxWorkers: number;
  /** Where the worker cap comes from, for the refusal (e.g. `maxWorkers option`). */
  readonly maxWorkersKnob?: string;
  /** Commits and resolves once durable (`stage` then wait). */
  commit(c: Commit): Promise<void>;
  /**
   * Applies `c` to the state at once, under the next seq, and resolves once
   * its record is durable; rejects (state rolled back) if it cannot be.
   * `effect` runs when the record is durable, before the promise resolves,
   * in record order (a bind reaches the namespace before a later unbind).
   */
  stage(c: Commit, effect?: () => void): Promise<void>;
  audit(line: string): void;
  /** Refuses a bind that is not acceptable (see `checkBind`); changes nothing. */
  checkBind(from: string, to: string): Promise<void>;
  /** Applies a committed bind to the shared namespace. */
  bind(from: string, to: string): void;
  /** Removes a committed unbind's bind from the shared namespace. */
  unbind(to: string): void;
  /** Refuses a mount that cannot happen (unknown service, nothing configured); changes nothing. */
  checkMount(service: string, at: string): void;
  /** Mounts a service once its mount is committed. */
  mount(service: string, at: string): void;
}

/** The role of the fleet link's ticket (docs/fleet.md): reads through 9P, forwards signed commands. */
export const FLEET_ROLE = "fleet";

/** The lifecycle words `/queen/lifecycle/ctl` accepts. */
export const LIFECYCLE_WORDS = ["cordon", "drain", "resume", "quiesce", "reset"] as const;

/**
 * What a command does once its records are durable: its effects (a
 * process started, a lease given back on failure) and then its reply.
 */
export type Finish = () => Promise<string>;

/** The records one command staged, to wait for together. */
class Staged {
  readonly #host: ControlHost;
  readonly #waits: Promise<void>[] = [];
  constructor(host: ControlHost) {
    this.#host = host;
  }
  stage(c: Commit, effect?: () => void): void {
    const p = this.#host.stage(c, effect);
    p.catch(() => undefined); // reported through durable()
    this.#waits.push(p);
  }
  /** Resolves once every staged record is durable; rejects with the first failure. */
  async durable(): Promise<void> {
    await Promise.all(this.#waits);
  }
}

/**
 * Runs one write to `/queen/ctl` in two steps. The first, run in the
 * control queue: unwraps a signed envelope (refusing replays), parses,
 * validates and stages the command's records, so the next command sees
 * its worker id and counter taken. It returns the second step, run after
 * the queue has moved on: wait until the records are durable, then act
 * and return the reply line. A command refused in the first step stages
 * nothing (except, under `signed-ctl`, its counter).
 */
export async function runQueenCommand(host: ControlHost, text: string, caller: Caller): Promise<Finish> {
  return signedCommand(host, text, {
    unsigned: 'policy signed-ctl: wrap the command as {"cmd":{…},"nonce":…,"ctr":n,"sig":…} (cohesix ctl does this)',
    begin: (command, staged) => {
      // An envelope's command was parsed when it was opened: not again.
      const workers = { workers: Object.keys(host.programs) };
      const cmd = command.parsed ? queenCommandOf(command.parsed, workers) : parseQueenCommand(command.text, workers);
      return execute(host, staged, cmd, caller);
    },
    audit: (command) => `ctl from ${caller.subject}: ${command.text}`,
    // The fleet link forwards commands from the broker.
    fromFleet: caller.role === FLEET_ROLE,
  });
}

/** A command as the first step sees it: its text, and its value when an envelope's parsing already made it. */
interface CommandText {
  readonly text: string;
  readonly parsed?: object;
}

/**
 * The two steps every ctl write takes, and the signed-ctl rule they share.
 * Under `signed-ctl` only an envelope is accepted, and its counter is
 * staged before the command's own first step, so it is consumed even if
 * the command is then refused (a refused envelope cannot be replayed once
 * it would pass). Under `open` plain commands are accepted and an envelope
 * is checked the same way, its counter staged after the command's records
 * (a refused envelope changes nothing). The counter is one for every ctl
 * file (`/queen/ctl`, `/queen/lifecycle/ctl`, `/worker/<id>/ctl`).
 */
async function signedCommand(
  host: ControlHost,
  text: string,
  steps: {
    /** The refusal of a plain command under `signed-ctl`. */
    readonly unsigned: string;
    readonly begin: (command: CommandText, staged: Staged) => Promise<Act> | Act;
    /** The audit line once the command is done, if any. */
    readonly audit?: (command: CommandText) => string;
    /** Sent by the fleet link: only addressed envelopes (the signature, not its role, is the authority). */
    readonly fromFleet?: boolean;
  },
): Promise<Finish> {
  let command: CommandText = { text };
  let ctr: number | undefined;
  const staged = new Staged(host);
  if (host.policy === "signed-ctl" || steps.fromFleet || isEnvelope(text)) {
    if (steps.fromFleet && !isEnvelope(text)) throw new InvalidError("fleet: /queen/ctl takes only signed envelopes addressed with to from the fleet link");
    if (!isEnvelope(text)) throw new InvalidError(steps.unsigned);
    const opened = openParsedEnvelope(text, host.queenPublicKey, { lastCtr: host.state.ctr, ...(host.applianceId !== undefined ? { applianceId: host.applianceId } : {}) });
    if (steps.fromFleet && opened.to === undefined) throw new InvalidError("fleet: a command from the fleet must be addressed (envelope.to)");
    command = { text: opened.command, parsed: opened.value };
    ctr = opened.ctr;
    if (host.policy === "signed-ctl") staged.stage({ kind: "ctr", body: { ctr } });
  }
  let act: Act;
  try {
    act = await steps.begin(command, staged);
  } catch (err) {
    // The refusal is a reply too: it waits for the consumed counter.
    await staged.durable();
    throw err;
  }
  if (ctr !== undefined && host.policy !== "signed-ctl") staged.stage({ kind: "ctr", body: { ctr } });
  return async () => {
    const reply = await act(() => staged.durable());
    if (steps.audit) host.audit(steps.audit(command));
    return JSON.stringify({ ok: true, ...reply });
  };
}

/** A command's second step: given a wait for its records, acts and returns the reply's fields. */
type Act = (durable: () => Promise<void>) => Promise<Record<string, unknown>>;

async function execute(host: ControlHost, staged: Staged, cmd: QueenCommand, caller: Caller): Promise<Act> {
  switch (cmd.kind) {
    case "spawn":
      return spawn(host, staged, cmd);
    case "kill": {
      // The exit record is staged now; the process stops once it is durable.
      const stop = host.pool.beginKill(cmd.worker, caller.subject);
      return async (durable) => {
        await durable();
        await stop();
        return { worker: cmd.worker, status: "killed" };
      };
    }
    case "budget": {
      staged.stage({ kind: "budget", body: { budget: cmd.budget } });
      const defaults = host.state.defaults;
      return done({ defaults });
    }
    // Binds, unbinds and mounts reach the namespace when their records are
    // durable, in record order; the next bind's checks see the staged ones.
    case "bind":
      await host.checkBind(cmd.from, cmd.to);
      staged.stage({ kind: "bind", body: { from: cmd.from, to: cmd.to } }, () => host.bind(cmd.from, cmd.to));
      return done({ bind: { from: cmd.from, to: cmd.to } });
    case "unbind": {
      const bound = host.state.binds;
      if (!bound.some((b) => b.to === cmd.to)) {
        throw new NotFoundError(`no bind on ${cmd.to} (binds: ${bound.map((b) => b.to).join(", ") || "none"})`);
      }
      staged.stage({ kind: "unbind", body: { to: cmd.to } }, () => host.unbind(cmd.to));
      return done({ unbind: cmd.to });
    }
    case "mount":
      host.checkMount(cmd.service, cmd.at);
      staged.stage({ kind: "mount", body: { service: cmd.service, at: cmd.at } }, () => host.mount(cmd.service, cmd.at));
      return done({ mount: { service: cmd.service, at: cmd.at } });
  }
}

/** An act with nothing to do but wait for its records (a counter staged after them too) and reply. */
function done(reply: Record<string, unknown>): Act {
  return async (durable) => {
    await durable();
    return reply;
  };
}

async function spawn(host: ControlHost, staged: Staged, cmd: Extract<QueenCommand, { kind: "spawn" }>): Promise<Act> {
  const s = host.state;
  if (s.cordoned) throw new BusyError("cordoned");
  if (s.lifecycle.state === "DRAINING" || s.lifecycle.state === "QUIESCED" || s.lifecycle.state === "OFFLINE") {
    throw new BusyError(`appliance is ${s.lifecycle.state}: resume first`);
  }
  const program = host.programs[cmd.worker];
  if (!program) throw new NotFoundError(`no worker program ${JSON.stringify(cmd.worker)}`);
  // GPU workers (role worker-gpu: gpu, inference) need a lease; nobody else takes one.
  const usesGpu = cmd.worker === "gpu" || program.role === "worker-gpu";
  if (usesGpu && !cmd.lease) throw new InvalidError(`spawn ${cmd.worker} needs a lease: {"gpu_id":…,"mem_mb":…,"streams":…,"ttl_s":…}`);
  if (!usesGpu && cmd.lease) throw new InvalidError(`spawn ${cmd.worker}: a lease is only for GPU workers (role worker-gpu)`);
  if (usesGpu) {
    const why = host.gpuUnavailable();
    if (why) throw new BusyError(why);
  }
  const running = runningWorkers(s).length;
  if (running >= host.maxWorkers) {
    throw new BusyError(`worker cap ${host.maxWorkers} reached (${running} running; kill one, or raise ${host.maxWorkersKnob ?? "the maxWorkers option"})`);
  }
  // Appliance defaults, then the program's own (cohesix.config.json), then the command's.
  // Checked again as a whole: defaults from an older log may lie outside today's bounds.
  const budget: Budget = parseBudget("spawn budget (with defaults)", {
    ...s.defaults,
    ...program.budget,
    ...cmd.budget,
    ...(cmd.ticks !== undefined ? { ticks: cmd.ticks } : {}),
  });
  const id = `worker-${s.nextWorker}`;
  const restart = cmd.restart ?? program.restart ?? false;
  // Whatever would make the start fail is found now, before anything is committed.
  host.pool.check({ id, kind: cmd.worker, role: program.role, budget, restart, ...(cmd.lease ? { lease: cmd.lease } : {}), status: "running", spawnedMs: Date.now() });
  // The lease first: a refusal reaches the queen and nothing is committed.
  if (cmd.lease) {
    if (!host.leaseGpu) throw new BusyError("no gpu bridge mounted");
    await host.leaseGpu(id, cmd.lease);
  }
  const giveBack = (reason: string): Promise<void> =>
    cmd.lease && host.releaseGpu ? host.releaseGpu(id, cmd.lease.gpu_id, reason).catch(() => undefined) : Promise.resolve();
  try {
    staged.stage({
      kind: "spawn",
      body: {
        id,
        kind: cmd.worker,
        role: program.role,
        budget,
        restart,
        ...(cmd.lease ? { lease: cmd.lease } : {}),
        ts_ms: Date.now(),
      },
    });
  } catch (err) {
    await giveBack("spawn not committed");
    throw err;
  }
  // The process starts only once the spawn record is durable.
  return async (durable) => {
    try {
      await durable();
    } catch (err) {
      await giveBack("spawn not committed");
      throw err;
    }
    const w = host.state.workers[id];
    // Ended (or rolled back) while its record was on its way to disk: nothing to start.
    if (!w || w.status !== "running") throw new BusyError(`${id} ended before it started${w?.reason ? `: ${w.reason}` : ""}`);
    try {
      host.pool.start(w);
    } catch (err) {
      await host.commit({ kind: "exit", body: { id, status: "exited", reason: `spawn failed: ${(err as Error).message}` } });
      await giveBack("spawn failed");
      throw err;
    }
    return { worker: id };
  };
}

/**
 * Runs one write to `/queen/lifecycle/ctl`, in the two steps of
 * {@link runQueenCommand}: its records are staged in the queue, and
 * workers stop once those are durable.
 *
 * - `cordon`: refuse new spawns; workers keep running.
 * - `drain`: cordon, stop every worker gracefully, then QUIESCED (unless
 *   another lifecycle word came meanwhile, e.g. `resume`).
 * - `quiesce`: stop every worker at once (short grace), QUIESCED.
 * - `resume`: back to ONLINE, spawns allowed.
 * - `reset`: stop every worker, forget budget defaults' effect on nothing
 *   else, and return to ONLINE uncordoned.
 *
 * Each word may also be written as `{"lifecycle":"<word>"}`, the form a
 * signed envelope carries; under `signed-ctl` only an envelope is accepted.
 */
export async function runLifecycleCommand(host: ControlHost, text: string, caller: Caller): Promise<Finish> {
  let word = "";
  return signedCommand(host, text, {
    unsigned: 'policy signed-ctl: wrap the command as {"cmd":{…},"nonce":…,"ctr":n,"sig":…} (cohesix write and cohesix ctl do this)',
    begin: (command, staged) => {
      word = lifecycleWord(command.text);
      return beginLifecycleWord(host, staged, word, caller);
    },
    audit: () => `lifecycle from ${caller.subject}: ${word} → ${host.state.lifecycle.state}`,
  });
}

/**
 * Runs one write to `/worker/<id>/ctl`: `kill`, or `{"kill":"<id>"}`
 * (the form a signed envelope carries). Under `signed-ctl` only an
 * envelope is accepted, as on `/queen/ctl`. Two steps, as
 * {@link runQueenCommand}: the exit record is staged in the queue, and the
 * process stops once it is durable.
 */
export async function runWorkerCommand(host: ControlHost, id: string, text: string, caller: Caller): Promise<Finish> {
  return signedCommand(host, text, {
    unsigned: 'policy signed-ctl: wrap the command as {"cmd":{…},"nonce":…,"ctr":n,"sig":…} (cohesix write and cohesix ctl do this)',
    begin: ({ text: command }) => {
      const word = jsonCommand(command, "kill");
      if (word === undefined ? command.trim() !== "kill" : word !== id) {
        throw new InvalidError(`unknown worker command ${JSON.stringify(command.trim())} (expected kill or {"kill":"${id}"})`);
      }
      const stop = host.pool.beginKill(id, caller.subject);
      return async (durable) => {
        await durable();
        await stop();
        return { worker: id, status: "killed" };
      };
    },
  });
}

/** A ctl write as {@link openSignedFileCommand} opened it. */
export interface OpenedFileCommand {
  /** The command text (an envelope's `cmd`, or the write as it came). */
  readonly command: string;
  /** Call once the command succeeded: commits an envelope's counter under the `open` policy (under `signed-ctl` it was committed already). */
  accepted(): Promise<void>;
}

/**
 * The signed-ctl rule for ctl files whose commands run outside the
 * control queue (`/update/ctl`): checks an envelope and, under
 * `signed-ctl`, commits its counter (shared with `/queen/ctl`) before
 * returning; under `open` the counter is committed by `accepted`.
 */
export async function openSignedFileCommand(host: ControlHost, text: string): Promise<OpenedFileCommand> {
  if (host.policy !== "signed-ctl" && !isEnvelope(text)) return { command: text, accepted: () => Promise.resolve() };
  if (!isEnvelope(text)) throw new InvalidError('policy signed-ctl: wrap the command as {"cmd":{…},"nonce":…,"ctr":n,"sig":…} (cohesix write and cohesix ctl do this)');
  const opened = openEnvelope(text, host.queenPublicKey, { lastCtr: host.state.ctr, ...(host.applianceId !== undefined ? { applianceId: host.applianceId } : {}) });
  if (host.policy === "signed-ctl") {
    await host.commit({ kind: "ctr", body: { ctr: opened.ctr } });
    return { command: opened.command, accepted: () => Promise.resolve() };
  }
  return { command: opened.command, accepted: () => host.commit({ kind: "ctr", body: { ctr: opened.ctr } }) };
}

/** The value of `{"<key>":"<value>"}` when `text` is exactly that JSON object, else undefined. */
function jsonCommand(text: string, key: string): string | undefined {
  if (!text.trimStart().startsWith("{")) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new InvalidError(`not JSON: ${(err as Error).message}`);
  }
  const keys = typeof v === "object" && v !== null && !Array.isArray(v) ? Object.keys(v) : [];
  const value = keys.length === 1 && keys[0] === key ? (v as Record<string, unknown>)[key] : undefined;
  if (typeof value !== "string") throw new InvalidError(`expected {"${key}":"…"}, got ${text.trim().slice(0, 100)}`);
  return value;
}

/** A lifecycle word from its text form (`cordon`) or JSON form (`{"lifecycle":"cordon"}`). */
function lifecycleWord(command: string): string {
  return jsonCommand(command, "lifecycle") ?? command.trim();
}

/** The first step of a lifecycle word: its records staged (workers' exits included); the second stops the workers. */
function beginLifecycleWord(host: ControlHost, staged: Staged, word: string, caller: Caller): Act {
  if (!(LIFECYCLE_WORDS as readonly string[]).includes(word)) {
    throw new InvalidError(`unknown lifecycle command ${JSON.stringify(word)} (expected ${LIFECYCLE_WORDS.join(", ")})`);
  }
  const lifecycle = (state: LifecycleState, reason: string, cordoned: boolean): Commit => ({ kind: "lifecycle", body: { state, reason, cordoned, ts_ms: Date.now() } });
  const set = (state: LifecycleState, reason: string, cordoned: boolean): void => staged.stage(lifecycle(state, reason, cordoned));
  const reply = (): Record<string, unknown> => ({ state: host.state.lifecycle.state, cordoned: host.state.cordoned });
  let stop: () => Promise<void> = async () => undefined;
  switch (word) {
    case "cordon":
      set(host.state.lifecycle.state, `cordoned by ${caller.subject}`, true);
      break;
    case "drain": {
      set("DRAINING", `drain by ${caller.subject}`, true);
      const retire = host.pool.beginRetireAll("drained");
      // QUIESCED once the workers are gone, unless a lifecycle word came
      // meanwhile (the queue did not wait for the drain).
      return async (durable) => {
        await durable();
        await retire();
        if (host.state.lifecycle.state === "DRAINING") await host.commit(lifecycle("QUIESCED", "drained", true));
        return reply();
      };
    }
    case "quiesce":
      stop = host.pool.beginRetireAll("quiesced", 200);
      set("QUIESCED", `quiesce by ${caller.subject}`, true);
      break;
    case "resume":
      set("ONLINE", `resume by ${caller.subject}`, false);
      break;
    case "reset":
      stop = host.pool.beginRetireAll("reset");
      set("ONLINE", `reset by ${caller.subject}`, false);
      break;
  }
  return async (durable) => {
    await durable();
    await stop();
    return reply();
  };
}
