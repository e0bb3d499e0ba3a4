/**
 * The appliance program on the host board: builds the namespace of DESIGN
 * §5, checks tickets at attach, applies the role policy, and keeps the
 * human audit log `/log/queen.log`. Queen commands are validated strictly;
 * what a valid command does is up to the `QueenControl` plugged in (the
 * default only records it).
 * @module
 */
import { mkdir, access, constants } from "node:fs/promises";
import { join } from "node:path";
import os from "node:os";
import {
  AppendLog,
  CtlFile,
  Directory,
  GeneratedFile,
  InvalidError,
  NineServer,
  PermissionError,
  toNineError,
  type Attachment,
  type AttachRequest,
  type Caller,
  type NineError,
  type Node,
} from "../nine-door/index.ts";
import { publicKeyOf, readPrivateKey, writeKeyPair, keyId } from "./keys.ts";
import { authorize, visibleChildren, type PolicyCaller } from "./policy.ts";
import { parseQueenCommand, type QueenCommand } from "./queen-command.ts";
import { verifyTicket, type Ticket } from "./ticket.ts";

/** The package version, reported in /proc/boot. */
export const VERSION = "0.1.0";

/** Lifecycle states (DESIGN §5). */
export type LifecycleState = "BOOTING" | "DEGRADED" | "ONLINE" | "DRAINING" | "QUIESCED" | "OFFLINE";

/** What carries out valid queen commands. */
export interface QueenControl {
  /** Runs a validated command; returns the reply object (`ok` is added). */
  run(cmd: QueenCommand, caller: Caller): Promise<Record<string, unknown>> | Record<string, unknown>;
}

/** Options of `Appliance.boot`. */
export interface ApplianceOptions {
  /** Board name shown in /proc/boot, e.g. `host`. */
  readonly board: string;
  /** Where the boot key (and later the commit log) lives. */
  readonly stateDir: string;
  /** The queen's public key: queen tickets must verify against it. */
  readonly queenPublicKey: Uint8Array;
  /** Digest of the image this appliance booted from; `none` on the host. */
  readonly imageDigest?: string;
  /** Retention of /log/queen.log in bytes (default 1 MiB). */
  readonly logRetainBytes?: number;
  /** Carries out commands; default: record them only. */
  readonly control?: QueenControl;
}

const LIFECYCLE_WORDS = ["cordon", "drain", "resume", "quiesce", "reset"] as const;

/**
 * The appliance: namespace, policy, audit log and the NineDoor server.
 *
 * @example
 * ```ts
 * const app = await Appliance.boot({ board: "host", stateDir: "/var/lib/cohesix", queenPublicKey });
 * const l = await listen("tcp!0.0.0.0!5640", (conn, peer) => app.server.accept(conn, peer.remote));
 * ```
 */
export class Appliance {
  readonly server: NineServer;
  readonly root: Directory;
  readonly queenLog: AppendLog;
  readonly workers: Directory;
  readonly gpu: Directory;
  readonly options: ApplianceOptions;
  readonly bootPublicKey: Uint8Array;
  lifecycle: { state: LifecycleState; reason: string; since: number } = { state: "BOOTING", reason: "boot", since: Date.now() };
  readonly #bootKey: Uint8Array;
  readonly #banner: string;
  #control: QueenControl;

  private constructor(options: ApplianceOptions, bootKey: Uint8Array, banner: string) {
    this.options = options;
    this.#bootKey = bootKey;
    this.bootPublicKey = publicKeyOf(bootKey);
    this.#banner = banner;
    this.#control = options.control ?? { run: () => ({ applied: false }) };
    this.queenLog = new AppendLog("queen.log", { retainBytes: options.logRetainBytes ?? 1 << 20 });
    this.workers = new Directory("worker", { perm: 0o555 });
    this.gpu = new Directory("gpu", { perm: 0o555 });
    this.root = this.#tree();
    this.server = new NineServer({
      root: this.root,
      attach: (req) => this.#attach(req),
      onRefusal: (e) => this.#refused(e.caller, e.request, e.path, e.error, e.peer),
      onInternalError: (e) => this.audit(`internal error in ${e.request} from ${e.peer}: ${e.error.message}`),
    });
  }

  /**
   * Boots the appliance: checks the state directory, loads or creates the
   * boot key, builds the namespace, and moves the lifecycle to ONLINE.
   */
  static async boot(options: ApplianceOptions): Promise<Appliance> {
    const started = Date.now();
    await mkdir(options.stateDir, { recursive: true, mode: 0o700 }).catch((err: Error) => {
      throw new InvalidError(`state directory ${options.stateDir} cannot be created: ${err.message}`);
    });
    await access(options.stateDir, constants.W_OK).catch(() => {
      throw new PermissionError(`state directory ${options.stateDir} is not writable: choose another --state DIR or fix its permissions`);
    });
    const bootKey = await loadBootKey(options.stateDir);
    const banner = [
      `cohesix ${VERSION}`,
      `board=${options.board}`,
      `node=${process.version}`,
      `kernel=${os.type()} ${os.release()} ${os.arch()}`,
      `kernel_uptime_at_start_s=${os.uptime().toFixed(1)}`,
      `image=${options.imageDigest ?? "none"}`,
      `boot_key=${keyId(publicKeyOf(bootKey))}`,
      `queen_key=${keyId(options.queenPublicKey)}`,
      `started=${new Date(started).toISOString()}`,
      "",
    ].join("\n");
    const app = new Appliance(options, bootKey, banner);
    app.audit(`boot board=${options.board} version=${VERSION}`);
    app.setLifecycle("ONLINE", "booted");
    return app;
  }

  /** Replaces what carries out queen commands. */
  setControl(control: QueenControl): void {
    this.#control = control;
  }

