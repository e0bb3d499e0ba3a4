/**
 * Which appliance a remote verb talks to, and how long it waits for it.
 *
 * The address is, in order: `--addr`, then `COHESIX_ADDR`, then the one VM
 * or host board this folder runs (`.cohesix/run/<board>/`, written by
 * `cohesix up`/`boot`; an entry whose PID is gone does not count). None
 * running, or several, is a usage error (exit 2) that lists what runs.
 *
 * The timeout (`--timeout S`, then `COHESIX_TIMEOUT`, default 10 s) bounds
 * the connect, version negotiation, attach and every request; a peer that
 * does not answer in time is named with its likely causes.
 *
 * This file imports nothing heavy: every data verb goes through it.
 * @module
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { NineError, NoAnswerError, formatSeconds, type ErrorClass } from "../nine-door/index.ts";
import { UsageError } from "./args.ts";

/** An appliance this folder runs: a VM or a host board, from its run folder. */
export interface RunEntry {
  /** The board's name: `aarch64-virt`, `host`, … */
  readonly board: string;
  /** `vm` for a QEMU board, `host` for the host board. */
  readonly kind: "vm" | "host";
  readonly pid: number;
  /** `tcp!127.0.0.1!5640` */
  readonly dialString: string;
  /** Its run folder, `.cohesix/run/<board>`. */
  readonly runDir: string;
  readonly startedAt?: string;
}

/** Where an address came from, for messages. */
export type AddressSource = "--addr" | "COHESIX_ADDR" | "run";

/** The address a remote verb dials. */
export interface ResolvedAddress {
  readonly dialString: string;
  readonly source: AddressSource;
  /** The run entry, when the address came from this folder's run folder. */
  readonly entry?: RunEntry;
}

/** The default time a remote verb waits for an answer, seconds. */
export const DEFAULT_TIMEOUT_S = 10;

/** Whether process `pid` exists (a process of another user counts). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === "EPERM";
  }
}

/** The run record in `file`, when it names a PID and a dial string. */
function readEntry(board: string, runDir: string, file: string): RunEntry | undefined {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(join(runDir, file), "utf8"));
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null) return undefined;
  const rec = v as { pid?: unknown; dialString?: unknown; startedAt?: unknown };
  if (typeof rec.pid !== "number" || !Number.isSafeInteger(rec.pid) || rec.pid <= 0 || typeof rec.dialString !== "string") return undefined;
  return {
    board,
    kind: board === "host" ? "host" : "vm",
    pid: rec.pid,
    dialString: rec.dialString,
    runDir,
    ...(typeof rec.startedAt === "string" ? { startedAt: rec.startedAt } : {}),
  };
}

/**
 * The appliances whose run folders are under `baseDir/run/` and whose PID
 * is alive, sorted by board. A board's record is its `vm.json` (as `up` and
 * `boot` write it), else any other `*.json` there naming `pid` and
 * `dialString`.
 *
 * @example
 * ```ts
 * runningAppliances(".cohesix"); // [{ board: "aarch64-virt", kind: "vm", pid: 4242, dialString: "tcp!127.0.0.1!5640", … }]
 * ```
 */
