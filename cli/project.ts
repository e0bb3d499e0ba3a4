/**
 * The project commands — `new` and `test` — and how the other commands
 * find the project they run in: `--project DIR`, else the current folder
 * when it holds a `cohesix.config.json`.
 * @module
 */
import { existsSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { CONFIG_FILE, loadProject, newProject, runProjectTests, type ProjectConfig, type ProjectHealth } from "../project/index.ts";
import type { ExtraFile, ImageFleet, ImageProgram } from "../rootfs/index.ts";
import { str, UsageError, type Parsed } from "./args.ts";

type Out = (text: string | Uint8Array) => void;
interface Io {
  readonly out: Out;
  readonly err: (text: string) => void;
  readonly env: NodeJS.ProcessEnv;
}

/**
 * The project a command runs in: `--project DIR` (which must hold a
 * config), else the current folder when it holds one, else none.
 *
 * @example
 * ```ts
 * projectOf(parse(["--project", "my-appliance"], { project: { type: "string" } }))?.workers;
 * ```
 */
export function projectOf(p: Parsed, cwd = process.cwd()): ProjectConfig | undefined {
  const given = str(p, "project");
  if (given !== undefined) return loadProject(resolve(cwd, given));
  return existsSync(join(cwd, CONFIG_FILE)) ? loadProject(cwd) : undefined;
}

/**
 * What a project adds to an image: its workers (bundled from their
 * sources) and its extra files.
 *
 * @example
 * ```ts
 * imageInputsOf(project).programs; // { sensor: { source: "/…/workers/sensor.ts", role: "worker-sensor", budget: {…}, restart: false } }
 * ```
 */
export function imageInputsOf(project: ProjectConfig): { programs: Record<string, ImageProgram>; extra: ExtraFile[]; health?: ProjectHealth; fleet?: ImageFleet } {
  const programs: Record<string, ImageProgram> = {};
  for (const w of project.workers) programs[w.name] = { source: w.entry, role: w.ticketRole, budget: w.budget, restart: w.restart, ...(w.required ? { required: true } : {}) };
  const extra = project.files.map((f): ExtraFile => ({ src: f.src, dest: f.dest, ...(f.mode !== undefined ? { mode: f.mode } : {}) }));
  return { programs, extra, ...(project.health ? { health: project.health } : {}), ...(project.fleet ? { fleet: project.fleet } : {}) };
}

/**
 * `new DIR [--name NAME] [--cohesix SPEC]`: scaffolds a project and says
 * what to do next.
 *
 * @example
 * ```ts
 * await main(["new", "my-appliance"], io); // "created my-appliance: …"
 * ```
 */
export async function newCommand(p: Parsed, io: Io): Promise<void> {
  const dir = p.positionals[0]!;
  if (dir.startsWith("-")) throw new UsageError(`expected a folder, got ${JSON.stringify(dir)}`);
  const name = str(p, "name");
  const given = str(p, "cohesix");
  const spec = given === undefined ? undefined : dependencySpec(given, resolve(dir));
  const made = await newProject(dir, { ...(name !== undefined ? { name } : {}), ...(spec !== undefined ? { cohesix: spec } : {}) });
  const shown = relative(process.cwd(), made.dir) || ".";
  io.out(
    [
      `created ${shown}: ${made.files.join(" ")}`,
      "",
      `  cd ${shown}`,
      "  npm install && npm test     # type-check and test the example worker",
      "  npm start                   # build the image with your workers and boot it (npx cohesix up)",
      "",
    ].join("\n"),
  );
}

/**
 * The `cohesix` dependency as the new project's package.json must say it:
 * a path typed relative to the current folder (`./cohesix-0.1.0.tgz`,
 * `../cohesix`, `file:./x.tgz`) becomes a `file:` path relative to the
 * project, as `npm install PATH` would write it; registry specs (`^0.1.0`)
 * and absolute paths stay as they are.
 *
 * @example
 * ```ts
 * dependencySpec("./cohesix-0.1.0.tgz", "/home/me/src/my-appliance"); // with cwd /home/me/src: "file:../cohesix-0.1.0.tgz"
 * ```
 */
export function dependencySpec(spec: string, projectDir: string, cwd = process.cwd()): string {
  const path = spec.startsWith("file:") ? spec.slice("file:".length) : spec;
  const relativePath = path.startsWith("./") || path.startsWith("../") || path === "." || path === "..";
  if (!relativePath) return spec;
  const target = relative(projectDir, resolve(cwd, path)) || ".";
  return `file:${target.startsWith(".") ? target : `./${target}`}`;
}

/**
 * `test [--project DIR]`: runs the project's tests with `node --test`.
 * Outside a project (no `cohesix.config.json` in DIR) it refuses with one
 * usage line instead of running whatever `test/` folder is there.
 *
 * @example
 * ```ts
 * await main(["test"], io);
 * ```
 */
export async function testCommand(p: Parsed, io: Io): Promise<void> {
  const dir = resolve(str(p, "project", ".")!);
  if (!existsSync(join(dir, CONFIG_FILE))) {
    throw new UsageError(`test needs an appliance project: no ${CONFIG_FILE} in ${dir} (run it in a project folder, give --project DIR, or make one with \`cohesix new DIR\`)`);
  }
  await runProjectTests(dir, { say: (line) => io.err(`${line}\n`) });
}
