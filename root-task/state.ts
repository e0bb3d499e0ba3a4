/**
 * The root task's state as a pure function of its commit log:
 * `state = replay(genesis, records)` (DESIGN §7). `applyCommit` is the only
 * place that changes state; the control plane commits a record first and
 * then applies it, and boot replays the same function, so a restarted
 * appliance comes back with the same workers, budgets, binds and counter.
 * @module
 */
import { InvalidError } from "../nine-door/errors.ts";
import type { Budget, LeaseRequest } from "./queen-command.ts";

/** Lifecycle states (DESIGN §5). */
export type LifecycleState = "BOOTING" | "DEGRADED" | "ONLINE" | "DRAINING" | "QUIESCED" | "OFFLINE";

/** What the state knows of one worker. */
export interface WorkerState {
  readonly id: string;
  /** Program kind: `heartbeat`, `gpu`, or a user's worker name. */
  readonly kind: string;
  readonly role: string;
  readonly budget: Budget;
  readonly restart: boolean;
  readonly lease?: LeaseRequest;
  readonly status: "running" | "exited" | "killed" | "revoked";
  readonly reason?: string;
  /** Wall-clock spawn time, for ttl_s across restarts. */
  readonly spawnedMs: number;
}

/** The whole replayable state. */
export interface ApplianceState {
  /** Number of the next worker id (`worker-<n>`). */
  readonly nextWorker: number;
  readonly workers: Readonly<Record<string, WorkerState>>;
  /** Defaults for later spawns (`{"budget":…}`). */
  readonly defaults: Budget;
  readonly binds: readonly { readonly from: string; readonly to: string }[];
  readonly mounts: readonly { readonly service: string; readonly at: string }[];
  readonly lifecycle: { readonly state: LifecycleState; readonly reason: string; readonly sinceMs: number };
  readonly cordoned: boolean;
  /** Last accepted signed-ctl counter. */
  readonly ctr: number;
}

/** The state before the first commit. */
export const genesis: ApplianceState = {
  nextWorker: 1,
  workers: {},
  defaults: {},
  binds: [],
  mounts: [],
  lifecycle: { state: "ONLINE", reason: "genesis", sinceMs: 0 },
  cordoned: false,
  ctr: 0,
};

/** Every kind of commit and its body. */
export type Commit =
  | { kind: "spawn"; body: { id: string; kind: string; role: string; budget: Budget; restart: boolean; lease?: LeaseRequest; ts_ms: number } }
  | { kind: "exit"; body: { id: string; status: "exited" | "killed" | "revoked"; reason: string } }
  | { kind: "budget"; body: { budget: Budget } }
  | { kind: "bind"; body: { from: string; to: string } }
  | { kind: "unbind"; body: { to: string } }
  | { kind: "mount"; body: { service: string; at: string } }
  | { kind: "lifecycle"; body: { state: LifecycleState; reason: string; cordoned: boolean; ts_ms: number } }
  | { kind: "ctr"; body: { ctr: number } }
  | { kind: "key"; body: { event: string; key_id: string } };

type Body = Record<string, unknown>;
type Check = (body: Body, where: string) => void;

function field(body: Body, where: string, name: string, type: "string" | "number" | "boolean" | "object", optional = false): void {
  const v = body[name];
  if (v === undefined && optional) return;
  const ok = type === "object" ? typeof v === "object" && v !== null && !Array.isArray(v) : typeof v === type;
  if (!ok) throw new InvalidError(`${where}: field ${name} must be ${type === "object" ? "an object" : `a ${type}`}, got ${JSON.stringify(v ?? null).slice(0, 40)}`);
}

function oneOf(body: Body, where: string, name: string, values: readonly string[]): void {
  if (!values.includes(body[name] as string)) throw new InvalidError(`${where}: field ${name} must be one of ${values.join(", ")}, got ${JSON.stringify(body[name] ?? null).slice(0, 40)}`);
}

const LIFECYCLE_STATES: readonly LifecycleState[] = ["BOOTING", "DEGRADED", "ONLINE", "DRAINING", "QUIESCED", "OFFLINE"];

/**
 * The one table of commit kinds: each kind the root task records, with the
 * check its body must pass when read back from disk. `applyCommit` handles
 * exactly these kinds.
 */
