/**
 * `cohesix status [--json]`: what this folder runs. One row per board that
 * has a run folder or a built image under `.cohesix/`: whether it runs,
 * its PID and dial string, its lifecycle (`/proc/lifecycle/state`, read
 * over 9P as the queen with a short timeout; `unreachable` when that
 * fails) and how many workers run (`/proc/workers`).
 * @module
 */
import { readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { str, type Parsed } from "./args.ts";
import { runningAppliances, type RunEntry } from "./address.ts";
import { connectQueen } from "./remote.ts";
import type { Io } from "./verb.ts";


/** One board of this folder, as `status` reports it. */
export interface BoardStatus {
  readonly board: string;
  readonly kind: "vm" | "host";
  readonly running: boolean;
  readonly pid?: number;
  readonly dialString?: string;
  readonly startedAt?: string;
  /** `ONLINE`, `DRAINING`…; `unreachable` when the appliance did not answer; absent when not running. */
  readonly lifecycle?: string;
  /** Workers whose status is `running`; absent when not known. */
  readonly workers?: number;
  /** Why the lifecycle is `unreachable`. */
  readonly error?: string;
}

/** What `status --json` prints. */
export interface FolderStatus {
  readonly folder: string;
  readonly boards: BoardStatus[];
}

/** The default time `status` waits for each appliance, seconds. */
export const STATUS_TIMEOUT_S = 2;

function dirNames(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
  } catch {
    return [];
  }
}

/**
 * Counts `/proc/workers` records with `status=running`.
 *
 * @example
 * ```ts
 * runningWorkers("id=worker-1 kind=heartbeat status=running\nid=worker-2 kind=heartbeat status=killed\n"); // 1
 * ```
 */
export function runningWorkers(procWorkers: string): number {
  return procWorkers.split("\n").filter((line) => /(^| )status=running( |$)/.test(line)).length;
}

async function probe(entry: RunEntry, p: Parsed, env: NodeJS.ProcessEnv): Promise<Pick<BoardStatus, "lifecycle" | "workers" | "error">> {
  const values = { ...p.values, addr: entry.dialString, timeout: str(p, "timeout") ?? String(STATUS_TIMEOUT_S) };
  try {
    const { client, root } = await connectQueen({ values, positionals: [] }, env);
    try {
      const lifecycle = (await root.readText("proc/lifecycle/state")).trim();
      const workers = runningWorkers(await root.readText("proc/workers").catch(() => ""));
      return { lifecycle, workers };
    } finally {
      client.close();
    }
  } catch (err) {
    return { lifecycle: "unreachable", error: err instanceof Error ? err.message : String(err) };
  }
}

/**
 * The boards of the folder `cwd` (default the current one): those with a
 * run folder or an image under `.cohesix/`, running ones probed over 9P.
 *
 * @example
 * ```ts
 * const s = await folderStatus({ values: {}, positionals: [] }, process.env);
 * s.boards[0]; // { board: "aarch64-virt", kind: "vm", running: true, pid: 4242, dialString: "tcp!127.0.0.1!5640", lifecycle: "ONLINE", workers: 2 }
 * ```
 */
export async function folderStatus(p: Parsed, env: NodeJS.ProcessEnv, cwd = process.cwd()): Promise<FolderStatus> {
  const folder = resolve(cwd);
  const base = join(folder, ".cohesix");
  const running = new Map(runningAppliances(base).map((e) => [e.board, e]));
  const names = [...new Set([...dirNames(join(base, "run")), ...dirNames(join(base, "image")), ...running.keys()])].sort();
  const boards = await Promise.all(
    names.map(async (board): Promise<BoardStatus> => {
      const entry = running.get(board);
      const kind = board === "host" ? "host" : "vm";
      if (!entry) return { board, kind, running: false };
      return {
        board,
        kind,
        running: true,
        pid: entry.pid,
        dialString: entry.dialString,
        ...(entry.startedAt ? { startedAt: entry.startedAt } : {}),
        ...(await probe(entry, p, env)),
      };
    }),
  );
  return { folder, boards };
}

/**
 * The status as a table, one row per board, then the reasons of the
 * unreachable ones.
 *
 * @example
 * ```ts
 * formatStatus({ folder: "/p", boards: [{ board: "host", kind: "host", running: false }] });
 * // "BOARD  KIND  STATE    PID  ADDRESS  LIFECYCLE  WORKERS\nhost   host  stopped  -    -        -          -\n"
 * ```
 */
export function formatStatus(s: FolderStatus): string {
  if (s.boards.length === 0) return `${s.folder}: no VM or host board; start one with \`cohesix up\` (or \`cohesix up --board host\`)\n`;
  const rows = [["BOARD", "KIND", "STATE", "PID", "ADDRESS", "LIFECYCLE", "WORKERS"]];
  for (const b of s.boards) {
    rows.push([b.board, b.kind, b.running ? "running" : "stopped", b.pid !== undefined ? String(b.pid) : "-", b.dialString ?? "-", b.lifecycle ?? "-", b.workers !== undefined ? String(b.workers) : "-"]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  "));
  const notes = s.boards.filter((b) => b.error).map((b) => `${b.board}: ${b.error}`);
  return [...lines, ...notes].join("\n") + "\n";
}

/**
 * `status [--json]`: the boards, VMs and host boards of this folder with
 * PID, dial string, lifecycle and worker count. `--timeout S` bounds each
 * probe (default 2 s); `--key` is the queen key it probes with.
 *
 * @example
 * ```ts
 * await main(["status"], io);
 * // BOARD         KIND  STATE    PID   ADDRESS             LIFECYCLE  WORKERS
 * // aarch64-virt  vm    running  4242  tcp!127.0.0.1!5640  ONLINE     2
 * ```
 */
export async function status(p: Parsed, { env, out }: Io): Promise<void> {
  const s = await folderStatus(p, env);
  out(p.values.json === true ? `${JSON.stringify(s, null, 2)}\n` : formatStatus(s));
}