  /** Appends one human line to /log/queen.log. */
  audit(line: string): void {
    this.queenLog.append(`${new Date().toISOString()} ${line.replace(/\n/g, " ")}\n`);
  }

  setLifecycle(state: LifecycleState, reason: string): void {
    this.lifecycle = { state, reason, since: Date.now() };
    this.audit(`lifecycle ${state} reason=${reason}`);
  }

  /** The boot signing key's private half, for minting worker tickets. */
  get bootKey(): Uint8Array {
    return this.#bootKey;
  }

  /** Stops serving: every session is dropped. */
  shutdown(reason: string): void {
    this.setLifecycle("OFFLINE", reason);
    this.server.close();
  }

  #tree(): Directory {
    const gen = (name: string, fn: () => string): Node => new GeneratedFile(name, () => fn(), { perm: 0o444 });
    const proc = new Directory("proc", {
      children: [
        gen("boot", () => this.#banner),
        new Directory("lifecycle", {
          children: [
            gen("state", () => `${this.lifecycle.state}\n`),
            gen("reason", () => `${this.lifecycle.reason}\n`),
            gen("since", () => `${new Date(this.lifecycle.since).toISOString()}\n`),
          ],
        }),
        gen("sessions", () =>
          this.server
            .sessionInfo()
            .map((s) => `id=${s.id} peer=${s.peer} dialect=${s.dialect} msize=${s.msize} fids=${s.fids} outstanding=${s.outstanding} callers=${s.callers.join(",") || "-"}\n`)
            .join(""),
        ),
        gen("workers", () => ""),
        gen("mem", () => {
          const m = process.memoryUsage();
          return `rss=${m.rss} heap_used=${m.heapUsed} heap_total=${m.heapTotal} external=${m.external} array_buffers=${m.arrayBuffers}\n`;
        }),
      ],
    });
    const queen = new Directory("queen", {
      children: [
        new CtlFile("ctl", (text, ctx) => this.#queenCommand(text, ctx.caller), { perm: 0o220 }),
        new Directory("lifecycle", {
          children: [new CtlFile("ctl", (text, ctx) => this.#lifecycleCommand(text, ctx.caller), { perm: 0o220 })],
        }),
      ],
    });
    const log = new Directory("log", { children: [this.queenLog] });
    return new Directory("/", { children: [this.gpu, log, proc, queen, this.workers] });
  }

  async #queenCommand(text: string, caller: Caller): Promise<string> {
    let cmd: QueenCommand;
    try {
      cmd = parseQueenCommand(text);
    } catch (err) {
      const e = toNineError(err);
      this.audit(`ctl from ${caller.subject} refused: ${e.message}: ${text.slice(0, 200)}`);
      throw e;
    }
    try {
      const reply = await this.#control.run(cmd, caller);
      this.audit(`ctl from ${caller.subject}: ${JSON.stringify(JSON.parse(text))}`);
      return JSON.stringify({ ok: true, ...reply });
    } catch (err) {
      const e = toNineError(err);
      this.audit(`ctl from ${caller.subject} failed: ${e.message}: ${text.slice(0, 200)}`);
      throw e;
    }
  }

  #lifecycleCommand(text: string, caller: Caller): string {
    const word = text.trim();
    if (!(LIFECYCLE_WORDS as readonly string[]).includes(word)) {
      const e = new InvalidError(`unknown lifecycle command ${JSON.stringify(word)} (expected ${LIFECYCLE_WORDS.join(", ")})`);
      this.audit(`lifecycle from ${caller.subject} refused: ${e.message}`);
      throw e;
    }
    this.audit(`lifecycle from ${caller.subject}: ${word}`);
    return JSON.stringify({ ok: true, state: this.lifecycle.state });
  }

  #attach(req: AttachRequest): Attachment {
    const ticket = this.#verify(req);
    const caller: PolicyCaller = { role: ticket.role, subject: ticket.sub, ...(ticket.mounts ? { mounts: ticket.mounts } : {}) };
    this.audit(`attach ${caller.role} ${caller.subject} from ${req.peer} dialect=${req.dialect}`);
    return {
      caller,
      authorize: (path, op) => authorize(caller, path, op),
      visible: (dir, names) => visibleChildren(caller, dir, names),
    };
  }

  #verify(req: AttachRequest): Ticket {
    if (req.aname === "") throw new PermissionError("no ticket: attach with the ticket in aname (cohesix ticket --role queen)");
    const ticket = verifyTicket(req.aname, {
      keys: (role) => (role === "queen" ? [this.options.queenPublicKey] : [this.bootPublicKey]),
    });
    // uname is what stock clients send (a user name or uid); when it names
    // a role it must agree with the ticket.
    const u = req.uname;
    const named = u === "queen" || /^(worker|bridge)[a-z0-9-]*(:.+)?$/.test(u);
    if (named && u !== ticket.role && u !== `${ticket.role}:${ticket.sub}`) {
      throw new PermissionError(`uname ${JSON.stringify(u)} does not match the ticket (${ticket.role}:${ticket.sub})`);
    }
    return ticket;
  }

  #refused(caller: Caller | undefined, request: string, path: string | undefined, error: NineError, peer: string): void {
    const who = caller ? `${caller.role} ${caller.subject}` : `peer ${peer}`;
    this.audit(`refused ${who} ${request}${path ? ` ${path}` : ""}: ${error.message}`);
  }
}

async function loadBootKey(stateDir: string): Promise<Uint8Array> {
  const path = join(stateDir, "boot.key");
  try {
    return await readPrivateKey(path);
  } catch (err) {
    if ((err as NineError).errorClass !== "not found") throw err;
  }
  const written = await writeKeyPair(stateDir, { name: "boot" });
  return written.privateKey;
}

