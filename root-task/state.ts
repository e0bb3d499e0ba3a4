/**
 * The root task's state as a pure function of its commit log:
 * `state = replay(genesis, records)` (DESIGN §7). `applyCommit` is the only
 * place that changes state; the control plane commits a record first and
 * then applies it, and boot replays the same function, so a restarted
 * appliance comes back with the same workers, budgets, binds and counter.
 * @module
 */
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

/** The kinds of commit, for validating records read back from disk. */
export const commitKinds: readonly Commit["kind"][] = ["spawn", "exit", "budget", "bind", "unbind", "mount", "lifecycle", "ctr", "key"];

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
