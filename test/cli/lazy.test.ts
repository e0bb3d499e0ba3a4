/**
 * Each verb loads only what it needs: the built entry (dist/cohesix.mjs)
 * imports no package at all, every module the verb table loads lazily is a
 * bundle of its own in dist/cli/, and the data verbs' bundles import neither
 * esbuild, execa, serialport nor sharp: from the build's metafile, and from
 * the modules a real `cohesix ls` resolves. Timings are in `npm run bench -- cli`.
 */
import { execa } from "execa";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { BIN, ROOT, makeScratch, type Scratch } from "./helpers.ts";

interface Meta {
  outputs: Record<string, { bytes: number; imports: { path: string; kind: string; external?: boolean }[] }>;
}

const HEAVY = ["esbuild", "execa", "serialport", "sharp"];
const DATA_VERBS = ["remote", "workers", "status", "shell"];
let meta: Meta;

beforeAll(() => {
  meta = JSON.parse(readFileSync(join(ROOT, "dist", "cli-meta.json"), "utf8")) as Meta;
});

/** The packages a bundle imports statically. */
function packagesOf(output: string): string[] {
  const o = meta.outputs[output];
  expect(o, output).toBeDefined();
  return o!.imports.filter((i) => i.external && i.kind === "import-statement" && !i.path.startsWith("node:") && !i.path.startsWith(".")).map((i) => i.path);
}

describe("the CLI's bundles", () => {
  test("the entry imports no package; its verbs are loaded with import() from dist/cli/", () => {
    expect(packagesOf("dist/cohesix.mjs")).toEqual([]);
    const lazy = meta.outputs["dist/cohesix.mjs"]!.imports.filter((i) => i.kind === "dynamic-import").map((i) => i.path);
    expect(lazy.length).toBeGreaterThan(5);
    for (const path of lazy) expect(existsSync(join(ROOT, "dist", path)), path).toBe(true);
  });

  test("the verb table's every lazy module is built, and the data verbs' bundles import none of esbuild, execa, serialport, sharp", () => {
    const verbs = readFileSync(join(ROOT, "cli", "verbs.ts"), "utf8");
    const modules = [...new Set([...verbs.matchAll(/import\("\.\/([a-z0-9-]+)\.ts"\)/g)].map((m) => m[1]!))].filter((m) => m !== "main");
    for (const m of DATA_VERBS) expect(modules).toContain(m);
    for (const m of modules) expect(meta.outputs[`dist/cli/${m}.mjs`], m).toBeDefined();
    for (const m of DATA_VERBS) for (const p of packagesOf(`dist/cli/${m}.mjs`)) expect(HEAVY, `${m} imports ${p}`).not.toContain(p);
    // The check has teeth: the image verbs do load them.
    expect(packagesOf("dist/cli/vm.mjs")).toEqual(expect.arrayContaining(["esbuild", "execa"]));
  });
});

describe("a real cohesix ls", () => {
  let scratch: Scratch;
  let hooks: string;
  beforeAll(async () => {
    scratch = await makeScratch();
    hooks = await mkdtemp(join(tmpdir(), "cohesix-hooks-"));
    await writeFile(join(hooks, "register.mjs"), `import { register } from "node:module";\nregister("./hooks.mjs", import.meta.url);\n`);
    await writeFile(
      join(hooks, "hooks.mjs"),
      `import { appendFileSync } from "node:fs";\nexport async function resolve(specifier, context, next) {\n  const r = await next(specifier, context);\n  appendFileSync(process.env.COHESIX_RESOLVED, r.url + "\\n");\n  return r;\n}\n`,
    );
  });
  afterAll(async () => {
    await scratch?.remove();
    await rm(hooks, { recursive: true, force: true });
  });

  test("resolves the ls bundle and no heavy package", async () => {
    const log = join(hooks, "resolved.txt");
    await writeFile(log, "");
    const r = await execa("node", ["--import", join(hooks, "register.mjs"), BIN, "ls", "/", "--addr", "tcp!127.0.0.1!1", "--key", scratch.queenKey, "--timeout", "2"], {
      cwd: ROOT,
      env: { ...scratch.env, COHESIX_RESOLVED: log },
      reject: false,
      timeout: 30_000,
    });
    expect(r.exitCode, r.stderr).toBe(1); // nobody listens on port 1
    const resolved = (await readFile(log, "utf8")).split("\n").filter(Boolean);
    expect(resolved.some((u) => u.endsWith("/dist/cli/remote.mjs"))).toBe(true);
    for (const name of HEAVY) expect(resolved.filter((u) => u.includes(`/node_modules/${name}/`)), name).toEqual([]);
    expect(resolved.filter((u) => /\/dist\/cli\/(vm|image|flash|project|local)\.mjs$/.test(u))).toEqual([]);
  });
});
