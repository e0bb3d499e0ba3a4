/**
 * A project's workers as programs the root task spawns by name: bundled
 * with esbuild for the host board (npm dependencies stay in the project's
 * node_modules, where Node finds them), and described for the image (the
 * image builder bundles the same entries with everything inside).
 * @module
 */
import { build, type BuildOptions } from "esbuild";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { InvalidError } from "../nine-door/index.ts";
import type { ProjectBudget, ProjectConfig } from "./config.ts";

/** A spawnable program: entry (absolute, or relative to the package root), ticket role, defaults. */
export interface ProjectProgram {
  readonly entry: string;
  readonly role: string;
  readonly budget?: ProjectBudget;
  readonly restart?: boolean;
}

/**
 * The project's workers as programs whose entries are `entryOf(name)`.
 *
 * @example
 * ```ts
 * projectPrograms(project, (name) => `dist/workers/${name}.mjs`);
 * // { camera: { entry: "dist/workers/camera.mjs", role: "worker-camera", budget: { ticks: 100 }, restart: false } }
 * ```
 */
export function projectPrograms(project: ProjectConfig, entryOf: (name: string) => string): Record<string, ProjectProgram> {
  const out: Record<string, ProjectProgram> = {};
  for (const w of project.workers) out[w.name] = { entry: entryOf(w.name), role: w.ticketRole, budget: w.budget, restart: w.restart };
  return out;
}

/**
 * The project's worker entries by name, for the image builder's bundler.
 *
 * @example
 * ```ts
 * workerSources(project); // { camera: "/home/me/app/workers/camera.ts" }
 * ```
 */
export function workerSources(project: ProjectConfig): Record<string, string> {
  return Object.fromEntries(project.workers.map((w) => [w.name, w.entry]));
}

/**
 * How a project's TypeScript is bundled to run under the host's Node (its
 * workers on the host board, its tests): ES modules for Node 20, npm
 * packages left as imports (they resolve from the project's node_modules),
 * inline source maps so stack traces name the project's files.
 */
export const HOST_BUNDLE_OPTIONS = {
  outExtension: { ".js": ".mjs" },
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  packages: "external",
  sourcemap: "inline",
  logLevel: "silent",
} as const satisfies BuildOptions;

/** Options of {@link bundleForHost}. */
export interface BundleForHostOptions {
  /** Output folder; default `<project>/.cohesix/host/workers`. */
  readonly outDir?: string;
}

/**
 * Bundles the project's workers for this machine's Node (the host board):
 * `<outDir>/<name>.mjs`, with npm packages left as imports that resolve
 * from the project's node_modules. Returns the programs to serve.
 *
 * @example
 * ```ts
 * const programs = await bundleForHost(loadProject("."));
 * await serveAppliance({ …, programs: { ...BUILTIN_WORKERS, ...programs } });
 * ```
 */
export async function bundleForHost(project: ProjectConfig, options: BundleForHostOptions = {}): Promise<Record<string, ProjectProgram>> {
  const outDir = resolve(options.outDir ?? join(project.dir, ".cohesix", "host", "workers"));
  if (project.workers.length === 0) return {};
  await mkdir(outDir, { recursive: true });
  try {
    await build({
      absWorkingDir: project.dir,
      entryPoints: workerSources(project),
      outdir: outDir,
      ...HOST_BUNDLE_OPTIONS,
    });
  } catch (err) {
    throw new InvalidError(`bundling the project's workers for the host: ${(err as Error).message}`);
  }
  return projectPrograms(project, (name) => join(outDir, `${name}.mjs`));
}
