/**
 * Helpers for the root task's process-level acceptance tests: a queen that
 * runs `cohesix` commands against one served appliance, polling without
 * fixed sleeps, and process checks by PID (a zombie counts as gone).
 */
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll } from "vitest";
import { showLog } from "../../root-task/index.ts";
import { cohesix, makeScratch, serve, type Scratch, type Served } from "./helpers.ts";

/**
 * Polls `probe` until it returns something other than `undefined`/`false`,
 * or fails naming `what` after `timeoutMs` (generous: CI has 2 busy cores).
 */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, options: { timeoutMs?: number; intervalMs?: number } = {}): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await sleep(options.intervalMs ?? 200);
  }
}

/** Whether process `pid` exists and is not a zombie waiting to be reaped. */
export function pidAlive(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return false;
  }
  // pid (comm) STATE …: comm may hold spaces and parentheses, so look after the last ')'.
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X";
}

/** Sends `signal` to `pid`, ignoring a process that is already gone. */
export function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}

/** One `/proc/workers` record as key=value pairs. */
export type WorkerRecord = Record<string, string>;

/** Parses `/proc/workers`: one `key=value …` record per line, by id. */
export function parseWorkers(text: string): Map<string, WorkerRecord> {
  const out = new Map<string, WorkerRecord>();
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const rec: WorkerRecord = {};
    for (const m of line.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S+)/g)) rec[m[1]!] = m[2]!.startsWith('"') ? (JSON.parse(m[2]!) as string) : m[2]!;
    if (rec.id) out.set(rec.id, rec);
  }
  return out;
}

/** Number of intact records in a state directory's commit log (read offline, without the lock). */
export async function recordCount(stateDir: string): Promise<number> {
  return (await showLog(stateDir)).records.length;
}

/** Runs `cohesix` commands as the queen against one served appliance. */
export class Queen {
  readonly #scratch: Scratch;
  #served: Served;

  constructor(scratch: Scratch, served: Served) {
    this.#scratch = scratch;
    this.#served = served;
  }

  /** Points later commands at a restarted server. */
  set served(served: Served) {
    this.#served = served;
  }

  get served(): Served {
    return this.#served;
  }

  /** `cohesix ARGS… --addr … --key …`, never throwing on a non-zero exit. */
  run(args: readonly string[]) {
    return cohesix([...args, "--addr", this.#served.addr, "--key", this.#scratch.queenKey], { env: this.#scratch.env });
  }

  /** `cohesix cat PATH`, which must succeed. */
  async cat(path: string): Promise<string> {
    const r = await this.run(["cat", path]);
    if (r.exitCode !== 0) throw new Error(`cohesix cat ${path} exited ${r.exitCode}: ${r.stderr}`);
    return r.stdout;
  }

  /** `/proc/workers`, parsed. */
  async workers(): Promise<Map<string, WorkerRecord>> {
    return parseWorkers(await this.cat("/proc/workers"));
  }

  /** The pid of a running worker, from `/proc/workers`. */
  async pid(id: string): Promise<number> {
    return waitFor(`a pid for ${id} in /proc/workers`, async () => {
      const pid = Number((await this.workers()).get(id)?.pid);
      return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
    });
  }

  /** Lines of `/worker/<id>/telemetry`, each parsed as JSON. */
  async telemetry(id: string): Promise<Array<Record<string, unknown>>> {
    const text = await this.cat(`/worker/${id}/telemetry`);
    return text
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

/** Stops a server by PID (SIGTERM), unless it already died, and waits for it. */
export async function stopServed(s: Served | undefined): Promise<void> {
  if (!s) return;
  if (pidAlive(s.pid)) signalPid(s.pid, "SIGTERM");
  await s.child;
}

/** One describe's served appliance: its scratch dir, the `cohesix serve` child and the queen. */
export interface ServedSuite {
  readonly scratch: Scratch;
  readonly served: Served;
  readonly queen: Queen;
}

/**
 * Registers in the current describe: before its tests, a scratch dir,
 * `cohesix serve` on it (with `extra` flags) and a queen for it; after
 * them, the server stopped by PID and the dir removed. Read the fields in
 * hooks and tests, not while the describe is collected.
 *
 * @example
 * describe("lifecycle", () => {
 *   const suite = useServedSuite();
 *   test("starts ONLINE", async () => expect(await suite.queen.cat("/proc/lifecycle/state")).toBe("ONLINE"));
 * });
 */
export function useServedSuite(extra: readonly string[] = []): ServedSuite {
  let scratch: Scratch | undefined;
  let served: Served | undefined;
  let queen: Queen | undefined;
  beforeAll(async () => {
    scratch = await makeScratch();
    served = await serve(scratch, extra);
    queen = new Queen(scratch, served);
  });
  afterAll(async () => {
    await stopServed(served);
    await scratch?.remove();
  });
  const ready = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error("useServedSuite: read before its beforeAll ran (or it failed)");
    return value;
  };
  return {
    get scratch() {
      return ready(scratch);
    },
    get served() {
      return ready(served);
    },
    get queen() {
      return ready(queen);
    },
  };
}
