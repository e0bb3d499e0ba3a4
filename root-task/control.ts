/**
 * Queen control: what each command of DESIGN §6 and each lifecycle word
 * does. Every command is validated without side effects, then committed
 * durably, then acted on; the reply is written only after the commit. A
 * command refused at any point before its commit leaves nothing behind:
 * no record, no namespace node, no process.
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
   */
  stage(c: Commit): Promise<void>;
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
  stage(c: Commit): void {
    const p = this.#host.stage(c);
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
  let commandText = text;
  let parsed: object | undefined;
  let ctr: number | undefined;
  const staged = new Staged(host);
  // The fleet link forwards commands from the broker: the signature, not its role, is the authority.
  const fromFleet = caller.role === FLEET_ROLE;
  if (host.policy === "signed-ctl" || fromFleet || isEnvelope(text)) {
    if (fromFleet && !isEnvelope(text)) throw new InvalidError("fleet: /queen/ctl takes only signed envelopes addressed with to from the fleet link");
    if (!isEnvelope(text)) throw new InvalidError('policy signed-ctl: wrap the command as {"cmd":{…},"nonce":…,"ctr":n,"sig":…} (cohesix ctl does this)');
    const opened = openParsedEnvelope(text, host.queenPublicKey, { lastCtr: host.state.ctr, ...(host.applianceId !== undefined ? { applianceId: host.applianceId } : {}) });
    if (fromFleet && opened.to === undefined) throw new InvalidError("fleet: a command from the fleet must be addressed (envelope.to)");
    commandText = opened.command;
    parsed = opened.value;
    ctr = opened.ctr;
    // Under signed-ctl the counter is consumed even if the command is then
    // refused, so a refused envelope cannot be replayed once it would pass.
    // Under the open policy plain commands are accepted anyway, so a
    // refused envelope changes nothing (bad input leaves no record).
    if (host.policy === "signed-ctl") staged.stage({ kind: "ctr", body: { ctr } });
  }
  let act: Act;
  try {
    // An envelope's command was parsed when it was opened: not again.
    const workers = { workers: Object.keys(host.programs) };
    const cmd = parsed ? queenCommandOf(parsed, workers) : parseQueenCommand(commandText, workers);
    act = await execute(host, staged, cmd, caller);
  } catch (err) {
    // The refusal is a reply too: it waits for the consumed counter.
    await staged.durable();
    throw err;
  }
  if (ctr !== undefined && host.policy !== "signed-ctl") staged.stage({ kind: "ctr", body: { ctr } });
  return async () => {
    const reply = await act(() => staged.durable());
    host.audit(`ctl from ${caller.subject}: ${commandText}`);
    return JSON.stringify({ ok: true, ...reply });
  };
}

/** A command's second step: given a wait for its records, acts and returns the reply's fields. */
type Act = (durable: () => Promise<void>) => Promise<Record<string, unknown>>;

async function execute(host: ControlHost, staged: Staged, cmd: QueenCommand, caller: Caller): Promise<Act> {
  switch (cmd.kind) {
    case "spawn":
      return spawn(host, staged, cmd);
    case "kill":
      await staged.durable();
      await host.pool.kill(cmd.worker, caller.subject);
      return async (durable) => {
        await durable();
        return { worker: cmd.worker, status: "killed" };
      };
    case "budget": {
      staged.stage({ kind: "budget", body: { budget: cmd.budget } });
      const defaults = host.state.defaults;
      return async (durable) => {
        await durable();
        return { defaults };
      };
    }
    // Binds and mounts change the namespace the next command's checks
    // read, so they finish inside the queue.
    case "bind":
      await host.checkBind(cmd.from, cmd.to);
      staged.stage({ kind: "bind", body: { from: cmd.from, to: cmd.to } });
      await staged.durable();
      host.bind(cmd.from, cmd.to);
      return done({ bind: { from: cmd.from, to: cmd.to } });
    case "unbind": {
      const bound = host.state.binds;
      if (!bound.some((b) => b.to === cmd.to)) {
        throw new NotFoundError(`no bind on ${cmd.to} (binds: ${bound.map((b) => b.to).join(", ") || "none"})`);
      }
      staged.stage({ kind: "unbind", body: { to: cmd.to } });
      await staged.durable();
      host.unbind(cmd.to);
      return done({ unbind: cmd.to });
    }
    case "mount":
      host.checkMount(cmd.service, cmd.at);
      staged.stage({ kind: "mount", body: { service: cmd.service, at: cmd.at } });
      await staged.durable();
      host.mount(cmd.service, cmd.at);
      return done({ mount: { service: cmd.service, at: cmd.at } });
  }
}

