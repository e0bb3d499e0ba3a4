/**
 * The appliance's guard in front of the mounted GPU bridge: a thin wrapper
 * around the `RemoteMount` at `/gpu` that checks what workers write before
 * it is forwarded. The bridge trusts its one client (the root task), so the
 * root task keeps workers from speaking for each other:
 *
 * - a job descriptor written to `/gpu/<id>/job` by a worker must name that
 *   worker in its `worker` field (`permission:` otherwise), so no worker
 *   submits under another's lease;
 * - a worker may write only `RELEASE <its own id> <reason>` to
 *   `/gpu/<id>/ctl`: leases are granted by the root task alone;
 * - under `--policy signed-ctl` the queen writes nothing unsigned there
 *   either: `ctl` and `job` change the bridge's state, and the signed path
 *   to them is a spawn with a lease (or a kill) on `/queen/ctl`.
 *
 * It also turns a lost remote file (`closed: gpu: remote file lost …`,
 * `closed: gpu unmounted`) into `busy: gpu unavailable: …` for the caller,
 * because a worker reads `closed:` as its own revocation; the bridge being
 * away is transient. Cancellations (flush, revocation) keep their reason.
 *
 * Everything else — walks, lists, reads, qids, stat — passes through.
 * @module
 */
import {
  BusyError,
  ClosedError,
  PermissionError,
  type MaybePromise,
  type Node,
  type NodeStat,
  type OpenFile,
  type OpenFlags,
  type RequestContext,
} from "../nine-door/index.ts";
import { isWorkerRole } from "./policy.ts";

/** Options of {@link guardGpuMount}. */
export interface GpuGuardOptions {
  /** Told of each write the guard refuses (for the audit log). */
  readonly onRefused?: (caller: RequestContext["caller"], path: string, error: PermissionError) => void;
  /** The appliance runs `--policy signed-ctl`: the queen's unsigned writes to `ctl` and `job` are refused. */
  readonly signedCtl?: boolean;
}

/**
 * Wraps `mount` (the node served at `/gpu`) in the guard.
 *
 * @example
 * ```ts
 * const gpu = new RemoteMount("gpu", { dial, attach: { uname: "bridge", aname: ticket } });
 * root.add(guardGpuMount(gpu, { onRefused: (c, path, e) => audit(`refused ${c.subject} write ${path}: ${e.message}`) }));
 * ```
 */
export function guardGpuMount(mount: Node, options: GpuGuardOptions = {}): Node {
  return new Guarded(mount, [], options);
}

/**
 * Checks one write a worker makes below `/gpu`: `names` is the path below
 * the mount (`["GPU-0", "job"]`). Throws `permission:` when refused.
 *
 * @example
 * ```ts
 * checkGpuWrite({ role: "worker-gpu", subject: "worker-3" }, ["GPU-0", "job"], '{"worker":"worker-4",…}'); // throws
 * ```
 */
export function checkGpuWrite(caller: RequestContext["caller"], names: readonly string[], text: string, options: { readonly signedCtl?: boolean } = {}): void {
  if (names.length !== 2) return;
  const [gpu, file] = names as [string, string];
  if (!isWorkerRole(caller.role)) {
    if (options.signedCtl && caller.role !== ROOT_TASK_ROLE && (file === "ctl" || file === "job")) {
      throw new PermissionError(
        `under --policy signed-ctl /gpu/${gpu}/${file} takes no unsigned writes: leases are granted by signed spawn commands on /queen/ctl and ended by kill`,
      );
    }
    return;
  }
  if (file === "job") {
    let named: unknown;
    try {
      named = (JSON.parse(text) as { worker?: unknown }).worker;
    } catch {
      return; // not JSON: the bridge answers invalid:
    }
    if (named !== caller.subject) {
      throw new PermissionError(`job descriptor names worker ${JSON.stringify(named)}: ${caller.subject} may submit only its own jobs on ${gpu}`);
    }
  } else if (file === "ctl") {
    const [op, worker] = text.trim().split(/\s+/);
    if (op !== "RELEASE" || worker !== caller.subject) {
      throw new PermissionError(`${caller.subject} may only RELEASE its own lease on ${gpu}: leases are granted by the root task`);
    }
  }
}

/** The root task's own role: it speaks to the bridge for the appliance (leases at spawn). */
const ROOT_TASK_ROLE = "root-task";

/** A lost remote file or an unmounted mount, as the transient condition it is. */
function transient(err: unknown, ctx: RequestContext): unknown {
  if (ctx.signal.aborted) return err;
  if (err instanceof ClosedError) return new BusyError(`gpu unavailable: ${err.detail}`);
  return err;
}

function guardCall<T>(ctx: RequestContext, fn: () => MaybePromise<T>): MaybePromise<T> {
  let out: MaybePromise<T>;
  try {
    out = fn();
  } catch (err) {
    throw transient(err, ctx);
  }
  if (out instanceof Promise) return out.catch((err: unknown) => Promise.reject(transient(err, ctx)));
  return out;
}

class Guarded implements Node {
  readonly #inner: Node;
  readonly #names: readonly string[];
  readonly #options: GpuGuardOptions;

  constructor(inner: Node, names: readonly string[], options: GpuGuardOptions) {
    this.#inner = inner;
    this.#names = names;
    this.#options = options;
  }

  get name(): string {
    return this.#inner.name;
  }

  get mode(): number {
    return this.#inner.mode;
  }

  get qid() {
    return this.#inner.qid;
  }

  stat(): NodeStat {
    return this.#inner.stat();
  }

  walk(name: string, ctx: RequestContext): MaybePromise<Node> {
    const out = guardCall(ctx, () => this.#inner.walk(name, ctx));
    const wrap = (n: Node): Node => new Guarded(n, [...this.#names, name], this.#options);
    return out instanceof Promise ? out.then(wrap) : wrap(out);
  }

  list(ctx: RequestContext): MaybePromise<readonly Node[]> {
    const out = guardCall(ctx, () => this.#inner.list(ctx));
    const wrap = (ns: readonly Node[]): readonly Node[] => ns.map((n) => new Guarded(n, [...this.#names, n.name], this.#options));
    return out instanceof Promise ? out.then(wrap) : wrap(out);
  }

  open(flags: OpenFlags, ctx: RequestContext): MaybePromise<OpenFile> {
    const out = guardCall(ctx, () => this.#inner.open(flags, ctx));
    const wrap = (f: OpenFile): OpenFile => this.#file(f);
    return out instanceof Promise ? out.then(wrap) : wrap(out);
  }

  #file(inner: OpenFile): OpenFile {
    const names = this.#names;
    const file: OpenFile = {
      read: (offset, count, ctx) => guardCall(ctx, () => inner.read(offset, count, ctx)),
      write: (offset, data, ctx) => {
        if (isWorkerRole(ctx.caller.role) || this.#options.signedCtl) {
          try {
            checkGpuWrite(ctx.caller, names, Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8"), { signedCtl: this.#options.signedCtl ?? false });
          } catch (err) {
            if (err instanceof PermissionError) this.#options.onRefused?.(ctx.caller, `/gpu/${names.join("/")}`, err);
            throw err;
          }
        }
        return guardCall(ctx, () => inner.write(offset, data, ctx));
      },
      ...(inner.close ? { close: () => inner.close!() } : {}),
      ...(inner.iounit !== undefined ? { iounit: inner.iounit } : {}),
    };
    return file;
  }
}
