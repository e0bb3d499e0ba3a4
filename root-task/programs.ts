/**
 * The worker programs a root task can spawn by kind: where each bundled
 * entry lives in the installed package and which role its ticket names.
 * Paths resolve relative to the installed `cohesix` package, never to the
 * current directory.
 * @module
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { packageRoot } from "../boards/index.ts";
import { NotFoundError } from "../nine-door/index.ts";

/** A spawnable worker program. */
export interface WorkerProgram {
  /** The kind the queen spawns it by, e.g. `heartbeat`. */
  readonly kind: string;
  /** Absolute path of the bundled entry (an ES module for `node`). */
  readonly entry: string;
  /** The role its tickets name, e.g. `worker-heartbeat`. */
  readonly role: string;
}

/**
 * The built-in programs: kind → entry (relative to the package root) and role.
 *
 * @example
 * ```ts
 * BUILTIN_WORKERS.heartbeat; // { entry: "dist/workers/heartbeat.mjs", role: "worker-heartbeat" }
 * BUILTIN_WORKERS.gpu;       // { entry: "dist/workers/gpu.mjs", role: "worker-gpu" } (spawned with a lease)
 * ```
 */
export const BUILTIN_WORKERS: Readonly<Record<string, { readonly entry: string; readonly role: string }>> = {
  heartbeat: { entry: "dist/workers/heartbeat.mjs", role: "worker-heartbeat" },
  gpu: { entry: "dist/workers/gpu.mjs", role: "worker-gpu" },
  inference: { entry: "dist/workers/inference.mjs", role: "worker-gpu" },
};

/** Options of {@link workerProgram}. */
export interface WorkerProgramOptions {
  /** Programs to choose from (kind → entry relative to `root`, role); default {@link BUILTIN_WORKERS}. */
  readonly programs?: Readonly<Record<string, { readonly entry: string; readonly role: string }>>;
  /** Folder the entries are relative to; default {@link packageRoot}. */
  readonly root?: string;
}

/**
 * The program of `kind`, with its entry as an absolute path. An unknown
 * kind answers `not found:` listing the known ones; a known kind whose
 * bundle is missing answers `not found:` naming the file to build.
 *
 * @example
 * ```ts
 * const { entry, role } = workerProgram("heartbeat");
 * // entry: "/…/node_modules/cohesix/dist/workers/heartbeat.mjs", role: "worker-heartbeat"
 * ```
 */
export function workerProgram(kind: string, options: WorkerProgramOptions = {}): WorkerProgram {
  const programs = options.programs ?? BUILTIN_WORKERS;
  const found = Object.hasOwn(programs, kind) ? programs[kind] : undefined;
  if (!found) {
    const known = Object.keys(programs).sort().join(", ") || "none";
    throw new NotFoundError(`no worker program ${JSON.stringify(kind)} (known: ${known})`);
  }
  const entry = resolve(options.root ?? packageRoot(), found.entry);
  if (!existsSync(entry)) {
    throw new NotFoundError(`worker program ${kind}: ${entry} is missing (run \`npm run build\` in the cohesix package)`);
  }
  return { kind, entry, role: found.role };
}
