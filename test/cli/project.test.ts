/**
 * Appliance projects through the real `cohesix` program, from this
 * checkout: `cohesix new` scaffolds, `cohesix test` runs the example's
 * tests, and `cohesix serve --project DIR` (host board) serves the
 * project's workers, which the queen spawns by name with the config's
 * default budget. The packed-package install is covered by
 * test/project/pack.e2e.test.ts.
 */
import { execa, type ResultPromise } from "execa";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { BIN, ROOT, cohesix, makeScratch, type Scratch } from "./helpers.ts";

let scratch: Scratch;
let project: string;

/** A second worker, as a user would write it: `{"frame":n}` lines. */
export const CAMERA = `import { runWorker } from "cohesix/worker";

await runWorker({ name: "camera", tick: async (_worker, n) => ({ frame: n }) });
`;

beforeAll(async () => {
  scratch = await makeScratch();
  project = join(scratch.dir, "my-appliance");
});
afterAll(async () => {
  await scratch.remove();
});

/** `cohesix serve` on 127.0.0.1:0 in `cwd`; resolves once READY. */
async function serveIn(cwd: string, args: readonly string[]): Promise<{ child: ResultPromise; pid: number; addr: string; stderr: () => string }> {
  const env = { ...process.env, ...scratch.env };
  delete env.COHESIX_ADDR;
  delete env.COHESIX_KEY;
  const child = execa("node", [BIN, "serve", "--listen", "127.0.0.1:0", "--state", join(scratch.dir, "state"), "--queen-pub", scratch.queenPub, ...args], {
    cwd,
    env,
    extendEnv: false,
    reject: false,
  });
  const pid = child.pid!;
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const addr = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (line.startsWith("READY ")) resolve(line.slice(6));
    });
    void child.then((r) => reject(new Error(`serve exited ${r.exitCode} before READY: ${err}`)));
    setTimeout(() => reject(new Error(`no READY within 60 s: ${err}`)), 60_000).unref();
  });
  return { child, pid, addr, stderr: () => err };
}

