/**
 * What makes a bind acceptable, and what a path stands for once binds are
 * followed. The namespace resolves binds lazily and the policy decides by
 * the path a caller walked, so without care a bind could hand a worker a
 * queen-only file under one of its own names. The rules:
 *
 * - a bind never changes what a role may do: when a worker could reach the
 *   target with more rights than it has on the source, the bind is refused
 *   (`permission:`); and every access through a bind is also checked
 *   against the path it really reaches ({@link realPath}), so no role gains
 *   anything through a bind made later either;
 * - `/queen`, `/proc` and `/log` (the root task's own files) cannot be
 *   covered, nor anything inside them;
 * - the source exists, the target's parent exists and is a directory, the
 *   target does not hide an existing file (replacing an earlier bind is
 *   fine), and neither contains the other.
 * @module
 */
import { InvalidError, NineError, childPath, isWithin, parentPath, pathNames, NotFoundError, PermissionError, type Namespace, type Node, type RequestContext } from "../nine-door/index.ts";
import { isAuthorized, type AccessOp, type PolicyCaller } from "./policy.ts";

/** One bind: walking `to` yields what is at `from`. */
export interface BindPair {
  readonly from: string;
  readonly to: string;
}

/** Top-level names a bind may not cover. */
export const PROTECTED_BIND_ROOTS: readonly string[] = ["/queen", "/proc", "/log"];

/** Binds one path may pass through before it is called a loop (as the namespace). */
const MAX_BIND_DEPTH = 8;

/** Bit of `Node.mode` that marks a directory. */
const DMDIR = 0x80000000;

const OPS: readonly AccessOp[] = ["walk", "stat", "read", "write"];

/**
 * The path `path` really reaches once binds are followed, the way the
 * namespace walks it: name by name from the root, each name that is a
 * bind's target replaced by its source (itself resolved). Throws
 * `invalid: bind loop: …` past 8 binds.
 *
 * @example
 * ```ts
 * realPath([{ from: "/worker/worker-1", to: "/w1" }], "/w1/telemetry"); // "/worker/worker-1/telemetry"
 * ```
 */
export function realPath(binds: readonly BindPair[], path: string): string {
  if (binds.length === 0) return path;
  return resolveReal(new Map(binds.map((b) => [b.to, b.from])), path, 0);
}

function resolveReal(binds: ReadonlyMap<string, string>, path: string, depth: number): string {
  let visible = "/";
  let real = "/";
  for (const name of pathNames(path)) {
    visible = childPath(visible, name);
    const from = binds.get(visible);
    if (from === undefined) {
      real = childPath(real, name);
      continue;
    }
    if (depth >= MAX_BIND_DEPTH) throw new InvalidError(`bind loop: ${visible}`);
    real = resolveReal(binds, from, depth + 1);
  }
  return real;
}

/** Whether a bind target is at or inside `/queen`, `/proc` or `/log`. */
export function protectedTarget(to: string): string | undefined {
  return PROTECTED_BIND_ROOTS.find((root) => isWithin(to, root));
}

/** What {@link checkBind} needs to look at. */
export interface BindCheck {
  /** The namespace as it is, binds included. */
  readonly namespace: Namespace;
  /** The binds in force. */
  readonly binds: readonly BindPair[];
  /** Workers that exist now, as policy sees them (role, subject, GPU mounts). */
  readonly workers: readonly PolicyCaller[];
  /** The context to walk with (the root task's own). */
  readonly ctx: RequestContext;
}

/**
 * Refuses a bind that is not acceptable (see the module's rules), with the
 * reason: `invalid:`, `not found:` or `permission:`. Changes nothing.
 *
 * @example
 * ```ts
 * await checkBind({ from: "/worker/worker-1", to: "/w1" }, { namespace, binds, workers, ctx }); // ok
 * await checkBind({ from: "/proc", to: "/queen" }, …); // throws invalid: bind.to /queen: /queen, /proc and /log cannot be covered
 * ```
 */
