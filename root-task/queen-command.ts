/**
 * The queen's control vocabulary (DESIGN §6), validated strictly: one JSON
 * object per write, exactly one command key, unknown fields refused with
 * `invalid: …` naming the field; a spawn of a worker the image does not
 * carry answers `not found: …` listing the ones it does. Validation has no
 * side effects.
 * @module
 */
import { InvalidError, NotFoundError } from "../nine-door/errors.ts";
import { pathNames } from "../nine-door/fs/path.ts";
import { CONTROL_RANGES, type Range } from "./limits.ts";

/** A budget: any subset of its three counters, each a positive integer within {@link CONTROL_RANGES}. */
export interface Budget {
  readonly ticks?: number;
  readonly ops?: number;
  readonly ttl_s?: number;
}

/** A GPU lease request. */
export interface LeaseRequest {
  readonly gpu_id: string;
  readonly mem_mb: number;
  readonly streams: number;
  readonly ttl_s: number;
  readonly priority: number;
}

/** Every command `/queen/ctl` accepts. */
export type QueenCommand =
  | { readonly kind: "spawn"; readonly worker: string; readonly ticks?: number; readonly budget?: Budget; readonly lease?: LeaseRequest; readonly restart?: boolean }
  | { readonly kind: "kill"; readonly worker: string }
  | { readonly kind: "budget"; readonly budget: Budget }
  | { readonly kind: "bind"; readonly from: string; readonly to: string }
  | { readonly kind: "unbind"; readonly to: string }
  | { readonly kind: "mount"; readonly service: string; readonly at: string };

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function isObject(v: unknown): v is Record<string, Json> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function onlyFields(where: string, obj: Record<string, Json>, allowed: readonly string[]): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) {
      throw new InvalidError(`unknown field ${JSON.stringify(k)} in ${where} (allowed: ${allowed.join(", ")})`);
    }
  }
}

/**
 * An integer within `range`; the bound is in the error: `invalid:
 * budget.ttl_s must be an integer 1..31536000, got 9007199254740991` for one
 * too big, `… must be a positive integer, got 0 (range 1..31536000)` for one
 * too small or not a whole number.
 */
function bounded(where: string, v: Json | undefined, range: Range): number {
  const got = JSON.stringify(v ?? null).slice(0, 40);
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < range.min) {
    const kind = range.min > 0 ? "a positive integer" : "a non-negative integer";
    throw new InvalidError(`${where} must be ${kind}, got ${got} (range ${range.min}..${range.max})`);
  }
  if (v > range.max) throw new InvalidError(`${where} must be an integer ${range.min}..${range.max}, got ${got}`);
  return v;
}

function str(where: string, v: Json | undefined, pattern?: RegExp): string {
  if (typeof v !== "string" || v.length === 0) throw new InvalidError(`${where} must be a non-empty string`);
  if (pattern && !pattern.test(v)) throw new InvalidError(`${where} ${JSON.stringify(v)} must match ${pattern}`);
  return v;
}

/**
 * Parses a budget object: `{ticks?, ops?, ttl_s?}`, each a positive integer
 * within its {@link CONTROL_RANGES} bound.
 *
 * @example
 * ```ts
 * parseBudget("budget", { ttl_s: 120 }); // { ttl_s: 120 }
 * parseBudget("budget", { ttl_s: 9007199254740991 }); // throws invalid: budget.ttl_s must be an integer 1..31536000, …
 * ```
 */
export function parseBudget(where: string, v: Json | undefined): Budget {
  if (!isObject(v)) throw new InvalidError(`${where} must be an object like {"ttl_s":120,"ops":500}`);
  onlyFields(where, v, ["ticks", "ops", "ttl_s"]);
  const out: { ticks?: number; ops?: number; ttl_s?: number } = {};
  if ("ticks" in v) out.ticks = bounded(`${where}.ticks`, v.ticks, CONTROL_RANGES.ticks);
  if ("ops" in v) out.ops = bounded(`${where}.ops`, v.ops, CONTROL_RANGES.ops);
  if ("ttl_s" in v) out.ttl_s = bounded(`${where}.ttl_s`, v.ttl_s, CONTROL_RANGES.ttl_s);
  return out;
}

function parseLease(v: Json | undefined): LeaseRequest {
  if (!isObject(v)) throw new InvalidError("spawn.lease must be an object");
  onlyFields("spawn.lease", v, ["gpu_id", "mem_mb", "streams", "ttl_s", "priority"]);
  return {
    gpu_id: str("spawn.lease.gpu_id", v.gpu_id, /^[A-Za-z0-9._-]+$/),
    mem_mb: bounded("spawn.lease.mem_mb", v.mem_mb, CONTROL_RANGES.mem_mb),
    streams: bounded("spawn.lease.streams", v.streams, CONTROL_RANGES.streams),
    ttl_s: bounded("spawn.lease.ttl_s", v.ttl_s, CONTROL_RANGES.ttl_s),
    priority: bounded("spawn.lease.priority", v.priority ?? 0, CONTROL_RANGES.priority),
  };
}

