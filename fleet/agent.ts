/**
 * The fleet agent inside the appliance (docs/fleet.md, "Wiring"): it reads
 * the appliance only through 9P, attached with the `fleet` role, and feeds
 * the link:
 *
 * - the birth facts from `/proc/boot`, `/proc/lifecycle/state` and
 *   `/queen/ctr`, read again every `pollMs`;
 * - a `lifecycle` record when `/proc/lifecycle/state` changes;
 * - a `telemetry` record per line of every `/worker/<id>/telemetry`, tailed
 *   from the moment the worker appears in `/worker` (a file seen again under
 *   the same qid resumes where it was; a new file starts at 0);
 * - an `audit` record per new line of `/log/queen.log` (when `audit`);
 * - commands from `<prefix>/<id>/cmd`: size, rate, shape and address are
 *   checked here (`commands.ts`); the envelope is then written unchanged to
 *   `/queen/ctl`, where the root task verifies the signature and counter,
 *   and the outcome is published on the command's reply topic.
 *
 * @example
 * ```ts
 * const agent = new FleetAgent({ root: fleetRoot, link: { url, id: "app-1" }, outbox, onAudit: (l) => app.audit(l) });
 * await agent.start();
 * await agent.close();
 * ```
 * @module
 */
import { ClosedError, PermissionError, toNineError, type Fid, type NineError } from "../nine-door/index.ts";
import { CommandGate, checkCommand, encodeReply, replyNameOf, MAX_COMMAND_BYTES, type CommandLimits, type ReplyRecord } from "./commands.ts";
import { FleetLink, type BirthFacts, type FleetLinkOptions, type LinkState } from "./link.ts";
import type { Outbox } from "./outbox.ts";
import { LIFECYCLE_STATES, type LifecycleState } from "./records.ts";

/** Options of {@link FleetAgent}. */
export interface FleetAgentOptions {
  /** The namespace's root, attached with the `fleet` role. */
  readonly root: Fid;
  /** The link's connection options (its outbox, birth and command hooks are the agent's). */
  readonly link: Omit<FleetLinkOptions, "outbox" | "birth" | "onCommand" | "onState">;
  readonly outbox: Outbox;
  /** Forward `/log/queen.log` lines (default true). */
  readonly audit?: boolean;
  /** Cap on one command message (default 16 KiB). */
  readonly maxCommandBytes?: number;
  /** Rate and queue limits on commands. */
  readonly commands?: Partial<CommandLimits>;
  /** How often `/proc` and `/worker` are read again, ms (default 500). */
  readonly pollMs?: number;
  /** Audit lines of the agent (refused commands, connection problems): the root task writes them. */
  readonly onAudit: (line: string) => void;
}

/** Counters of the agent's commands. */
export interface FleetCommandStats {
  readonly accepted: number;
  readonly refused: number;
  readonly busy: number;
}

/**
 * The appliance side of the fleet link.
 *
 * @example
 * ```ts
 * const agent = new FleetAgent({ root, link: { url: "mqtt://10.0.2.2:1883", id: "app-1" }, outbox, onAudit });
 * await agent.start();
 * ```
 */
export class FleetAgent {
  readonly #o: FleetAgentOptions;
  readonly #link: FleetLink;
  readonly #gate: CommandGate;
  readonly #abort = new AbortController();
  readonly #tails = new Map<string, { qid: bigint | number; offset: number; running: boolean }>();
  #facts: BirthFacts = { version: "unknown", boot: {}, lifecycle: "BOOTING" };
  #lifecycle: string | undefined;
  #poll: NodeJS.Timeout | undefined;
  #commands: Promise<void> = Promise.resolve();
  #stats = { accepted: 0, refused: 0, busy: 0 };
  #busyReported = 0;
  #state: { state: LinkState; since: number; why: string } = { state: "idle", since: Date.now(), why: "" };
  #problem: string | undefined;
  #closed = false;

