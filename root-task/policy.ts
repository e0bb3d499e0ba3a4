/**
 * The appliance's access policy (DESIGN §4 and §5) as pure functions: given
 * who is asking (the role and subject a ticket established, plus the
 * ticket's mounts), a path and an operation, allow or refuse. No I/O, no
 * state: the server calls it on every walk step, open, create and remove.
 *
 * The rules, in one breath:
 * - `queen` may do anything, except change `/proc/…` and `/log/…` (read-only
 *   on the wire; only the root task writes them, internally) and a worker's
 *   `/worker/<id>/telemetry` (appended by that worker alone).
 * - a worker (`worker-heartbeat`, `worker-gpu`, any `worker-<name>`) sees
 *   `/proc/boot`, `/log/queen.log`, its own `/worker/<id>/` (read; it may
 *   append to its `telemetry` only), and the ancestors needed to reach them
 *   (walk, stat, list — listings hidden through {@link visibleChildren}).
 *   Each `/gpu/<lease>` in its ticket's mounts adds read and write at and
 *   below that path, and makes `/gpu` walkable.
 * - `fleet` (the fleet link, docs/fleet.md) reads `/proc/…`, `/queen/ctr`,
 *   `/log/queen.log` and every `/worker/<id>/telemetry` (and walks to them),
 *   and writes `/queen/ctl`, where only signed envelopes addressed to this
 *   appliance are taken from it (the signature is the authority, see
 *   `control.ts`); nothing else.
 * - nobody creates or removes `/`; any other role (`bridge` included — the
 *   bridge server has its own policy) may do nothing here.
 *
 * `create` is checked against the path of the file to be created
 * (directory + name), `remove` against the path removed.
 *
 * @example
 * ```ts
 * import { authorize } from "./policy.ts";
 * const worker = { role: "worker-heartbeat", subject: "worker-3" };
 * authorize(worker, "/worker/worker-3/telemetry", "write"); // ok
 * authorize(worker, "/queen/ctl", "write");
 * // throws PermissionError "permission: worker-heartbeat worker-3 may not write /queen/ctl"
 * ```
 * @module
 */
import { PermissionError } from "../nine-door/index.ts";
import { normalisePath } from "../nine-door/index.ts";
import type { AccessOp, Caller } from "../nine-door/index.ts";

/** What a caller wants to do to a path (NineDoor's own type). */
export type { AccessOp };

/**
 * Every {@link AccessOp}, in a fixed order (for tables and tests).
 *
 * @example
 * ```ts
 * for (const op of ACCESS_OPS) isAuthorized(caller, "/proc/boot", op);
 * ```
 */
export const ACCESS_OPS: readonly AccessOp[] = ["walk", "read", "write", "create", "remove", "stat"];

/**
 * The caller as policy sees it: role and subject from the ticket, and the
 * ticket's mounts (e.g. `["/gpu/GPU-0"]`) when it has any.
 *
 * @example
 * ```ts
 * const gpu: PolicyCaller = { role: "worker-gpu", subject: "worker-2", mounts: ["/gpu/GPU-0"] };
 * ```
 */
export type PolicyCaller = Caller & { readonly mounts?: readonly string[] };

/**
 * Whether `role` is a worker role (`worker-heartbeat`, `worker-gpu`,
 * `worker-<name>` for a user's worker).
 *
 * @example
 * ```ts
 * isWorkerRole("worker-camera"); // true
 * isWorkerRole("queen"); // false
 * ```
 */
export function isWorkerRole(role: string): boolean {
  return /^worker-[a-z0-9][a-z0-9-]*$/.test(role);
}

/** An absolute path in canonical form (see the namespace path module). */
export { normalisePath };

/**
 * Refuses what the caller may not do, with PermissionError
 * `"permission: <role> <subject> may not <op> <path>"`. The path is
 * normalised first (InvalidError if it cannot be).
 *
 * @example
 * ```ts
 * authorize({ role: "queen", subject: "queen" }, "/queen/ctl", "write"); // ok
 * authorize({ role: "queen", subject: "queen" }, "/proc/boot", "write"); // throws PermissionError
 * ```
 */
export function authorize(caller: PolicyCaller, path: string, op: AccessOp): void {
  const canonical = normalisePath(path);
  if (!decide(caller, split(canonical), op)) {
    throw new PermissionError(`${caller.role} ${caller.subject} may not ${op} ${canonical}`);
  }
}

