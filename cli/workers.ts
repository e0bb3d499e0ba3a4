/**
 * The worker verbs: `spawn` and `kill` (sugar for the queen's ctl commands
 * of DESIGN §6, sent through the same signed path as `ctl`) and `logs` (a
 * worker's stderr, which the root task keeps in `/log/<id>.log`).
 * @module
 */
import { NotFoundError, type Fid } from "../nine-door/index.ts";
import { UsageError, type Parsed } from "./args.ts";
import { ctlCounterOf, ctlPrinted, printFrom, sendCtl, withQueen } from "./remote.ts";
import type { Io } from "./verb.ts";

type Out = (text: string | Uint8Array) => void;

/** What `spawn` builds a command from. */
export interface SpawnRequest {
  readonly name: string;
  readonly ticks?: string;
  readonly ttl?: string;
  readonly ops?: string;
  /** `GPU_ID:mem=MiB[,streams=N][,ttl=S][,priority=N]` */
  readonly lease?: string;
  readonly restart?: boolean;
}

function positive(option: string, text: string): number {
  const n = Number(text);
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${option} takes a positive integer, got ${JSON.stringify(text)}`);
  return n;
}

const LEASE_FORM = "--lease GPU_ID:mem=MiB[,streams=N][,ttl=S][,priority=N], e.g. --lease GPU-0:mem=4096,streams=2";

function leaseOf(text: string, ttl: number | undefined): Record<string, string | number> {
  const colon = text.indexOf(":");
  const gpu = colon < 0 ? text : text.slice(0, colon);
  if (!/^[A-Za-z0-9._-]+$/.test(gpu)) throw new UsageError(`${LEASE_FORM}; got ${JSON.stringify(text)}`);
  const fields: Record<string, number> = {};
  for (const part of colon < 0 ? [] : text.slice(colon + 1).split(",")) {
    const [k, v, extra] = part.split("=");
    if (k === undefined || v === undefined || extra !== undefined || !["mem", "streams", "ttl", "priority"].includes(k)) throw new UsageError(`${LEASE_FORM}; got ${JSON.stringify(part)}`);
    fields[k] = k === "priority" && v === "0" ? 0 : positive(`--lease ${k}`, v);
  }
  if (fields.mem === undefined) throw new UsageError(`--lease needs mem=MiB: ${LEASE_FORM}`);
  return { gpu_id: gpu, mem_mb: fields.mem, streams: fields.streams ?? 1, ttl_s: fields.ttl ?? ttl ?? 120, priority: fields.priority ?? 0 };
}

/**
 * The §6 spawn command for a request: `--ticks` at the top, `--ttl` and
 * `--ops` in the budget, `--lease` as the lease object (its ttl defaults
 * to `--ttl`, else 120 s).
 *
 * @throws {UsageError} a name or value the appliance would refuse anyway.
 *
 * @example
 * ```ts
 * spawnCommand({ name: "heartbeat", ticks: "100", ttl: "120" }); // '{"spawn":"heartbeat","ticks":100,"budget":{"ttl_s":120}}'
 * ```
 */
export function spawnCommand(request: SpawnRequest): string {
  if (!/^[a-z][a-z0-9-]{0,31}$/.test(request.name)) throw new UsageError(`spawn takes a worker name such as heartbeat, got ${JSON.stringify(request.name)}`);
  const cmd: Record<string, unknown> = { spawn: request.name };
  if (request.ticks !== undefined) cmd.ticks = positive("--ticks", request.ticks);
  const ttl = request.ttl === undefined ? undefined : positive("--ttl", request.ttl);
  const budget: Record<string, number> = {};
  if (ttl !== undefined) budget.ttl_s = ttl;
  if (request.ops !== undefined) budget.ops = positive("--ops", request.ops);
  if (Object.keys(budget).length > 0) cmd.budget = budget;
  if (request.lease !== undefined) cmd.lease = leaseOf(request.lease, ttl);
  if (request.restart === true) cmd.restart = true;
  return JSON.stringify(cmd);
}

/**
 * A worker id as the user may type it: `worker-7` or `7`.
 *
 * @example
 * ```ts
 * workerId("7"); // "worker-7"
 * ```
 */
export function workerId(text: string): string {
  if (/^[1-9][0-9]*$/.test(text)) return `worker-${text}`;
  if (/^worker-[1-9][0-9]*$/.test(text)) return text;
  throw new UsageError(`expected a worker id such as worker-3 (or 3), got ${JSON.stringify(text)}`);
}

/**
 * The kill command for a worker id.
 *
 * @example
 * ```ts
 * killCommand("7"); // '{"kill":"worker-7"}'
 * ```
 */
export function killCommand(id: string): string {
  return JSON.stringify({ kill: workerId(id) });
}

/**
 * The spawn request in a parsed `spawn` command line (the verb's, or the shell's).
 *
 * @example
 * ```ts
 * spawnRequestOf(parse(["heartbeat", "--ticks", "5"], { ticks: { type: "string" } })); // { name: "heartbeat", ticks: "5" }
 * ```
 */
export function spawnRequestOf(p: Parsed): SpawnRequest {
  const v = p.values;
  const s = (name: string): string | undefined => {
    const x = v[name];
    if (x === undefined) return undefined;
    if (typeof x !== "string" || x === "") throw new UsageError(`--${name} needs a value`);
    return x;
  };
  const [ticks, ttl, ops, lease] = [s("ticks"), s("ttl"), s("ops"), s("lease")];
  return {
    name: p.positionals[0]!,
    ...(ticks !== undefined ? { ticks } : {}),
    ...(ttl !== undefined ? { ttl } : {}),
    ...(ops !== undefined ? { ops } : {}),
    ...(lease !== undefined ? { lease } : {}),
    ...(v.restart === true ? { restart: true } : {}),
  };
}

/**
 * `spawn NAME [--ticks N] [--ttl S] [--ops N] [--lease GPU:mem=MiB,…] [--restart]`:
 * starts a worker through /queen/ctl (signed like `ctl`) and prints its id.
 *
 * @example
 * ```ts
 * await main(["spawn", "heartbeat", "--ticks", "100"], io); // prints "worker-4"
 * ```
 */
export function spawn(parsed: Parsed, { env, out }: Io): Promise<void> {
  return withQueen(parsed, env, async (root, p, key, session) => {
    const command = spawnCommand(spawnRequestOf(p));
    out(`${ctlPrinted(await sendCtl(root, key, command, { counter: ctlCounterOf(env, session) }))}\n`);
  });
}

/**
 * `kill WORKER`: stops a worker through /queen/ctl (`{"kill":"worker-7"}`,
 * signed like `ctl`) and prints its id.
 *
 * @example
 * ```ts
 * await main(["kill", "worker-4"], io); // prints "worker-4"
 * ```
 */
export function kill(parsed: Parsed, { env, out }: Io): Promise<void> {
  return withQueen(parsed, env, async (root, p, key, session) => {
    out(`${ctlPrinted(await sendCtl(root, key, killCommand(p.positionals[0]!), { counter: ctlCounterOf(env, session) }))}\n`);
  });
}

/** Options of {@link printLog}. */
export interface PrintLogOptions {
  /** Keep reading appends until `signal` aborts. */
  readonly follow?: boolean;
  readonly signal?: AbortSignal;
  /** Poll interval at the end of the log, ms; default 250. */
  readonly intervalMs?: number;
}

/**
 * Prints a worker's stderr, `/log/<id>.log`, from the start; with `follow`,
 * keeps printing appends until `signal` aborts.
 *
 * @example
 * ```ts
 * await printLog(root, "worker-3", out, { follow: true, signal });
 * ```
 */
export async function printLog(root: Fid, id: string, out: Out, options: PrintLogOptions = {}): Promise<void> {
  const wid = workerId(id);
  const f = await root.walk(["log", `${wid}.log`]).catch((err: unknown) => {
    if ((err as { errorClass?: unknown }).errorClass === "not found") throw new NotFoundError(`${wid} has no log /log/${wid}.log: no such worker on this appliance (ls /log lists the logs)`);
    throw err;
  });
  try {
    await f.open("r");
    await printFrom(f, 0, out, options);
  } finally {
    await f.clunk().catch(() => {});
  }
}

/**
 * `logs WORKER [-f]`: the worker's stderr (`/log/<id>.log`, kept after it
 * exits); `-f` follows appends until interrupted.
 *
 * @example
 * ```ts
 * await main(["logs", "worker-3", "-f"], io);
 * ```
 */
export function logs(parsed: Parsed, { env, out, signal }: Io): Promise<void> {
  return withQueen(parsed, env, async (root, p) => {
    const id = workerId(p.positionals[0]!);
    await printLog(root, id, out, { follow: p.values.follow === true, ...(signal ? { signal } : {}) });
  });
}
