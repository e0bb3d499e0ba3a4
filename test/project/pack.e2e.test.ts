/**
 * The package as a user gets it: `npm pack` this checkout, scaffold a
 * project with the packed CLI's `cohesix new` (through npm exec), `npm
 * install` the tarball into it, type-check and test it, add two workers of
 * one's own — one writing `{"frame":n}` lines, one importing an npm package
 * of its own (`is-number`) — and serve the project on the host board: the
 * queen spawns the workers by name and reads their telemetry. Then the same
 * project boots in QEMU (one boot) and its workers run in the guest.
 *
 * Needs the npm registry (or a warm npm cache) and, for the QEMU part,
 * qemu-system-aarch64 and the board's artefacts (scripts/setup.sh).
 */
import { execa, type Options } from "execa";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const NPM_MS = 600_000;
const BOOT_MS = 480_000;

let dir = "";
let app = "";
let tarball = "";
let env: Record<string, string> = {};

/** A worker as a user writes it: one `{"frame":n}` line per tick. */
const CAMERA = `import { runWorker } from "cohesix/worker";

await runWorker({ name: "camera", tick: async (_worker, n) => ({ frame: n }) });
`;

/** A worker with an npm dependency of its own, bundled into the image. */
const COUNTER = `import isNumber from "is-number";
import { attachWorker } from "cohesix/worker";

const worker = await attachWorker();
worker.onClosed(() => process.exit(0));
process.once("SIGTERM", () => void worker.stop({ graceMs: 500 }).then(() => process.exit(0)));
for (let n = 1; ; n++) {
  await worker.telemetry.append({ n, is_number: isNumber(n), is_number_text: isNumber("cohesix") });
  await new Promise((resolve) => setTimeout(resolve, 500));
}
`;

function run(cmd: string, args: readonly string[], options: Options & { cwd: string; timeoutMs?: number }) {
  const { timeoutMs, ...rest } = options;
  return execa(cmd, args, { reject: false, timeout: timeoutMs ?? 120_000, all: true, ...rest, env: { ...process.env, ...env, ...(rest.env ?? {}) } });
}

/** The installed CLI of the project, through npx. */
const npx = (args: readonly string[], timeoutMs?: number) => run("npx", ["--no-install", "cohesix", ...args], { cwd: app, ...(timeoutMs ? { timeoutMs } : {}) });

/** A queen command, retried while the host forward accepts before the guest serves. */
async function queen(addr: string, args: readonly string[], tries = 20): Promise<string> {
  let last = "";
  for (let i = 0; i < tries; i++) {
    const r = await npx([...args, "--addr", addr, "--key", join(dir, "keys", "queen.key")]);
    if (r.exitCode === 0) return String(r.stdout);
    last = String(r.all);
    if (/^(not found|invalid|permission):/m.test(last)) break;
    await sleep(500);
  }
  throw new Error(`cohesix ${args.join(" ")}: ${last}`);
}

async function telemetry(addr: string, worker: string, lines: number, timeoutMs = 90_000): Promise<Record<string, unknown>[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await queen(addr, ["cat", `/worker/${worker}/telemetry`]);
    const got = text.split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    if (got.length >= lines) return got;
    if (Date.now() > deadline) throw new Error(`${worker}: ${got.length} of ${lines} telemetry lines`);
    await sleep(500);
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-pack-"));
  env = { XDG_CONFIG_HOME: join(dir, "config"), npm_config_audit: "false", npm_config_fund: "false", npm_config_update_notifier: "false" };
  const packed = await run("npm", ["pack", "--pack-destination", dir], { cwd: ROOT, timeoutMs: NPM_MS });
  expect(packed.exitCode, String(packed.all)).toBe(0);
  const name = (await readdir(dir)).find((f) => f.endsWith(".tgz"));
  expect(name).toBeDefined();
  tarball = join(dir, name!);
}, NPM_MS);

