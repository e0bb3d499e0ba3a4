/**
 * The worker programs a root task can spawn by kind: where each bundled
 * entry lives in the installed package and which role its ticket names.
 * Paths resolve relative to the installed `cohesix` package (found by
 * walking up from this module), never to the current directory.
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
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

const PACKAGE_NAME = "cohesix";
let cachedRoot: string | undefined;

/**
 * The root folder of the installed `cohesix` package: the nearest folder
 * above `from` (default: this module, or the bundle it was built into)
 * whose package.json is named `cohesix`. Throws NotFoundError when there
 * is none.
 *
 * @example
 * ```ts
 * join(packageRoot(), "boards", "host.json");
 * ```
 */
export function packageRoot(from?: string | URL): string {
  if (from === undefined && cachedRoot !== undefined) return cachedRoot;
  const start = from === undefined ? import.meta.url : from;
  let dir = typeof start === "string" && !start.startsWith("file:") ? resolve(start) : dirname(fileURLToPath(start));
  for (;;) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest) && manifestName(manifest) === PACKAGE_NAME) {
      if (from === undefined) cachedRoot = dir;
      return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new NotFoundError(`package root: no package.json named "${PACKAGE_NAME}" above ${String(start)}`);
    dir = parent;
  }
}

function manifestName(path: string): string | undefined {
  try {
    const parsed: unknown = JSON.parse(readFileSync(path, "utf8"));
    if (typeof parsed === "object" && parsed !== null && "name" in parsed && typeof parsed.name === "string") return parsed.name;
  } catch {
    // an unreadable manifest is not ours
  }
  return undefined;
}

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
