/**
 * `cohesix.config.json`: an appliance project's one config file (DESIGN
 * §11). It is checked against the JSON Schema shipped in the package
 * (`schemas/cohesix.config.schema.json`), then against the disk: entry
 * files, extra files and keys must exist, worker names must be unique and
 * must not shadow a built-in worker, the board must exist. Every problem
 * is one error naming the field:
 *
 * ```
 * invalid: cohesix.config.json: workers[1].budget.ticks: must be a positive integer, got 0
 * not found: cohesix.config.json: workers[0].entry: no file workers/camera.ts in /home/me/my-appliance
 * ```
 * @module
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { listBoards, packageRoot } from "../boards/index.ts";
import { InvalidError, NotFoundError } from "../nine-door/index.ts";
import { BUILTIN_WORKERS, type FleetSettings } from "../root-task/index.ts";
import { readSchema, validate, type SchemaNode } from "./schema.ts";

/** The config file's name in a project folder. */
export const CONFIG_FILE = "cohesix.config.json";

/** The schema's path inside the cohesix package. */
export const SCHEMA_PATH = "schemas/cohesix.config.schema.json";

/** A worker's default budget: any of the three counters. */
export interface ProjectBudget {
  readonly ticks?: number;
  readonly ops?: number;
  readonly ttl_s?: number;
}

/** One of the project's workers, as the config declares it. */
export interface ProjectWorker {
  /** What the queen spawns it by, e.g. `camera`. */
  readonly name: string;
  /** Absolute path of its main module. */
  readonly entry: string;
  /** `worker` or `gpu` (spawned with a lease, sees its `/gpu/<id>/`). */
  readonly role: "worker" | "gpu";
  /** The role its tickets name: `worker-<name>`, or `worker-gpu` for a GPU worker. */
  readonly ticketRole: string;
  /** Default budget of a spawn (the spawn's own fields win). */
  readonly budget: ProjectBudget;
  /** Restart when it exits or goes stale. */
  readonly restart: boolean;
  /** Started at boot; a try boot is confirmed only once it ran through the health window (absent: not required). */
  readonly required?: boolean;
}

/** How a try boot of an A/B update proves itself (see `root-task/slot-health.ts`). */
export interface ProjectHealth {
  /** Seconds required workers must run; default 10. */
  readonly windowS?: number;
  /** Seconds to a verdict; default 120. */
  readonly deadlineS?: number;
  /** A project worker that must exit 0. */
  readonly worker?: string;
}

/** An extra file for the image. */
export interface ProjectFile {
  /** Absolute path on the build host. */
  readonly src: string;
  /** Absolute guest path. */
  readonly dest: string;
  readonly mode?: number;
}

/** A loaded, checked project. */
export interface ProjectConfig {
  /** The project folder (absolute). */
  readonly dir: string;
  /** The config file (absolute). */
  readonly file: string;
  /** Board name, e.g. `aarch64-virt`, or `host`. */
  readonly board: string;
  readonly workers: readonly ProjectWorker[];
  readonly files: readonly ProjectFile[];
  /** The queen public key to bake in (absolute), when the config names one. */
  readonly queenPub?: string;
  /** The release private key (absolute), when the config names one. */
  readonly releaseKey?: string;
  readonly nineDoor: { readonly host: string; readonly port: number; readonly policy: "open" | "signed-ctl" };
  /** The fleet block (docs/fleet.md), its files made absolute; absent without one. */
  readonly fleet?: ProjectFleet;
  /** The try boot's health check, when the config has one. */
  readonly health?: ProjectHealth;
}

/**
 * The `fleet` block of cohesix.config.json: the root task's `FleetSettings`
 * (one declaration of the fields), less what only a guest's baked files
 * set (`passwordFile`) and the link's in-flight window. `ca`, `cert`, `key`
 * are absolute host paths.
 */
export type ProjectFleet = Omit<FleetSettings, "passwordFile" | "window">;

let cachedSchema: SchemaNode | undefined;

/**
 * The config schema shipped in the package, read and checked once.
 *
 * @example
 * ```ts
 * configSchema().required; // ["board", "workers"]
 * ```
 */
export function configSchema(): SchemaNode {
  if (!cachedSchema) {
    const path = join(packageRoot(), SCHEMA_PATH);
    cachedSchema = readSchema(JSON.parse(readFileSync(path, "utf8")) as unknown);
  }
  return cachedSchema;
}

/** Options of {@link loadProject}. */
export interface LoadProjectOptions {
  /** Boards to accept besides `host`; default the installed package's boards. */
  readonly boards?: readonly string[];
}

/**
 * Reads and checks `DIR/cohesix.config.json`.
 *
 * @example
 * ```ts
 * const project = loadProject("/home/me/my-appliance");
 * project.workers.map((w) => w.name); // ["sensor"]
 * ```
 */
