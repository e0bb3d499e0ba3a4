/**
 * Namespace paths, in one place: the canonical form (`/a/b`, no `.`, `..`
 * resolved, no trailing `/`), a child or parent of a path, the names of a
 * path, and whether one path lies inside another. NineDoor's walks, the
 * root task's policy and binds, and the queen's command parser all use
 * these, so a path means the same thing to each of them.
 * @module
 */
import { InvalidError } from "../errors.ts";

/** Options of {@link normalisePath}. */
export interface NormaliseOptions {
  /**
   * The error message for a `..` that climbs above `/`; default
   * `path climbs above the root: <path>`.
   */
  readonly above?: (path: string) => string;
  /** Checks each name kept (e.g. `checkName`); throws to refuse it. */
  readonly checkName?: (name: string) => void;
}

/**
 * An absolute path in canonical form: one `/` between names, no `.`, `..`
 * resolved lexically, no trailing `/` (except the root). Throws
 * InvalidError for a relative path, a NUL byte, or `..` above the root.
 *
 * @example
 * ```ts
 * normalisePath("/worker//worker-3/./telemetry"); // "/worker/worker-3/telemetry"
 * normalisePath("/proc/../.."); // throws invalid: path climbs above the root: /proc/../..
 * ```
 */
export function normalisePath(path: string, options: NormaliseOptions = {}): string {
  if (!path.startsWith("/")) throw new InvalidError(`path is not absolute: ${JSON.stringify(path)}`);
  if (path.includes("\0")) throw new InvalidError(`path contains a NUL byte: ${JSON.stringify(path)}`);
  const names: string[] = [];
  for (const name of path.split("/")) {
    if (name === "" || name === ".") continue;
    if (name === "..") {
      if (names.length === 0) throw new InvalidError(options.above ? options.above(path) : `path climbs above the root: ${path}`);
      names.pop();
      continue;
    }
    options.checkName?.(name);
    names.push(name);
  }
  return `/${names.join("/")}`;
}

/**
 * The names of a path, root first; `[]` for `/`. Empty names (`//`) are
 * skipped; `.` and `..` are kept (normalise first to resolve them).
 *
 * @example
 * ```ts
 * pathNames("/worker/worker-1"); // ["worker", "worker-1"]
 * pathNames("/"); // []
 * ```
 */
export function pathNames(path: string): string[] {
  return path.split("/").filter(Boolean);
}

/**
 * The path of `name` below the canonical `path`; `..` goes up and is
 * refused above the root (`invalid: walk above the root`).
 *
 * @example
 * ```ts
 * childPath("/", "proc"); // "/proc"
 * childPath("/proc/boot", ".."); // "/proc"
 * ```
 */
export function childPath(path: string, name: string): string {
  if (name === "..") {
    if (path === "/") throw new InvalidError("walk above the root");
    return parentPath(path);
  }
  return path === "/" ? `/${name}` : `${path}/${name}`;
}

/**
 * The parent of a canonical path; the root is its own parent.
 *
 * @example
 * ```ts
 * parentPath("/worker/worker-1"); // "/worker"
 * parentPath("/proc"); // "/"
 * ```
 */
export function parentPath(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

/**
 * Whether the canonical `path` is `root` or lies inside it.
 *
 * @example
 * ```ts
 * isWithin("/worker/worker-1/ctl", "/worker"); // true
 * isWithin("/workers", "/worker"); // false
 * ```
 */
export function isWithin(path: string, root: string): boolean {
  return root === "/" || path === root || path.startsWith(`${root}/`);
}
