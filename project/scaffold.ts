/**
 * `cohesix new DIR`: a project of one's own, from the template shipped in
 * the package (`templates/app/`): package.json depending on cohesix,
 * cohesix.config.json, an example worker with its test, tsconfig.json and
 * a README that opens with the project's two commands.
 *
 * Template files are copied as they are, except: `{{name}}` and
 * `{{cohesix}}` are replaced in text, `*.tmpl` loses its suffix and
 * `gitignore` becomes `.gitignore` (npm leaves dot files out of packages).
 * @module
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { basename, join, relative, resolve } from "node:path";
import { InvalidError } from "../nine-door/index.ts";
import { packageRoot } from "../boards/index.ts";

/** Options of {@link newProject}. */
export interface NewProjectOptions {
  /** The package name; default the folder's name. */
  readonly name?: string;
  /** The version spec of the cohesix dependency; default `^<this version>`. */
  readonly cohesix?: string;
  /** The template folder; default the package's `templates/app`. */
  readonly template?: string;
}

/** What {@link newProject} wrote. */
export interface NewProject {
  readonly dir: string;
  readonly name: string;
  /** Files written, relative to `dir`, sorted. */
  readonly files: readonly string[];
}

const NPM_NAME = /^(@[a-z0-9][a-z0-9._-]*\/)?[a-z0-9][a-z0-9._-]{0,213}$/;

/**
 * Writes a new project into `dir`, which must not exist or be empty.
 *
 * @example
 * ```ts
 * const made = await newProject("my-appliance");
 * made.files; // [".gitignore", "README.md", "cohesix.config.json", "package.json", "test/sensor.test.ts", …]
 * ```
 */
export async function newProject(dir: string, options: NewProjectOptions = {}): Promise<NewProject> {
  const target = resolve(dir);
  const name = options.name ?? basename(target).toLowerCase();
  if (!NPM_NAME.test(name)) {
    throw new InvalidError(`new: ${JSON.stringify(name)} is not an npm package name (lowercase letters, digits, . _ -): choose another folder name or pass --name`);
  }
  if (existsSync(target) && (await readdir(target)).length > 0) {
    throw new InvalidError(`new: ${target} exists and is not empty: choose a new folder`);
  }
  const root = packageRoot();
  const template = options.template ?? join(root, "templates", "app");
  if (!existsSync(template)) throw new InvalidError(`new: the project template ${template} is missing from the cohesix package`);
  const manifest = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as { version?: string };
  const values: Record<string, string> = { name, cohesix: options.cohesix ?? `^${manifest.version ?? "0.1.0"}` };
  const files: string[] = [];
  for (const src of await walk(template)) {
    let rel = relative(template, src);
    if (rel.endsWith(".tmpl")) rel = rel.slice(0, -".tmpl".length);
    if (basename(rel) === "gitignore") rel = join(rel, "..", ".gitignore");
    const dest = join(target, rel);
    await mkdir(join(dest, ".."), { recursive: true });
    const text = (await readFile(src, "utf8")).replace(/\{\{(name|cohesix)\}\}/g, (_m, key: string) => values[key]!);
    await writeFile(dest, text);
    files.push(rel.split("\\").join("/"));
  }
  return { dir: target, name, files: files.sort() };
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, d.name);
    if (d.isDirectory()) out.push(...(await walk(p)));
    else if (d.isFile()) out.push(p);
  }
  return out.sort();
}