export function loadProject(dir: string, options: LoadProjectOptions = {}): ProjectConfig {
  const root = resolve(dir);
  const file = join(root, CONFIG_FILE);
  if (!existsSync(file)) throw new NotFoundError(`no ${CONFIG_FILE} in ${root}: make a project with \`cohesix new DIR\``);
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new InvalidError(`${CONFIG_FILE}: not valid JSON: ${(err as Error).message}`);
  }
  return parseProject(value, { ...options, dir: root });
}

/**
 * Checks a parsed config against the schema and the project folder.
 *
 * @example
 * ```ts
 * parseProject({ board: "host", workers: [] }, { dir: "/tmp/p" }).nineDoor; // { host: "127.0.0.1", port: 5640, policy: "open" }
 * ```
 */
export function parseProject(value: unknown, options: LoadProjectOptions & { readonly dir: string }): ProjectConfig {
  validate(value, configSchema(), CONFIG_FILE);
  // The schema guarantees the shapes below.
  const c = value as RawConfig;
  const dir = resolve(options.dir);
  const invalid = (field: string, what: string): never => {
    throw new InvalidError(`${CONFIG_FILE}: ${field}: ${what}`);
  };
  const file = (field: string, rel: string, kind = "file"): string => {
    const abs = resolve(dir, rel);
    if (!existsSync(abs) || !statSync(abs).isFile()) throw new NotFoundError(`${CONFIG_FILE}: ${field}: no ${kind} ${rel} in ${dir}`);
    return abs;
  };

  const boards = options.boards ?? listBoards();
  if (c.board !== "host" && !boards.includes(c.board)) invalid("board", `no board ${JSON.stringify(c.board)} (known: ${["host", ...boards].sort().join(", ")})`);

  const seen = new Map<string, number>();
  const workers = c.workers.map((w, i): ProjectWorker => {
    const at = `workers[${i}]`;
    const first = seen.get(w.name);
    if (first !== undefined) invalid(`${at}.name`, `duplicate worker name ${JSON.stringify(w.name)} (also workers[${first}].name)`);
    seen.set(w.name, i);
    if (Object.hasOwn(BUILTIN_WORKERS, w.name)) {
      invalid(`${at}.name`, `${JSON.stringify(w.name)} is a built-in worker (${Object.keys(BUILTIN_WORKERS).sort().join(", ")}): choose another name`);
    }
    const role = w.role ?? "worker";
    return {
      name: w.name,
      entry: file(`${at}.entry`, w.entry),
      role,
      ticketRole: role === "gpu" ? "worker-gpu" : `worker-${w.name}`,
      budget: { ...w.budget },
      restart: (w.restart ?? "never") === "always",
      ...(w.required === true ? { required: true } : {}),
    };
  });
  if (c.health?.worker !== undefined && !seen.has(c.health.worker)) {
    invalid("health.worker", `no worker ${JSON.stringify(c.health.worker)} in workers (known: ${[...seen.keys()].sort().join(", ") || "none"})`);
  }

  const dests = new Map<string, number>();
  const files = (c.files ?? []).map((f, i): ProjectFile => {
    const first = dests.get(f.dest);
    if (first !== undefined) invalid(`files[${i}].dest`, `${f.dest} is also files[${first}].dest`);
    dests.set(f.dest, i);
    return { src: file(`files[${i}].src`, f.src), dest: f.dest, ...(f.mode !== undefined ? { mode: f.mode } : {}) };
  });

  return {
    dir,
    file: join(dir, CONFIG_FILE),
    board: c.board,
    workers,
    files,
    ...(c.queenPub !== undefined ? { queenPub: file("queenPub", c.queenPub, "key file") } : {}),
    ...(c.releaseKey !== undefined ? { releaseKey: file("releaseKey", c.releaseKey, "key file") } : {}),
    nineDoor: { host: c.nineDoor?.host ?? "127.0.0.1", port: c.nineDoor?.port ?? 5640, policy: c.nineDoor?.policy ?? "open" },
    ...(c.fleet !== undefined
      ? {
          fleet: {
            ...c.fleet,
            ...(c.fleet.ca !== undefined ? { ca: file("fleet.ca", c.fleet.ca, "CA file") } : {}),
            ...(c.fleet.cert !== undefined ? { cert: file("fleet.cert", c.fleet.cert, "certificate file") } : {}),
            ...(c.fleet.key !== undefined ? { key: file("fleet.key", c.fleet.key, "key file") } : {}),
          },
        }
      : {}),
    ...(c.health !== undefined ? { health: { ...c.health } } : {}),
  };
}

/** The config as the schema shapes it. */
interface RawConfig {
  board: string;
  workers: { name: string; entry: string; role?: "worker" | "gpu"; budget?: ProjectBudget; restart?: "never" | "always"; required?: boolean }[];
  health?: { windowS?: number; deadlineS?: number; worker?: string };
  files?: { src: string; dest: string; mode?: number }[];
  queenPub?: string;
  releaseKey?: string;
  nineDoor?: { host?: string; port?: number; policy?: "open" | "signed-ctl" };
  fleet?: ProjectFleet;
}
