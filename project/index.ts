/**
 * project: appliance projects of one's own (DESIGN §11) — what `cohesix
 * new`, `cohesix test` and the build commands need to work from a user's
 * folder instead of this repository.
 *
 * - `config.ts` — {@link loadProject}: `cohesix.config.json` checked
 *   against the shipped schema (`schema.ts`, a checker for the subset the
 *   schema uses) and the disk; every error names its field.
 * - `programs.ts` — the project's workers as spawnable programs: bundled
 *   for the host board ({@link bundleForHost}), or entries for the image.
 * - `host-files.ts` — {@link placeForHost}: the project's `files` under
 *   the host board's root folder (workers reach it as `COHESIX_ROOT`).
 * - `scaffold.ts` — {@link newProject} from `templates/app/`.
 * - `test-runner.ts` — {@link runProjectTests}: a project's TypeScript
 *   tests under `node --test`.
 *
 * @example
 * ```ts
 * import { loadProject, bundleForHost } from "../project/index.ts";
 * const project = loadProject(process.cwd());
 * const programs = await bundleForHost(project); // { sensor: { entry: "…/.cohesix/host/workers/sensor.mjs", role: "worker-sensor", … } }
 * ```
 * @module
 */
export {
  CONFIG_FILE,
  SCHEMA_PATH,
  configSchema,
  loadProject,
  parseProject,
  type LoadProjectOptions,
  type ProjectBudget,
  type ProjectConfig,
  type ProjectFile,
  type ProjectHealth,
  type ProjectWorker,
} from "./config.ts";
export { readSchema, validate, type SchemaNode } from "./schema.ts";
export { bundleForHost, projectPrograms, workerSources, type BundleForHostOptions, type ProjectProgram } from "./programs.ts";
export { placeForHost, type PlaceForHostOptions } from "./host-files.ts";
export { newProject, type NewProject, type NewProjectOptions } from "./scaffold.ts";
export { runProjectTests, type RunTestsOptions } from "./test-runner.ts";