/** An act whose work is done: it waits for the records (a counter staged after it) and replies. */
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
 * Runs one write to `/queen/lifecycle/ctl`.
 *
 * - `cordon`: refuse new spawns; workers keep running.
 * - `drain`: cordon, stop every worker gracefully, then QUIESCED.
 * - `quiesce`: stop every worker at once (short grace), QUIESCED.
 * - `resume`: back to ONLINE, spawns allowed.
 * - `reset`: stop every worker, forget budget defaults' effect on nothing
 *   else, and return to ONLINE uncordoned.
 *
 * Each word may also be written as `{"lifecycle":"<word>"}`, the form a
 * signed envelope carries; under `signed-ctl` only an envelope is accepted.
 */
export async function runLifecycleCommand(host: ControlHost, text: string, caller: Caller): Promise<string> {
  return signedFileCommand(host, text, (command) => runLifecycleWord(host, lifecycleWord(command), caller));
}

/**
 * Runs one write to `/worker/<id>/ctl`: `kill`, or `{"kill":"<id>"}`
 * (the form a signed envelope carries). Under `signed-ctl` only an
 * envelope is accepted, as on `/queen/ctl`.
 */
export async function runWorkerCommand(host: ControlHost, id: string, text: string, caller: Caller): Promise<string> {
  return signedFileCommand(host, text, async (command) => {
    const word = jsonCommand(command, "kill");
    if (word === undefined ? command.trim() !== "kill" : word !== id) {
      throw new InvalidError(`unknown worker command ${JSON.stringify(command.trim())} (expected kill or {"kill":"${id}"})`);
    }
    await host.pool.kill(id, caller.subject);
    return JSON.stringify({ ok: true, worker: id, status: "killed" });
  });
}

/**
 * The signed-ctl rule for the ctl files besides `/queen/ctl`
 * (`/queen/lifecycle/ctl`, `/worker/<id>/ctl`): under `signed-ctl` only an
 * envelope whose `cmd` is the JSON form of the command (`{"lifecycle":"cordon"}`,
 * `{"kill":"worker-3"}`) is accepted, and its counter (shared with
 * `/queen/ctl`) is committed before the command runs; under `open` an
 * envelope is checked the same way and its counter committed after success,
 * and plain text is accepted.
 */
async function signedFileCommand(host: ControlHost, text: string, run: (command: string) => Promise<string>): Promise<string> {
  const opened = await openSignedFileCommand(host, text);
  const reply = await run(opened.command);
  await opened.accepted();
  return reply;
}

/** A ctl write as {@link openSignedFileCommand} opened it. */
export interface OpenedFileCommand {
  /** The command text (an envelope's `cmd`, or the write as it came). */
  readonly command: string;
  /** Call once the command succeeded: commits an envelope's counter under the `open` policy (under `signed-ctl` it was committed already). */
  accepted(): Promise<void>;
}

/**
 * The first half of {@link signedFileCommand}, for ctl files whose
 * commands run outside the control queue (`/update/ctl`): checks an
 * envelope and, under `signed-ctl`, commits its counter before returning.
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

async function runLifecycleWord(host: ControlHost, word: string, caller: Caller): Promise<string> {
  if (!(LIFECYCLE_WORDS as readonly string[]).includes(word)) {
    throw new InvalidError(`unknown lifecycle command ${JSON.stringify(word)} (expected ${LIFECYCLE_WORDS.join(", ")})`);
  }
  const set = (state: LifecycleState, reason: string, cordoned: boolean) =>
    host.commit({ kind: "lifecycle", body: { state, reason, cordoned, ts_ms: Date.now() } });
  const running = () => runningWorkers(host.state).map((w) => w.id);
  switch (word) {
    case "cordon":
      await set(host.state.lifecycle.state, `cordoned by ${caller.subject}`, true);
      break;
    case "drain":
      await set("DRAINING", `drain by ${caller.subject}`, true);
      await Promise.all(running().map((id) => host.pool.retire(id, "drained")));
      await set("QUIESCED", "drained", true);
      break;
    case "quiesce":
      await Promise.all(running().map((id) => host.pool.retire(id, "quiesced", 200)));
      await set("QUIESCED", `quiesce by ${caller.subject}`, true);
      break;
    case "resume":
      await set("ONLINE", `resume by ${caller.subject}`, false);
      break;
    case "reset":
      await Promise.all(running().map((id) => host.pool.retire(id, "reset")));
      await set("ONLINE", `reset by ${caller.subject}`, false);
      break;
  }
  host.audit(`lifecycle from ${caller.subject}: ${word} → ${host.state.lifecycle.state}`);
  return JSON.stringify({ ok: true, state: host.state.lifecycle.state, cordoned: host.state.cordoned });
}