describe("an appliance project from this checkout", () => {
  test("cohesix new writes the project: package.json, config, example worker and test, README with two commands", async () => {
    const r = await cohesix(["new", project, "--cohesix", `file:${ROOT}`], { env: scratch.env });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^created .*my-appliance: \.gitignore README\.md cohesix\.config\.json package\.json test\/sensor\.test\.ts tsconfig\.json workers\/sensor-reading\.ts workers\/sensor\.ts/);
    const pkg = JSON.parse(await readFile(join(project, "package.json"), "utf8")) as { name: string; dependencies: Record<string, string> };
    expect(pkg.name).toBe("my-appliance");
    expect(pkg.dependencies.cohesix).toBe(`file:${ROOT}`);
    const readme = await readFile(join(project, "README.md"), "utf8");
    const fence = /^# my-appliance\n\n```sh\n(.*)\n(.*)\n```/.exec(readme);
    expect(fence?.[1]).toMatch(/^npm install && npm start /);
    expect(fence?.[2]).toMatch(/^npm install && npm test /);
    // What `npm install` would give it: this checkout as node_modules/cohesix.
    await mkdir(join(project, "node_modules"));
    await symlink(ROOT, join(project, "node_modules", "cohesix"));
  });

  test("cohesix new refuses a folder that is not empty", async () => {
    const r = await cohesix(["new", project], { env: scratch.env });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^invalid: new: .*my-appliance exists and is not empty: choose a new folder$/);
  });

  test("cohesix test runs the example worker's tests with node --test", async () => {
    const r = await execa("node", [BIN, "test"], { cwd: project, reject: false, timeout: 60_000 });
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/# pass 2/);
  });

  test("cohesix test exits 1 when a test fails, and cohesix new refuses a name npm would refuse", async () => {
    await writeFile(join(project, "test", "broken.test.ts"), 'import assert from "node:assert/strict";\nimport { test } from "node:test";\ntest("fails", () => assert.equal(1, 2));\n');
    try {
      const r = await execa("node", [BIN, "test"], { cwd: project, reject: false, timeout: 60_000 });
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/^io: test: tests failed \(node --test exited 1\)$/m);
    } finally {
      await rm(join(project, "test", "broken.test.ts"));
    }
    const bad = await cohesix(["new", join(scratch.dir, "My App!")], { env: scratch.env });
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toBe('invalid: new: "my app!" is not an npm package name (lowercase letters, digits, . _ -): choose another folder name or pass --name');
  });

  test("a bad config stops serve with the field named", async () => {
    const config = join(project, "cohesix.config.json");
    const good = await readFile(config, "utf8");
    await writeFile(config, good.replace('"restart": "never"', '"restart": "never", "colour": "red"'));
    try {
      const r = await cohesix(["serve", "--listen", "127.0.0.1:0", "--state", join(scratch.dir, "bad"), "--project", project], { env: scratch.env });
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toBe("invalid: cohesix.config.json: workers[0].colour: unknown field (known: budget, entry, name, required, restart, role)");
    } finally {
      await writeFile(config, good);
    }
  });

  test("the host board serves the project's workers: the queen spawns both by name and reads their telemetry", async () => {
    await writeFile(join(project, "workers", "camera.ts"), CAMERA);
    const config = JSON.parse(await readFile(join(project, "cohesix.config.json"), "utf8")) as { workers: unknown[] };
    config.workers.push({ name: "camera", entry: "workers/camera.ts", budget: { ticks: 3 } });
    await writeFile(join(project, "cohesix.config.json"), `${JSON.stringify(config, null, 2)}\n`);

    // In the project folder, serve finds cohesix.config.json by itself.
    const served = await serveIn(project, []);
    const env = { ...scratch.env, COHESIX_ADDR: served.addr, COHESIX_KEY: scratch.queenKey };
    try {
      expect(served.stderr()).toContain("workers camera, gpu, heartbeat, inference, sensor");
      expect(existsSync(join(project, ".cohesix", "host", "workers", "camera.mjs"))).toBe(true);
      const boot = await cohesix(["cat", "/proc/boot"], { env });
      expect(boot.stdout).toMatch(/workers=camera,gpu,heartbeat,inference,sensor/);

      const s1 = await cohesix(["ctl", '{"spawn":"sensor"}'], { env });
      expect(s1.stdout, s1.stderr).toBe("worker-1");
      const s2 = await cohesix(["ctl", '{"spawn":"camera"}'], { env });
      expect(s2.stdout, s2.stderr).toBe("worker-2");

      // The camera's config budget is 3 ticks: three frames, then it is revoked.
      const frames = await waitFor(async () => {
        const t = await cohesix(["cat", "/worker/worker-2/telemetry"], { env });
        const lines = t.stdout.trim().split("\n").filter(Boolean);
        return lines.length >= 3 ? lines : undefined;
      });
      expect(frames.slice(0, 3).map((l) => JSON.parse(l))).toEqual([{ frame: 1 }, { frame: 2 }, { frame: 3 }]);
      const sensor = await waitFor(async () => {
        const t = await cohesix(["cat", "/worker/worker-1/telemetry"], { env });
        return t.stdout.trim() ? t.stdout.trim().split("\n") : undefined;
      });
      expect(JSON.parse(sensor[0]!)).toMatchObject({ tick: 1, temp_c: expect.any(Number) });
      const log = await waitFor(async () => {
        const l = await cohesix(["cat", "/log/queen.log"], { env });
        return /revoked worker-2: tick budget exhausted/.test(l.stdout) ? l.stdout : undefined;
      });
      expect(log).toMatch(/spawned worker-1 .*sensor/);

      const unknown = await cohesix(["ctl", '{"spawn":"toaster"}'], { env });
      expect(unknown.exitCode).toBe(1);
      expect(unknown.stderr).toBe('not found: no worker "toaster" in this image (known: camera, gpu, heartbeat, inference, sensor)');
    } finally {
      process.kill(served.pid, "SIGTERM");
      await served.child;
    }
  }, 180_000);
});

async function waitFor<T>(probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 250));
  }
}