  constructor(options: FleetAgentOptions) {
    this.#o = options;
    this.#gate = new CommandGate(options.commands ?? {});
    this.#link = new FleetLink({
      ...options.link,
      outbox: options.outbox,
      birth: () => this.#facts,
      onCommand: (payload) => this.#command(payload),
      onState: (from, to, why) => this.#onState(from, to, why),
      onAudit: (line) => options.link.onAudit?.(line),
    });
  }

  /** The link (state, counters, last error). */
  get link(): FleetLink {
    return this.#link;
  }

  /** Command counters. */
  get commandStats(): FleetCommandStats {
    return { ...this.#stats };
  }

  /** The rate and queue limits in force. */
  get commandLimits(): CommandLimits & { readonly maxBytes: number } {
    return { ...this.#gate.limits, maxBytes: this.#o.maxCommandBytes ?? MAX_COMMAND_BYTES };
  }

  /**
   * The one line a user acts on when the link cannot work (unreachable
   * broker, wrong CA, wrong credentials), or undefined while it works or
   * has not failed yet.
   */
  get problem(): string | undefined {
    return this.#problem;
  }

  /** The link's state, since when, and why. */
  get linkState(): { readonly state: LinkState; readonly since: number; readonly why: string } {
    return this.#state;
  }

  /**
   * Reads the birth facts, starts the link, and starts following the
   * namespace.
   *
   * @example
   * ```ts
   * await agent.start();
   * ```
   */
  async start(): Promise<void> {
    await this.#refresh();
    // Audit lines from now on: the tail the last boot left is not new.
    if (this.#o.audit !== false) {
      const at = Number((await this.#o.root.statPath("log/queen.log")).length);
      void this.#follow("log/queen.log", at, (line) => this.#publish({ kind: "audit", line }));
    }
    this.#link.start();
    const every = this.#o.pollMs ?? 500;
    const tick = (): void => {
      this.#poll = setTimeout(() => {
        this.#refresh().then(tick, (err: unknown) => {
          if (!this.#closed) this.#o.onAudit(`fleet: reading the namespace failed: ${toNineError(err).message}`);
          tick();
        });
      }, every);
      this.#poll.unref?.();
    };
    tick();
  }

  /**
   * Stops following, publishes the death record (`link closed`) and ends
   * the connection. The outbox stays open (its owner closes it).
   *
   * @example
   * ```ts
   * await agent.close();
   * ```
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#poll) clearTimeout(this.#poll);
    this.#abort.abort();
    await this.#commands.catch(() => undefined);
    await this.#link.close();
  }

  async #refresh(): Promise<void> {
    if (this.#closed) return;
    const root = this.#o.root;
    const [boot, state, reason, ctr] = await Promise.all([
      root.readText("proc/boot"),
      root.readText("proc/lifecycle/state"),
      root.readText("proc/lifecycle/reason"),
      root.readText("queen/ctr"),
    ]);
    const lifecycle = state.trim();
    const known = (LIFECYCLE_STATES as readonly string[]).includes(lifecycle) ? (lifecycle as LifecycleState) : this.#facts.lifecycle;
    const counter = Number(ctr.trim());
    this.#facts = { ...parseBoot(boot), lifecycle: known, ...(Number.isSafeInteger(counter) && counter >= 0 ? { ctr: counter } : {}) };
    if (this.#lifecycle !== undefined && this.#lifecycle !== lifecycle) {
      await this.#publish({ kind: "lifecycle", state: known, reason: reason.trim().slice(0, 256) });
    }
    this.#lifecycle = lifecycle;
    const workers = await root.list("worker").catch(() => []);
    for (const w of workers) this.#tailWorker(w.name);
  }

  /** Starts tailing a worker's telemetry unless that file is tailed already. */
  #tailWorker(id: string): void {
    const known = this.#tails.get(id);
    if (known?.running) return;
    void (async () => {
      const path = `worker/${id}/telemetry`;
      let info: { qid: { path: bigint | number } };
      try {
        info = await this.#o.root.statPath(path);
      } catch {
        return; // no telemetry file (yet)
      }
      const same = known !== undefined && known.qid === info.qid.path;
      // The same file as before (its tail ended, e.g. a closed session): go on from there; a new file from 0.
      if (same && known.offset >= 0 && !(await this.#grown(path, known.offset))) return;
      const tail = { qid: info.qid.path, offset: same ? known.offset : 0, running: true };
      this.#tails.set(id, tail);
      await this.#follow(path, tail.offset, (line) => {
        let data: unknown;
        try {
          data = JSON.parse(line);
        } catch {
          return;
        }
        if (typeof data !== "object" || data === null || Array.isArray(data)) return;
        return this.#publish({ kind: "telemetry", worker: id, data: data as Record<string, unknown> });
      }, (offset) => (tail.offset = offset));
      tail.running = false;
    })();
  }

  async #grown(path: string, offset: number): Promise<boolean> {
    try {
      return Number((await this.#o.root.statPath(path)).length) > offset;
    } catch {
      return false;
    }
  }

  /**
   * Follows an append file from `offset`, calling `line` for each whole
   * line in order (waiting for each publish: the outbox append is durable
   * before the next line is read). Ends when the file goes away or on close.
   */
  async #follow(path: string, offset: number, line: (text: string) => Promise<unknown> | void, progress?: (offset: number) => void): Promise<void> {
    let fid: Fid | undefined;
    try {
      fid = await this.#o.root.walk(path);
      await fid.open("r");
      let at = offset;
      let partial = "";
      while (!this.#closed) {
        const data = await fid.read(at, undefined, this.#abort.signal);
        if (data.length === 0) {
          await new Promise((r) => setTimeout(r, 250).unref?.());
          continue;
        }
        at += data.length;
        const text = partial + Buffer.from(data).toString("utf8");
        const lines = text.split("\n");
        partial = lines.pop() ?? "";
        for (const l of lines) if (l.length > 0) await line(l);
        progress?.(at - Buffer.byteLength(partial));
      }
    } catch (err) {
      if (!this.#closed && !(err instanceof ClosedError)) {
        const e = toNineError(err);
        if (e.errorClass !== "closed" && e.errorClass !== "not found") this.#o.onAudit(`fleet: following ${path} stopped: ${e.message}`);
      }
    } finally {
      void fid?.clunk().catch(() => undefined);
    }
  }

  async #publish(body: Parameters<FleetLink["publish"]>[0]): Promise<void> {
    try {
      await this.#link.publish(body);
    } catch (err) {
      // The record is not kept (the outbox refused it: too big, or failed): say so once per record.
      if (!this.#closed) this.#o.onAudit(`fleet: a ${body.kind} record was not stored: ${toNineError(err).message}`);
    }
  }

  #onState(_from: LinkState, to: LinkState, why: string): void {
    this.#state = { state: to, since: Date.now(), why };
    if (to === "online") {
      if (this.#problem) this.#o.onAudit(`fleet: connected to ${this.#o.link.url} (was: ${this.#problem})`);
      this.#problem = undefined;
      return;
    }
    if (to !== "backoff") return;
    const err = this.#link.lastError;
    const line = explainLinkError(this.#o.link.url, err ?? new Error(why));
    if (line !== this.#problem) {
      this.#problem = line;
      this.#o.onAudit(`fleet: ${line}`);
    }
  }

  /** One command message from the broker: checked, then forwarded in order. */
  #command(payload: Buffer): void {
    const id = this.#o.link.id;
    const maxBytes = this.#o.maxCommandBytes ?? MAX_COMMAND_BYTES;
    if (payload.length > maxBytes) {
      this.#stats.refused += 1;
      this.#o.onAudit(`fleet command refused: too big: ${payload.length} bytes exceeds ${maxBytes} (maxCommandBytes)`);
      return;
    }
    let done: () => void;
    try {
      done = this.#gate.take();
    } catch (err) {
      this.#stats.busy += 1;
      // A flood is counted, and said at most once per 10 s.
      const now = Date.now();
      if (now - this.#busyReported >= 10_000) {
        this.#busyReported = now;
        this.#o.onAudit(`fleet command refused: ${toNineError(err).message} (${this.#stats.busy} refused so far)`);
      }
      return;
    }
    this.#commands = this.#commands.then(async () => {
      try {
        await this.#run(payload, id, maxBytes);
      } finally {
        done();
      }
    });
  }

  async #run(payload: Buffer, id: string, maxBytes: number): Promise<void> {
    let name: string | undefined;
    let ctr = 0;
    try {
      const cmd = checkCommand(payload, { id, maxBytes });
      name = cmd.reply;
      ctr = cmd.ctr;
      const text = await this.#o.root.with("queen/ctl", async (ctl) => {
        await ctl.open("rw");
        await ctl.write(cmd.text);
        return (await ctl.readAll(0)).toString("utf8");
      });
      let result: Record<string, unknown>;
      try {
        result = JSON.parse(text) as Record<string, unknown>;
      } catch {
        result = { ok: true, text: text.trim() };
      }
      this.#stats.accepted += 1;
      await this.#refreshCtr();
      this.#link.rebirth();
      await this.#reply({ name, ctr, ok: true, result });
    } catch (err) {
      const e = toNineError(err);
      this.#stats.refused += 1;
      // Refusals by /queen/ctl are audited by the root task (`ctl from fleet-link refused: …`).
      if (name === undefined) this.#o.onAudit(`fleet command refused: ${e.message}`);
      name ??= replyNameOf(payload, { maxBytes });
      if (name !== undefined) await this.#reply({ name, ctr, ok: false, error: e.message.slice(0, 4096) });
    }
  }

  async #refreshCtr(): Promise<void> {
    const ctr = Number((await this.#o.root.readText("queen/ctr")).trim());
    if (Number.isSafeInteger(ctr) && ctr >= 0) this.#facts = { ...this.#facts, ctr };
  }

  async #reply(r: { name: string; ctr: number; ok: boolean; result?: Record<string, unknown>; error?: string }): Promise<void> {
    await this.#refreshCtr().catch(() => undefined);
    const reply: ReplyRecord = {
      v: 1,
      kind: "reply",
      id: this.#o.link.id,
      name: r.name,
      ts_ms: Date.now(),
      ctr: r.ctr,
      last_ctr: this.#facts.ctr ?? 0,
      ok: r.ok,
      ...(r.ok ? { result: r.result ?? {} } : { error: r.error ?? "" }),
    };
    await this.#link.reply(r.name, encodeReply(reply)).catch((err: unknown) => {
      this.#o.onAudit(`fleet: reply ${r.name} not sent: ${toNineError(err).message}`);
    });
  }
}

