/**
 * Where the installed `cohesix` package lives. Boards, pins, schemas,
 * templates and the bundled programs all resolve relative to it (found by
 * walking up from this module, or the bundle it was built into), never to
 * the current directory, so the CLI works as a dependency of another
 * project and through npx.
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { NotFoundError } from "../nine-door/index.ts";

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