/**
 * {@link authorize} as a boolean, for callers that branch instead of throw.
 *
 * @example
 * ```ts
 * if (isAuthorized(caller, "/gpu", "walk")) mountGpu();
 * ```
 */
export function isAuthorized(caller: PolicyCaller, path: string, op: AccessOp): boolean {
  return decide(caller, split(normalisePath(path)), op);
}

/**
 * The entries of a directory listing the caller may see: those it may walk
 * to. Order is kept.
 *
 * @example
 * ```ts
 * visibleChildren({ role: "worker-heartbeat", subject: "worker-1" }, "/", ["gpu", "log", "proc", "queen", "worker"]);
 * // ["log", "proc", "worker"]
 * ```
 */
export function visibleChildren(caller: PolicyCaller, dirPath: string, names: readonly string[]): string[] {
  const dir = split(normalisePath(dirPath));
  return names.filter((name) => isName(name) && decide(caller, [...dir, name], "walk"));
}

// ---------------------------------------------------------------------------

const MUTATING: ReadonlySet<AccessOp> = new Set<AccessOp>(["write", "create", "remove"]);
const SEEING: ReadonlySet<AccessOp> = new Set<AccessOp>(["walk", "stat", "read"]);

function split(canonical: string): string[] {
  return canonical === "/" ? [] : canonical.slice(1).split("/");
}

function isName(name: string): boolean {
  return name !== "" && name !== "." && name !== ".." && !name.includes("/") && !name.includes("\0");
}

function decide(caller: PolicyCaller, names: readonly string[], op: AccessOp): boolean {
  if (names.length === 0 && (op === "create" || op === "remove")) return false;
  if (caller.role === "queen") return decideQueen(names, op);
  if (isWorkerRole(caller.role)) return decideWorker(caller, names, op);
  if (caller.role === "fleet") return decideFleet(names, op);
  return false;
}

function decideFleet(names: readonly string[], op: AccessOp): boolean {
  const [top, second, third] = names;
  if (op === "write") return names.length === 2 && top === "queen" && second === "ctl";
  if (!SEEING.has(op)) return false;
  if (names.length === 0 || top === "proc") return true;
  if (top === "queen") return names.length === 1 || (names.length === 2 && (second === "ctr" || second === "ctl"));
  if (top === "log") return names.length === 1 || (names.length === 2 && second === "queen.log");
  if (top === "worker") return names.length <= 2 || (names.length === 3 && third === "telemetry");
  return false;
}

function decideQueen(names: readonly string[], op: AccessOp): boolean {
  if (!MUTATING.has(op)) return true;
  const [top, id, file] = names;
  if (top === "proc" || top === "log") return false;
  if (top === "worker" && id !== undefined && file === "telemetry" && names.length === 3) return false;
  return true;
}

function decideWorker(caller: PolicyCaller, names: readonly string[], op: AccessOp): boolean {
  if (op === "create" || op === "remove") return false;
  const path = names;
  const own = isName(caller.subject) ? ["worker", caller.subject] : undefined;

  // Inside its own worker directory: see everything, append telemetry only.
  if (own !== undefined && startsWith(path, own)) {
    if (SEEING.has(op)) return true;
    return op === "write" && path.length === 3 && path[2] === "telemetry";
  }
  // Inside a GPU lease from its ticket: see and write.
  const leases = gpuMounts(caller);
  if (leases.some((lease) => startsWith(path, lease))) return true;

  // Files the DESIGN shows to every worker, read-only.
  const visible: string[][] = [["proc", "boot"], ["log", "queen.log"]];
  if (own !== undefined) visible.push(own);
  visible.push(...leases);
  if (!SEEING.has(op)) return false;
  // Exactly a visible file, or an ancestor of one (walk, stat, list).
  return visible.some((target) => startsWith(target, path));
}

/** The caller's mounts under `/gpu`, as name lists; anything else is ignored. */
function gpuMounts(caller: PolicyCaller): string[][] {
  const out: string[][] = [];
  for (const mount of caller.mounts ?? []) {
    let canonical: string;
    try {
      canonical = normalisePath(mount);
    } catch {
      continue;
    }
    const names = split(canonical);
    if (names.length >= 2 && names[0] === "gpu") out.push(names);
  }
  return out;
}

function startsWith(path: readonly string[], prefix: readonly string[]): boolean {
  if (path.length < prefix.length) return false;
  return prefix.every((name, i) => path[i] === name);
}