export async function checkBind(bind: BindPair, check: BindCheck): Promise<void> {
  const { from, to } = bind;
  const guarded = protectedTarget(to);
  if (guarded) throw new InvalidError(`bind.to ${to}: ${PROTECTED_BIND_ROOTS.join(", ")} cannot be covered (${guarded} is the root task's)`);
  if (isWithin(to, from)) throw new InvalidError(`bind.from ${from} contains bind.to ${to}: a directory cannot be bound inside itself`);
  if (isWithin(from, to)) throw new InvalidError(`bind.from ${from} is inside bind.to ${to}: the bind would hide its own source`);

  await existing(check, from, `bind.from ${from} does not exist`);
  const parent = parentPath(to);
  const dir = await existing(check, parent, `bind.to ${to}: its parent ${parent} does not exist`);
  if ((dir.mode & DMDIR) === 0) throw new InvalidError(`bind.to ${to}: ${parent} is a file, not a directory`);

  // The same checks on the paths the bind really joins, once earlier binds are followed.
  const after = [...check.binds.filter((b) => b.to !== to), bind];
  let realFrom: string;
  let realTo: string;
  try {
    realFrom = realPath(check.binds, from);
    realTo = childPath(realPath(check.binds, parent), to.slice(to.lastIndexOf("/") + 1));
    realPath(after, to);
  } catch (err) {
    throw new InvalidError(`bind ${from} onto ${to} makes a loop: ${(err as Error).message}`);
  }
  const realGuarded = protectedTarget(realTo);
  if (realGuarded) throw new InvalidError(`bind.to ${to} lies in ${realGuarded}, which cannot be covered`);
  if (isWithin(realTo, realFrom) || isWithin(realFrom, realTo)) {
    throw new InvalidError(`bind ${from} onto ${to} makes a loop: ${realFrom} and ${realTo} contain one another`);
  }

  for (const worker of candidates(check.workers, [to, realTo])) {
    for (const op of OPS) {
      const reaches = isAuthorized(worker, to, op) || isAuthorized(worker, realTo, op);
      if (reaches && !isAuthorized(worker, realFrom, op)) {
        throw new PermissionError(
          `bind would let ${worker.role} ${worker.subject} ${op} ${realFrom} through ${to}: a bind may not change what a role can do`,
        );
      }
    }
  }

  const rebind = check.binds.some((b) => b.to === to);
  if (!rebind && (await exists(check, to))) {
    throw new InvalidError(`bind.to ${to} already exists: a bind adds a new name and never hides one (pick another name)`);
  }
}

/** The workers to check a target against: those that exist, and whoever owns the target's place. */
function candidates(workers: readonly PolicyCaller[], targets: readonly string[]): PolicyCaller[] {
  const out = [...workers];
  for (const target of targets) {
    const [top, id] = pathNames(target);
    if (top === "worker" && id !== undefined) out.push({ role: "worker-any", subject: id });
    if (top === "gpu" && id !== undefined) out.push({ role: "worker-gpu", subject: "worker-0", mounts: [`/gpu/${id}`] });
  }
  // A worker that owns nothing the target touches still sees /proc/boot and /log/queen.log.
  out.push({ role: "worker-any", subject: "worker-0" });
  return out;
}

async function existing(check: BindCheck, path: string, message: string): Promise<Node> {
  try {
    return await check.namespace.walkPath(path, check.ctx);
  } catch (err) {
    if (err instanceof NotFoundError) throw new NotFoundError(message);
    if (err instanceof NineError) throw new InvalidError(`${message}: ${err.message}`);
    throw err;
  }
}

async function exists(check: BindCheck, path: string): Promise<boolean> {
  try {
    await check.namespace.walkPath(path, check.ctx);
    return true;
  } catch (err) {
    if (err instanceof NineError) return false;
    throw err;
  }
}