export const COMMIT_KINDS: { readonly [K in Commit["kind"]]: Check } = {
  spawn: (b, w) => {
    field(b, w, "id", "string");
    if (!/^worker-[1-9][0-9]*$/.test(b.id as string)) throw new InvalidError(`${w}: field id must be worker-<n>, got ${JSON.stringify(b.id).slice(0, 40)}`);
    field(b, w, "kind", "string");
    field(b, w, "role", "string");
    field(b, w, "budget", "object");
    field(b, w, "restart", "boolean", true);
    field(b, w, "lease", "object", true);
    field(b, w, "ts_ms", "number");
  },
  exit: (b, w) => {
    field(b, w, "id", "string");
    oneOf(b, w, "status", ["exited", "killed", "revoked"]);
    field(b, w, "reason", "string");
  },
  budget: (b, w) => field(b, w, "budget", "object"),
  bind: (b, w) => {
    field(b, w, "from", "string");
    field(b, w, "to", "string");
  },
  unbind: (b, w) => field(b, w, "to", "string"),
  mount: (b, w) => {
    field(b, w, "service", "string");
    field(b, w, "at", "string");
  },
  lifecycle: (b, w) => {
    oneOf(b, w, "state", LIFECYCLE_STATES);
    field(b, w, "reason", "string");
    field(b, w, "cordoned", "boolean");
    field(b, w, "ts_ms", "number");
  },
  ctr: (b, w) => field(b, w, "ctr", "number"),
  key: (b, w) => {
    field(b, w, "event", "string");
    field(b, w, "key_id", "string");
  },
};

/**
 * A record read back from the log, checked against {@link COMMIT_KINDS}:
 * a record of a kind the table lacks, or whose body does not fit its kind,
 * throws `invalid: commit log: record <seq>: …` naming the kind or field.
 *
 * @example
 * ```ts
 * const state = log.recovered.reduce((s, r) => applyCommit(s, commitFromRecord(r)), genesis);
 * commitFromRecord({ seq: 4, kind: "teleport", body: {} }); // throws invalid: commit log: record 4: unknown kind "teleport" (known: spawn, exit, …)
 * ```
 */
export function commitFromRecord(record: { readonly seq: number; readonly kind: string; readonly body: unknown }): Commit {
  const where = `commit log: record ${record.seq} (${record.kind})`;
  const check = Object.hasOwn(COMMIT_KINDS, record.kind) ? COMMIT_KINDS[record.kind as Commit["kind"]] : undefined;
  if (!check) {
    throw new InvalidError(`commit log: record ${record.seq}: unknown kind ${JSON.stringify(record.kind)} (known: ${Object.keys(COMMIT_KINDS).join(", ")})`);
  }
  const body = record.body;
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new InvalidError(`${where}: body must be an object`);
  check(body as Body, where);
  return { kind: record.kind, body } as Commit;
}

/**
 * Applies one commit. Pure: returns a new state, never mutates.
 *
 * @example
 * ```ts
 * const s = applyCommit(genesis, { kind: "budget", body: { budget: { ops: 500 } } });
 * s.defaults.ops; // 500
 * ```
 */
export function applyCommit(state: ApplianceState, commit: Commit): ApplianceState {
  switch (commit.kind) {
    case "spawn": {
      const b = commit.body;
      const n = Number(b.id.slice("worker-".length));
      const worker: WorkerState = {
        id: b.id,
        kind: b.kind,
        role: b.role,
        budget: b.budget,
        restart: b.restart,
        ...(b.lease ? { lease: b.lease } : {}),
        status: "running",
        spawnedMs: b.ts_ms,
      };
      return { ...state, nextWorker: Math.max(state.nextWorker, n + 1), workers: { ...state.workers, [b.id]: worker } };
    }
    case "exit": {
      const w = state.workers[commit.body.id];
      if (!w) return state;
      return { ...state, workers: { ...state.workers, [w.id]: { ...w, status: commit.body.status, reason: commit.body.reason } } };
    }
    case "budget":
      return { ...state, defaults: { ...state.defaults, ...commit.body.budget } };
    case "bind":
      return { ...state, binds: [...state.binds.filter((b) => b.to !== commit.body.to), commit.body] };
    case "unbind":
      return { ...state, binds: state.binds.filter((b) => b.to !== commit.body.to) };
    case "mount":
      return { ...state, mounts: [...state.mounts.filter((m) => m.at !== commit.body.at), commit.body] };
    case "lifecycle":
      return {
        ...state,
        lifecycle: { state: commit.body.state, reason: commit.body.reason, sinceMs: commit.body.ts_ms },
        cordoned: commit.body.cordoned,
      };
    case "ctr":
      return { ...state, ctr: Math.max(state.ctr, commit.body.ctr) };
    case "key":
      return state;
  }
}

/** Workers the state says are running. */
export function runningWorkers(state: ApplianceState): WorkerState[] {
  return Object.values(state.workers).filter((w) => w.status === "running");
}