afterAll(async () => {
  const info = join(app, ".cohesix", "run", "aarch64-virt", "vm.json");
  if (app && existsSync(info)) {
    const pid = (JSON.parse(await readFile(info, "utf8")) as { pid: number }).pid;
    await npx(["down"]).catch(() => undefined);
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  if (dir) await rm(dir, { recursive: true, force: true });
}, 120_000);

describe("a project made with the packed package", () => {
  test("the packed CLI's cohesix new scaffolds a project (npm exec, outside this repository)", async () => {
    const r = await run("npm", ["exec", "--yes", "--prefer-offline", `--package=${tarball}`, "--", "cohesix", "new", "my-appliance", "--cohesix", `file:${tarball}`], {
      cwd: dir,
      timeoutMs: NPM_MS,
    });
    expect(r.exitCode, String(r.all)).toBe(0);
    app = join(dir, "my-appliance");
    expect(existsSync(join(app, "cohesix.config.json"))).toBe(true);
    expect(existsSync(join(app, "workers", "sensor.ts"))).toBe(true);
  }, NPM_MS);

  test("npm install then npm test: the example worker type-checks against cohesix/worker and its tests pass", async () => {
    const install = await run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline"], { cwd: app, timeoutMs: NPM_MS });
    expect(install.exitCode, String(install.all)).toBe(0);
    expect(existsSync(join(app, "node_modules", "cohesix", "dist", "types", "workers", "index.d.ts"))).toBe(true);
    const t = await run("npm", ["test"], { cwd: app, timeoutMs: 180_000 });
    expect(t.exitCode, String(t.all)).toBe(0);
    expect(String(t.all)).toMatch(/# pass 2/);
    // A worker that misuses the API is caught by the user's type-check.
    await writeFile(join(app, "workers", "wrong.ts"), 'import { runWorker } from "cohesix/worker";\nawait runWorker({ name: 1, tick: async () => ({}) });\n');
    const bad = await run("npx", ["tsc", "--noEmit", "-p", "."], { cwd: app });
    expect(bad.exitCode).not.toBe(0);
    expect(String(bad.all)).toMatch(/workers\/wrong\.ts.*TS2322/);
    await rm(join(app, "workers", "wrong.ts"));
  }, NPM_MS);

  test("two workers of one's own, one with an npm dependency, are added to the config", async () => {
    const dep = await run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "is-number@7"], { cwd: app, timeoutMs: NPM_MS });
    expect(dep.exitCode, String(dep.all)).toBe(0);
    await writeFile(join(app, "workers", "camera.ts"), CAMERA);
    await writeFile(join(app, "workers", "counter.ts"), COUNTER);
    const config = JSON.parse(await readFile(join(app, "cohesix.config.json"), "utf8")) as { workers: unknown[] };
    config.workers.push({ name: "camera", entry: "workers/camera.ts", role: "worker" }, { name: "counter", entry: "workers/counter.ts", budget: { ticks: 1000 } });
    await writeFile(join(app, "cohesix.config.json"), `${JSON.stringify(config, null, 2)}\n`);
    const keys = await npx(["keygen", "--out", join(dir, "keys")]);
    expect(keys.exitCode, String(keys.all)).toBe(0);
  }, NPM_MS);

  test("the host board serves the project: the queen spawns the user workers by name and reads their telemetry", async () => {
    // The installed bin itself (not npx), so the PID stopped below is the server's.
    const child = execa(join(app, "node_modules", ".bin", "cohesix"), ["serve", "--listen", "127.0.0.1:0", "--state", join(dir, "host-state"), "--queen-pub", join(dir, "keys", "queen.pub")], {
      cwd: app,
      env: { ...process.env, ...env },
      reject: false,
    });
    let err = "";
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    try {
      const addr = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout! }).on("line", (line) => line.startsWith("READY ") && resolve(line.slice(6)));
        void child.then((r) => reject(new Error(`serve exited ${r.exitCode} before READY: ${err}`)));
        setTimeout(() => reject(new Error(`no READY within 120 s: ${err}`)), 120_000).unref();
      });
      expect(await queen(addr, ["cat", "/proc/boot"])).toMatch(/workers=camera,counter,gpu,heartbeat,inference,sensor/);
      expect(await queen(addr, ["ctl", '{"spawn":"sensor"}'])).toBe("worker-1");
      expect(await queen(addr, ["ctl", '{"spawn":"camera"}'])).toBe("worker-2");
      expect(await queen(addr, ["ctl", '{"spawn":"counter"}'])).toBe("worker-3");
      expect((await telemetry(addr, "worker-1", 1))[0]).toMatchObject({ tick: 1, temp_c: expect.any(Number) });
      expect((await telemetry(addr, "worker-2", 3)).slice(0, 3)).toEqual([{ frame: 1 }, { frame: 2 }, { frame: 3 }]);
      expect((await telemetry(addr, "worker-3", 2))[1]).toEqual({ n: 2, is_number: true, is_number_text: false });
      const unknown = await npx(["ctl", '{"spawn":"toaster"}', "--addr", addr, "--key", join(dir, "keys", "queen.key")]);
      expect(unknown.exitCode).toBe(1);
      expect(String(unknown.stderr)).toContain('not found: no worker "toaster" in this image (known: camera, counter, gpu, heartbeat, inference, sensor)');
    } finally {
      if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGTERM");
      await child;
    }
  }, 300_000);

  test("the same project boots in QEMU: /proc/boot lists its workers, which run in the guest, npm dependency included", async () => {
    const up = await npx(["up", "--detach", "--port", "0", "--queen-pub", join(dir, "keys", "queen.pub")], BOOT_MS);
    expect(up.exitCode, String(up.all)).toBe(0);
    expect(String(up.stderr)).toMatch(/build: project .*my-appliance: workers sensor, camera, counter/);
    const addr = String(up.stdout).split("\n")[0]!;
    expect(addr).toMatch(/^tcp!127\.0\.0\.1!\d+$/);
    const manifest = JSON.parse(await readFile(join(app, ".cohesix", "image", "aarch64-virt", "manifest.json"), "utf8")) as { workers: string[]; files: { path: string }[] };
    expect(manifest.workers).toEqual(["camera", "counter", "gpu", "heartbeat", "sensor"]);
    expect(manifest.files.map((f) => f.path)).toContain("/opt/cohesix/dist/workers/counter.mjs");

    expect(await queen(addr, ["cat", "/proc/boot"])).toMatch(/workers=camera,counter,gpu,heartbeat,sensor/);
    expect(await queen(addr, ["ctl", '{"spawn":"counter"}'])).toBe("worker-1");
    expect(await queen(addr, ["ctl", '{"spawn":"camera"}'])).toBe("worker-2");
    expect((await telemetry(addr, "worker-1", 2, 180_000))[1]).toEqual({ n: 2, is_number: true, is_number_text: false });
    expect((await telemetry(addr, "worker-2", 2, 180_000)).slice(0, 2)).toEqual([{ frame: 1 }, { frame: 2 }]);
    // The config's default budget applies: counter's spawn carries ticks=1000.
    expect(await queen(addr, ["cat", "/proc/workers"])).toMatch(/id=worker-1 kind=counter role=worker-counter .*budget_ticks=1000 /);
    const unknown = await npx(["ctl", '{"spawn":"toaster"}', "--addr", addr, "--key", join(dir, "keys", "queen.key")]);
    expect(String(unknown.stderr)).toContain('not found: no worker "toaster" in this image (known: camera, counter, gpu, heartbeat, sensor)');

    const down = await npx(["down"], 120_000);
    expect(down.exitCode, String(down.all)).toBe(0);
  }, BOOT_MS + 300_000);
});
