/**
 * The namespace tree of DESIGN §5: `/proc` (boot banner, lifecycle,
 * sessions, workers, state and the log's counters, memory), `/queen`
 * (`ctl`, `ctr`, `lifecycle/ctl`), `/log`, `/worker` and `/gpu`. The tree
 * only shows: each file reads its text from the sources it is given once,
 * at boot, and each ctl file hands its writes to the control pipeline.
 * `/update/` (queen only) is added by the appliance when it runs from an A/B
 * boot partition (see `update/update-files.ts`).
 * @module
 */
import { CtlFile, Directory, GeneratedFile, type CtlHandler, type NineServer, type Node } from "../nine-door/index.ts";
import type { ApplianceState, LifecycleState } from "./state.ts";

/** The commit log's counters as `/proc/state` shows them. */
export interface LogCounters {
  readonly appends: number;
  readonly fsyncs: number;
  readonly recordsPerFsync: number;
  readonly head: number;
  /** Why the log cannot write now, or undefined. */
  readonly failure: string | undefined;
}

/** Where the tree's files read from and where its ctl files write to. */
export interface TreeSources {
  /** The `/proc/boot` text. */
  banner(): string;
  lifecycle(): { readonly state: LifecycleState; readonly reason: string; readonly since: number };
  readonly server: NineServer;
  /** The `/proc/workers` text. */
  workers(): string;
  /** The durable state and its seq. */
  snapshot(): { readonly seq: number; readonly state: ApplianceState };
  log(): LogCounters;
  /** The last accepted signed-ctl counter (`/queen/ctr`). */
  ctr(): number;
  running(): number;
  maxWorkers(): number;
  readonly queenCtl: CtlHandler;
  readonly lifecycleCtl: CtlHandler;
  /** The directories other parts fill: `/gpu`, `/log`, `/worker`. */
  readonly gpu: Node;
  readonly logs: Node;
  readonly workerDir: Node;
}

/**
 * Builds the appliance's root directory.
 *
 * @example
 * ```ts
 * const root = buildTree({ banner: () => "cohesix 0.1.0\n", lifecycle, server, …, queenCtl, lifecycleCtl, gpu, logs, workerDir });
 * ```
 */
export function buildTree(src: TreeSources): Directory {
  const gen = (name: string, fn: () => string): Node => new GeneratedFile(name, () => fn(), { perm: 0o444 });
  const proc = new Directory("proc", {
    children: [
      gen("boot", () => src.banner()),
      new Directory("lifecycle", {
        children: [
          gen("state", () => `${src.lifecycle().state}\n`),
          gen("reason", () => `${src.lifecycle().reason}\n`),
          gen("since", () => `${new Date(src.lifecycle().since).toISOString()}\n`),
        ],
      }),
      gen("sessions", () =>
        src.server.limitsLine() +
        src.server
          .sessionInfo()
          .map((s) => `id=${s.id} peer=${s.peer} dialect=${s.dialect} msize=${s.msize} fids=${s.fids} outstanding=${s.outstanding} callers=${s.callers.join(",") || "-"}\n`)
          .join(""),
      ),
      gen("workers", () => src.workers()),
      gen("state", () => {
        const l = src.log();
        const log = { appends: l.appends, fsyncs: l.fsyncs, records_per_fsync: Number(l.recordsPerFsync.toFixed(2)), head: l.head, ...(l.failure ? { failure: l.failure } : {}) };
        return `${JSON.stringify({ ...src.snapshot(), log })}\n`;
      }),
      gen("mem", () => {
        const m = process.memoryUsage();
        const c = process.cpuUsage();
        return `rss=${m.rss} heap_used=${m.heapUsed} heap_total=${m.heapTotal} external=${m.external} array_buffers=${m.arrayBuffers} workers=${src.running()} max_workers=${src.maxWorkers()} sessions=${src.server.sessions.length} cpu_user_us=${c.user} cpu_system_us=${c.system}\n`;
      }),
    ],
  });
  const queen = new Directory("queen", {
    children: [
      new CtlFile("ctl", src.queenCtl, { perm: 0o220 }),
      gen("ctr", () => `${src.ctr()}\n`),
      new Directory("lifecycle", { children: [new CtlFile("ctl", src.lifecycleCtl, { perm: 0o220 })] }),
    ],
  });
  return new Directory("/", { children: [src.gpu, src.logs, proc, queen, src.workerDir] });
}