export function runningAppliances(baseDir: string): RunEntry[] {
  const runRoot = resolve(baseDir, "run");
  let boards: string[];
  try {
    boards = readdirSync(runRoot, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
  } catch {
    return [];
  }
  const found: RunEntry[] = [];
  for (const board of boards) {
    const runDir = join(runRoot, board);
    let files: string[];
    try {
      files = readdirSync(runDir).filter((f) => f.endsWith(".json"));
    } catch {
      continue;
    }
    files.sort((a, b) => (a === "vm.json" ? -1 : b === "vm.json" ? 1 : a.localeCompare(b)));
    for (const file of files) {
      const entry = readEntry(board, runDir, file);
      if (entry === undefined) continue;
      if (alive(entry.pid)) found.push(entry);
      break;
    }
  }
  return found;
}

/**
 * One run entry as messages name it.
 *
 * @example
 * ```ts
 * describeEntry(entry); // "aarch64-virt VM tcp!127.0.0.1!5640 (pid 4242)"
 * ```
 */
export function describeEntry(e: RunEntry): string {
  return `${e.board} ${e.kind === "host" ? "host board" : "VM"} ${e.dialString} (pid ${e.pid})`;
}

/** Options of {@link resolveAddress}. */
export interface ResolveOptions {
  /** The `--addr` value, if given. */
  readonly addr?: string;
  readonly env: NodeJS.ProcessEnv;
  /** The folder whose `.cohesix/run` is looked at; default the current one. */
  readonly cwd?: string;
}

/**
 * The dial string a remote verb uses: `--addr`, then `COHESIX_ADDR`, then
 * the one appliance this folder runs.
 *
 * @throws {UsageError} when no address is given and this folder runs no
 * appliance, or several (the message lists them).
 *
 * @example
 * ```ts
 * resolveAddress({ env: process.env }); // { dialString: "tcp!127.0.0.1!5640", source: "run", entry: { … } }
 * ```
 */
export function resolveAddress(options: ResolveOptions): ResolvedAddress {
  if (options.addr !== undefined) return { dialString: options.addr, source: "--addr" };
  const fromEnv = options.env.COHESIX_ADDR;
  if (fromEnv) return { dialString: fromEnv, source: "COHESIX_ADDR" };
  const cwd = resolve(options.cwd ?? process.cwd());
  const running = runningAppliances(join(cwd, ".cohesix"));
  if (running.length === 1) return { dialString: running[0]!.dialString, source: "run", entry: running[0]! };
  if (running.length === 0) {
    throw new UsageError(`--addr is required: ${cwd} runs no VM or host board; start one with \`cohesix up\`, or give --addr tcp!HOST!PORT or set COHESIX_ADDR`);
  }
  throw new UsageError(`${running.length} appliances run in ${cwd}: ${running.map(describeEntry).join(", ")}; choose one with --addr DIAL or COHESIX_ADDR`);
}

/** Options of {@link timeoutMsOf}. */
export interface TimeoutOptions {
  /** The `--timeout` value in seconds, if given. */
  readonly timeout?: string;
  readonly env: NodeJS.ProcessEnv;
}

/**
 * The remote timeout in ms: `--timeout S`, then `COHESIX_TIMEOUT`, then
 * {@link DEFAULT_TIMEOUT_S}. `0` waits forever.
 *
 * @throws {UsageError} a value that is not a number of seconds ≥ 0.
 *
 * @example
 * ```ts
 * timeoutMsOf({ timeout: "2.5", env: {} }); // 2500
 * ```
 */
export function timeoutMsOf(options: TimeoutOptions): number {
  const [text, where] = options.timeout !== undefined ? [options.timeout, "--timeout"] : options.env.COHESIX_TIMEOUT ? [options.env.COHESIX_TIMEOUT, "COHESIX_TIMEOUT"] : [String(DEFAULT_TIMEOUT_S), "default"];
  const s = Number(text);
  if (text.trim() === "" || !Number.isFinite(s) || s < 0) throw new UsageError(`${where} takes seconds ≥ 0 (0 waits forever), got ${JSON.stringify(text)}`);
  return Math.round(s * 1000);
}

class ExplainedError extends NineError {
  constructor(cls: ErrorClass, detail: string, cause: unknown) {
    super(cls, detail, { cause });
    this.name = "NineError";
  }
}

/**
 * `err` with the dial string and the likely causes added when it is a
 * timeout ({@link NoAnswerError}, or the connect timing out); any other
 * error unchanged.
 *
 * @example
 * ```ts
 * explainTimeout(new NoAnswerError("Tattach", 5000), { dialString: "tcp!127.0.0.1!5640", source: "run" }).message;
 * // "io: tcp!127.0.0.1!5640 did not answer Tattach in 5 s: is the VM paused (cohesix vm resume), …"
 * ```
 */
export function explainTimeout(err: unknown, addr: ResolvedAddress): unknown {
  const connect = err instanceof NineError && err.errorClass === "io" && /timed out after \d+ ms/.test(err.message);
  if (!(err instanceof NoAnswerError) && !connect) return err;
  const what = err instanceof NoAnswerError ? `did not answer ${err.request} in ${formatSeconds(err.ms)}` : `did not accept the connection (${(err as Error).message.replace(/^io: /, "")})`;
  const paused = addr.entry?.kind === "host" ? "is the host board stopped (kill -CONT)" : `is the VM paused (cohesix vm resume${addr.entry && addr.entry.board !== "aarch64-virt" ? ` --board ${addr.entry.board}` : ""})`;
  const port = addr.source === "run" ? "is it still this folder's appliance (cohesix status)" : `is ${addr.source === "--addr" ? "--addr" : "COHESIX_ADDR"} the right port (cohesix status lists this folder's appliances)`;
  return new ExplainedError("io", `${addr.dialString} ${what}: ${paused}, ${port}, or is it busy (wait longer with --timeout S or COHESIX_TIMEOUT)?`, err);
}
