/**
 * A QMP client (QEMU Machine Protocol, JSON lines over a Unix socket):
 * greeting, `qmp_capabilities`, one command at a time, events collected.
 * The VM controls of `cohesix vm` and `cohesix down` are built on it.
 * @module
 */
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { InvalidError } from "../nine-door/index.ts";

/** A QMP event, e.g. `{ event: "SHUTDOWN", data: { guest: true } }`. */
export interface QmpEvent {
  readonly event: string;
  readonly data?: Record<string, unknown>;
}

/** A QMP command's error reply, as an Error. */
export class QmpError extends Error {
  readonly errorClass: string;
  constructor(command: string, errorClass: string, desc: string) {
    super(`qmp ${command}: ${errorClass}: ${desc}`);
    this.name = "QmpError";
    this.errorClass = errorClass;
  }
}

/** Options of {@link QmpClient.connect}. */
export interface QmpConnectOptions {
  /** How long to retry while the socket does not exist or refuses, ms; default 10000. */
  readonly timeoutMs?: number;
}

type Pending = { command: string; resolve: (v: unknown) => void; reject: (e: Error) => void };

/**
 * One QMP connection.
 *
 * @example
 * ```ts
 * const qmp = await QmpClient.connect(".cohesix/run/aarch64-virt/qmp.sock");
 * await qmp.stop();
 * await qmp.savevm("before-update");
 * await qmp.cont();
 * qmp.close();
 * ```
 */
export class QmpClient {
  readonly #socket: Socket;
  readonly #queue: Pending[] = [];
  readonly #events: QmpEvent[] = [];
  readonly #eventWaiters = new Set<(e: QmpEvent) => void>();
  #buffer = "";
  #closed = false;
  #chain: Promise<unknown> = Promise.resolve();

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.#onData(chunk));
    socket.on("close", () => this.#onClose());
    socket.on("error", () => {});
  }

  /** Connects, reads the greeting and negotiates capabilities, retrying until the socket answers. */
  static async connect(path: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const deadline = Date.now() + (options.timeoutMs ?? 10_000);
    let lastError: Error | undefined;
    while (Date.now() < deadline) {
      const socket = connect(path);
      try {
        await once(socket, "connect");
        const client = new QmpClient(socket);
        await client.#greeting();
        await client.execute("qmp_capabilities");
        return client;
      } catch (err) {
        lastError = err as Error;
        socket.destroy();
        await sleep(100);
      }
    }
    throw new Error(`qmp: cannot connect to ${path}: ${lastError?.message ?? "timed out"}`);
  }

  #greetingWaiter: ((ok: boolean) => void) | undefined;
  #greeted = false;

  #greeting(): Promise<void> {
    if (this.#greeted) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#greetingWaiter = (ok) => (ok ? resolve() : reject(new Error("closed before the QMP greeting")));
    });
  }

  #onData(chunk: string): void {
    this.#buffer += chunk;
    let nl: number;
    while ((nl = this.#buffer.indexOf("\n")) >= 0) {
      const line = this.#buffer.slice(0, nl).trim();
      this.#buffer = this.#buffer.slice(nl + 1);
      if (line) this.#onMessage(line);
    }
  }

  #onMessage(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    if ("QMP" in msg) {
      this.#greeted = true;
      this.#greetingWaiter?.(true);
      return;
    }
    if (typeof msg.event === "string") {
      const event: QmpEvent = { event: msg.event, ...(msg.data ? { data: msg.data as Record<string, unknown> } : {}) };
      this.#events.push(event);
      for (const w of this.#eventWaiters) w(event);
      return;
    }
    const pending = this.#queue.shift();
    if (!pending) return;
    if ("error" in msg) {
      const e = msg.error as { class?: string; desc?: string };
      pending.reject(new QmpError(pending.command, e.class ?? "GenericError", e.desc ?? "failed"));
    } else pending.resolve(msg.return);
  }

  #onClose(): void {
    this.#closed = true;
    this.#greetingWaiter?.(false);
    for (const p of this.#queue.splice(0)) p.reject(new Error(`qmp ${p.command}: connection closed`));
  }

  /** Whether QEMU closed the connection (it does when it exits). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Events seen so far. */
  get events(): readonly QmpEvent[] {
    return this.#events;
  }

  /**
   * Runs one command; resolves with its `return` value.
   *
   * @example
   * ```ts
   * const status = await qmp.execute("query-status"); // { running: true, status: "running", … }
   * ```
   */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const run = (): Promise<unknown> =>
      new Promise((resolve, reject) => {
        if (this.#closed) return reject(new Error(`qmp ${command}: connection closed`));
        this.#queue.push({ command, resolve, reject });
        this.#socket.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`);
      });
    const next = this.#chain.then(run, run);
    this.#chain = next.catch(() => {});
    return next;
  }

  /** Runs a human monitor command (savevm, loadvm); its output text is an error when it is not empty. */
  async hmp(commandLine: string): Promise<string> {
    const out = String(await this.execute("human-monitor-command", { "command-line": commandLine }));
    return out;
  }

  /** Pauses the guest's CPUs. */
  async stop(): Promise<void> {
    await this.execute("stop");
  }

  /** Resumes the guest's CPUs. */
  async cont(): Promise<void> {
    await this.execute("cont");
  }

  /** `running`, `paused`, … */
  async status(): Promise<string> {
    const r = (await this.execute("query-status")) as { status?: string };
    return r.status ?? "unknown";
  }

  /** Saves the whole VM (RAM, devices, disks) as snapshot `name` in the qcow2 state disk. */
  async savevm(name: string): Promise<void> {
    const out = await this.hmp(`savevm ${checkName(name)}`);
    if (out.trim()) throw new Error(`qmp savevm ${name}: ${out.trim()}`);
  }

  /** Loads snapshot `name` into the running VM. */
  async loadvm(name: string): Promise<void> {
    const out = await this.hmp(`loadvm ${checkName(name)}`);
    if (out.trim()) throw new Error(`qmp loadvm ${name}: ${out.trim()}`);
  }

  /** Presses the power key: the guest shuts down cleanly. */
  async powerdown(): Promise<void> {
    await this.execute("system_powerdown");
  }

  /** Ends QEMU at once. Resolves when QEMU has answered or closed the connection. */
  async quit(): Promise<void> {
    await this.execute("quit").catch((err: Error) => {
      if (!this.#closed) throw err;
    });
  }

  /** Resolves with the first event named `name` (seen already or to come), or undefined after `timeoutMs`. */
  async waitEvent(name: string, timeoutMs: number): Promise<QmpEvent | undefined> {
    const seen = this.#events.find((e) => e.event === name);
    if (seen) return seen;
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(undefined), timeoutMs);
      const waiter = (e: QmpEvent): void => {
        if (e.event === name) done(e);
      };
      const done = (e: QmpEvent | undefined): void => {
        clearTimeout(timer);
        this.#eventWaiters.delete(waiter);
        resolve(e);
      };
      this.#eventWaiters.add(waiter);
    });
  }

  /** Closes the connection. */
  close(): void {
    this.#socket.end();
    this.#socket.destroy();
  }
}

/**
 * A snapshot name as given, when it is letters, digits, `.`, `_`, `-`.
 *
 * @example
 * ```ts
 * checkName("before-update"); // "before-update"
 * ```
 */
export function checkName(name: string): string {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) throw new InvalidError(`snapshot name ${JSON.stringify(name)}: use letters, digits, '.', '_' or '-'`);
  return name;
}