/** `/proc/boot` as birth facts: the version from `cohesix <version>`, every `key=value` line. */
function parseBoot(text: string): Pick<BirthFacts, "version" | "boot"> {
  const boot: Record<string, string> = {};
  let version = "unknown";
  for (const line of text.split("\n")) {
    const m = /^cohesix (\S+)$/.exec(line);
    if (m) version = m[1]!.slice(0, 128);
    const eq = line.indexOf("=");
    if (eq > 0 && eq <= 64 && Object.keys(boot).length < 256) boot[line.slice(0, eq)] = line.slice(eq + 1, eq + 1 + 1024);
  }
  return { version, boot };
}

/**
 * One line a user acts on for a link that cannot connect: a refused login,
 * a certificate that does not verify against the pinned CA, or a broker
 * that cannot be reached.
 *
 * @example
 * ```ts
 * explainLinkError("mqtt://10.0.2.2:1883", err); // "closed: fleet: cannot reach broker mqtt://10.0.2.2:1883: connect ECONNREFUSED …"
 * ```
 */
export function explainLinkError(url: string, err: Error): string {
  const code = (err as { code?: unknown }).code;
  let e: NineError;
  if (typeof code === "number") {
    const what = err.message.replace(/^Connection refused:\s*/i, "");
    e = new PermissionError(`fleet: broker ${url} refused the login: ${what}: check the fleet block's username and password`);
  } else if ((typeof code === "string" && /CERT|SELF_SIGNED|ISSUER|ALTNAME/.test(code)) || /certificate|SSL|TLS/i.test(err.message)) {
    e = new PermissionError(`fleet: broker ${url}: its TLS certificate does not verify against the pinned CA (the fleet block's ca): ${err.message}`);
  } else {
    e = new ClosedError(`fleet: cannot reach broker ${url}: ${err.message}`);
  }
  return e.message;
}
