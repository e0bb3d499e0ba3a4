/**
 * `cohesix test`: runs a project's `test/**\/*.test.ts` (and `.mts`, `.js`,
 * `.mjs`) with Node's own test runner. esbuild turns each file into an ES
 * module under `.cohesix/test/` first (npm packages stay imports that
 * resolve from the project's node_modules), so a project needs no test
 * framework and no TypeScript loader.
 * @module
 */
import { build } from "esbuild";
import { execa } from "execa";
import { existsSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { NineError, NotFoundError } from "../nine-door/index.ts";
import { HOST_BUNDLE_OPTIONS } from "./programs.ts";

const TEST_FILE = /\.test\.(ts|mts|js|mjs)$/;

/** Options of {@link runProjectTests}. */
export interface RunTestsOptions {
  /** Lines of progress; the test runner's own output goes to stdout/stderr. */
  readonly say?: (line: string) => void;
  /** Pipe the runner's output here instead of inheriting stdio (tests). */
  readonly output?: (text: string) => void;
}

/**
 * Bundles and runs the project's tests; resolves with the number of test
 * files, throws `io: tests failed` when any fails.
 *
 * @example
 * ```ts
 * await runProjectTests("/home/me/my-appliance"); // 1
 * ```
 */
export async function runProjectTests(dir: string, options: RunTestsOptions = {}): Promise<number> {
  const root = resolve(dir);
  const testDir = join(root, "test");
  const files = existsSync(testDir) ? (await walk(testDir)).filter((f) => TEST_FILE.test(f)) : [];
  if (files.length === 0) throw new NotFoundError(`test: no test/**/*.test.ts files in ${root}`);
  const outDir = join(root, ".cohesix", "test");
  await rm(outDir, { recursive: true, force: true });
  const entryPoints = Object.fromEntries(files.map((f) => [relative(testDir, f).replace(/\.(ts|mts|js|mjs)$/, ""), f]));
  await build({
    absWorkingDir: root,
    entryPoints,
    outdir: outDir,
    ...HOST_BUNDLE_OPTIONS,
  }).catch((err: Error) => {
    throw new NineError("invalid", `test: esbuild failed: ${err.message}`);
  });
  const built = Object.keys(entryPoints).map((name) => join(outDir, `${name}.mjs`));
  options.say?.(`test: ${files.length} file(s)`);
  const run = await execa(process.execPath, ["--test", "--enable-source-maps", ...built], {
    cwd: root,
    reject: false,
    ...(options.output ? { all: true } : { stdio: "inherit" }),
  });
  if (options.output && typeof run.all === "string") options.output(run.all);
  if (run.exitCode !== 0) throw new NineError("io", `test: tests failed (node --test exited ${run.exitCode ?? run.signal})`);
  return files.length;
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, d.name);
    if (d.isDirectory() && d.name !== "node_modules") out.push(...(await walk(p)));
    else if (d.isFile()) out.push(p);
  }
  return out.sort();
}
