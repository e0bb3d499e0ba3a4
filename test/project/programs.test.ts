import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { bundleForHost, newProject, parseProject, projectPrograms, workerSources } from "../../project/index.ts";

const dir = mkdtempSync(join(tmpdir(), "cohesix-programs-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function project(files: Record<string, string>, workers: unknown[]) {
  const root = mkdtempSync(join(dir, "p-"));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, ".."), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return parseProject({ board: "host", workers }, { dir: root, boards: [] });
}

describe("a project's workers as programs", () => {
  test("projectPrograms gives each worker its entry, ticket role, budget and restart policy", () => {
    const p = project({ "w/a.ts": "", "w/g.ts": "" }, [
      { name: "alpha", entry: "w/a.ts", budget: { ops: 9 }, restart: "always" },
      { name: "gamma", entry: "w/g.ts", role: "gpu" },
    ]);
    expect(projectPrograms(p, (n) => `dist/workers/${n}.mjs`)).toEqual({
      alpha: { entry: "dist/workers/alpha.mjs", role: "worker-alpha", budget: { ops: 9 }, restart: true },
      gamma: { entry: "dist/workers/gamma.mjs", role: "worker-gpu", budget: {}, restart: false },
    });
    expect(workerSources(p)).toEqual({ alpha: join(p.dir, "w/a.ts"), gamma: join(p.dir, "w/g.ts") });
  });

  test("bundleForHost writes one ES module per worker and leaves npm packages as imports", async () => {
    const p = project({ "w/a.ts": 'import { x } from "some-package";\nconst n: number = 1;\nconsole.log(x, n);\n' }, [{ name: "alpha", entry: "w/a.ts" }]);
    const programs = await bundleForHost(p);
    const out = join(p.dir, ".cohesix", "host", "workers", "alpha.mjs");
    expect(programs.alpha!.entry).toBe(out);
    const text = readFileSync(out, "utf8");
    expect(text).toMatch(/from "some-package"/);
    expect(text).not.toContain(": number");
  });

  test("bundleForHost refuses a worker that does not compile, naming the file", async () => {
    const p = project({ "w/a.ts": "export const = ;\n" }, [{ name: "alpha", entry: "w/a.ts" }]);
    await expect(bundleForHost(p)).rejects.toThrow(/^invalid: bundling the project's workers for the host: .*w\/a\.ts/s);
  });

  test("newProject refuses a non-empty folder and a name npm would refuse; substitutes the name and the dependency", async () => {
    const made = await newProject(join(dir, "fresh"), { cohesix: "file:../cohesix.tgz" });
    expect(made.name).toBe("fresh");
    expect(made.files).toContain(".gitignore");
    expect(made.files).not.toContain("package.json.tmpl");
    const pkg = JSON.parse(readFileSync(join(made.dir, "package.json"), "utf8")) as { name: string; dependencies: Record<string, string> };
    expect(pkg).toMatchObject({ name: "fresh", dependencies: { cohesix: "file:../cohesix.tgz" } });
    await expect(newProject(made.dir)).rejects.toThrow(/exists and is not empty/);
    await expect(newProject(join(dir, "ok"), { name: "Bad Name" })).rejects.toThrow(/"Bad Name" is not an npm package name/);
  });
});