const WORKER_NAME = /^[a-z][a-z0-9-]{0,31}$/;
const WORKER_ID = /^worker-[1-9][0-9]*$/;
const ABS_PATH = /^\/[A-Za-z0-9._\-/]*$/;

function path(where: string, v: Json | undefined): string {
  const p = str(where, v, ABS_PATH);
  const parts = pathNames(p);
  if (parts.includes("..") || parts.includes(".")) throw new InvalidError(`${where} ${JSON.stringify(p)} must not contain . or ..`);
  return "/" + parts.join("/");
}

/** Options of `parseQueenCommand`. */
export interface ParseOptions {
  /** Worker kinds the image carries; default `heartbeat` and `gpu`. */
  readonly workers?: readonly string[];
}

/**
 * Parses one `/queen/ctl` write.
 *
 * @example
 * ```ts
 * parseQueenCommand('{"spawn":"heartbeat","ticks":100}');
 * // → { kind: "spawn", worker: "heartbeat", ticks: 100 }
 * parseQueenCommand('{"spawn":"nope","colour":1}'); // throws invalid: unknown field "colour" …
 * ```
 */
export function parseQueenCommand(text: string, options: ParseOptions = {}): QueenCommand {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new InvalidError(`not JSON: ${(err as Error).message}`);
  }
  return queenCommandOf(v, options);
}

/**
 * Validates a command already parsed from JSON (e.g. a signed envelope's
 * `cmd`), so one write's JSON is parsed once; the rules of
 * {@link parseQueenCommand}.
 *
 * @example
 * ```ts
 * queenCommandOf({ kill: "worker-2" }); // { kind: "kill", worker: "worker-2" }
 * ```
 */
export function queenCommandOf(v: unknown, options: ParseOptions = {}): QueenCommand {
  if (!isObject(v)) throw new InvalidError("a command must be a JSON object like {\"spawn\":\"heartbeat\"}");
  const keys = Object.keys(v);
  // `budget` is a verb and also a field of spawn: with spawn it is the field.
  const verbs = ["spawn", "kill", "budget", "bind", "unbind", "mount"].filter((k) => k in v && !(k === "budget" && "spawn" in v));
  if (verbs.length !== 1) {
    throw new InvalidError(
      verbs.length === 0
        ? `unknown command ${JSON.stringify(keys[0] ?? "")}: expected one of spawn, kill, budget, bind, unbind, mount`
        : `one command per write, got ${verbs.join(" and ")}`,
    );
  }
  switch (verbs[0]) {
    case "spawn": {
      onlyFields("spawn", v, ["spawn", "ticks", "budget", "lease", "restart"]);
      const worker = str("spawn", v.spawn, WORKER_NAME);
      const known = options.workers ?? ["heartbeat", "gpu"];
      if (!known.includes(worker)) {
        throw new NotFoundError(`no worker ${JSON.stringify(worker)} in this image (known: ${[...known].sort().join(", ") || "none"})`);
      }
      const cmd: { kind: "spawn"; worker: string; ticks?: number; budget?: Budget; lease?: LeaseRequest; restart?: boolean } = { kind: "spawn", worker };
      if ("ticks" in v) cmd.ticks = bounded("spawn.ticks", v.ticks, CONTROL_RANGES.ticks);
      if ("budget" in v) cmd.budget = parseBudget("spawn.budget", v.budget);
      if ("lease" in v) cmd.lease = parseLease(v.lease);
      if ("restart" in v) {
        if (typeof v.restart !== "boolean") throw new InvalidError("spawn.restart must be true or false");
        cmd.restart = v.restart;
      }
      return cmd;
    }
    case "kill":
      onlyFields("kill", v, ["kill"]);
      return { kind: "kill", worker: str("kill", v.kill, WORKER_ID) };
    case "budget":
      onlyFields("budget", v, ["budget"]);
      return { kind: "budget", budget: parseBudget("budget", v.budget) };
    case "bind": {
      onlyFields("bind", v, ["bind"]);
      if (!isObject(v.bind)) throw new InvalidError("bind must be an object like {\"from\":\"/worker/worker-1\",\"to\":\"/w1\"}");
      onlyFields("bind", v.bind, ["from", "to"]);
      const from = path("bind.from", v.bind.from);
      const to = path("bind.to", v.bind.to);
      if (to === "/") throw new InvalidError("bind.to must not be / (binding over the root hides the namespace)");
      return { kind: "bind", from, to };
    }
    case "unbind": {
      onlyFields("unbind", v, ["unbind"]);
      const to = path("unbind", v.unbind);
      if (to === "/") throw new InvalidError("unbind must name a bind's target like \"/w1\", not /");
      return { kind: "unbind", to };
    }
    default: {
      onlyFields("mount", v, ["mount"]);
      if (!isObject(v.mount)) throw new InvalidError("mount must be an object like {\"service\":\"gpu\",\"at\":\"/gpu\"}");
      onlyFields("mount", v.mount, ["service", "at"]);
      return { kind: "mount", service: str("mount.service", v.mount.service, WORKER_NAME), at: path("mount.at", v.mount.at) };
    }
  }
}
