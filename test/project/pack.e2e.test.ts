/**
 * The package as a user gets it, following the README's "Build your own
 * appliance" walkthrough as written: its fenced `sh` blocks are read from
 * README.md and run line by line, unchanged, in a clean clone of this
 * checkout in a temp folder (its `node_modules` linked to this one's, as
 * `scripts/setup.sh` would have installed it). The first block runs `npm
 * pack` there, scaffolds `../my-appliance` with `cohesix new --cohesix
 * ./cohesix-0.1.0.tgz` (the path that works while the package is not on the
 * registry), `npm install`s the tarball into it and runs `npm test`. Then
 * two workers of one's own are added — one writing `{"frame":n}` lines, one
 * importing an npm package of its own (`is-number`) — and the project is
 * served on the host board: the queen spawns the workers by name and reads
 * their telemetry. The walkthrough's second block boots the same project in
 * QEMU (one boot), where its workers run; the worker id is the one `ctl`
 * printed, kept in a shell variable as the README does.
 *
 * Lines are run by `sh -c` in the folder the block's `cd` lines reached,
 * with the variables its `VAR=$(…)` lines set. npm prefers its cache
 * (`npm_config_prefer_offline`), and remote commands are retried while the
 * guest settles.
 *
 * Needs git, the npm registry (or a warm npm cache) and, for the QEMU part,
 * qemu-system-aarch64 and the board's artefacts (scripts/setup.sh).
 */
import { execa, type Options } from "execa";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { freePort, vmPid } from "../qemu/harness.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const NPM_MS = 600_000;
const BOOT_MS = 480_000;

let dir = "";
let app = "";
let checkout = "";
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

/** The fenced `sh` blocks of the README's "Build your own appliance" section, as lines. */
async function walkthrough(): Promise<string[][]> {
  const readme = await readFile(join(ROOT, "README.md"), "utf8");
  const start = readme.indexOf("\n## Build your own appliance\n");
  const section = readme.slice(start, readme.indexOf("\n## ", start + 1));
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!.split("\n").filter((l) => l.trim() !== ""));
}

let cwd = "";
let port = 0;

/**
 * Runs one walkthrough line as written, as a shell would: `cd DIR` moves
 * the folder later lines run in, `VAR=$(COMMAND)` keeps COMMAND's output
 * for later lines' `$VAR`, anything else runs with `sh -c`. Returns what
 * the command printed.
 */
async function step(line: string): Promise<string> {
  const cd = /^cd (\S+)$/.exec(line);
  if (cd) {
    cwd = resolve(cwd, cd[1]!);
    app = cwd;
    return "";
  }
  const assigned = /^(\w+)=\$\((.*)\)$/.exec(line);
  const command = assigned ? assigned[2]! : line;
  // A remote command may meet a guest that is still settling: retry a few times.
  const tries = command.startsWith("npx cohesix ") && !/ (new|up|down) /.test(`${command} `) ? 10 : 1;
  let last = "";
  for (let i = 0; i < tries; i++) {
    const r = await run("sh", ["-c", command], { cwd, timeoutMs: NPM_MS });
    if (r.exitCode === 0) {
      if (assigned) env[assigned[1]!] = String(r.stdout).trim();
      return String(r.stdout);
    }
    last = `${line}: exit ${r.exitCode}\n${String(r.all)}`;
    await sleep(1000);
  }
  throw new Error(last);
}

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
    const r = await npx([...args, "--addr", addr]);
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
  env = {
    XDG_CONFIG_HOME: join(dir, "config"),
    npm_config_audit: "false",
    npm_config_fund: "false",
    npm_config_update_notifier: "false",
    npm_config_prefer_offline: "true",
  };
  // A clean clone of this checkout, with the dependencies setup.sh installs.
  checkout = join(dir, "cohesix");
  const cloned = await run("git", ["clone", "--quiet", ROOT, checkout], { cwd: dir });
  expect(cloned.exitCode, String(cloned.all)).toBe(0);
  await symlink(join(ROOT, "node_modules"), join(checkout, "node_modules"));
  cwd = checkout;
  port = await freePort();
}, NPM_MS);

afterAll(async () => {
  const pid = app ? await vmPid(app) : undefined;
  if (pid !== undefined) {
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
  test("the walkthrough's first block: npm pack, the packed CLI's cohesix new with the tarball, npm install, npm test", async () => {
    const [first] = await walkthrough();
    expect(first).toEqual(["npm pack", "npx cohesix new ../my-appliance --cohesix ./cohesix-0.1.0.tgz", "cd ../my-appliance", "npm install", "npm test"]);
    for (const line of first!) {
      const out = await step(line);
      if (line === "npm test") expect(out).toMatch(/# pass 2/);
    }
    expect(app).toBe(join(dir, "my-appliance"));
    expect(existsSync(join(checkout, "cohesix-0.1.0.tgz"))).toBe(true);
    expect(existsSync(join(app, "cohesix.config.json"))).toBe(true);
    const pkg = JSON.parse(await readFile(join(app, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    expect(pkg.dependencies.cohesix).toBe("file:../cohesix/cohesix-0.1.0.tgz");
    expect(existsSync(join(app, "node_modules", "cohesix", "dist", "types", "workers", "index.d.ts"))).toBe(true);
  }, NPM_MS * 2);

  test("a worker that misuses the API is caught by the project's type-check", async () => {
    await writeFile(join(app, "workers", "wrong.ts"), 'import { runWorker } from "cohesix/worker";\nawait runWorker({ name: 1, tick: async () => ({}) });\n');
    const bad = await run("npx", ["tsc", "--noEmit", "-p", "."], { cwd: app });
    expect(bad.exitCode).not.toBe(0);
    expect(String(bad.all)).toMatch(/workers\/wrong\.ts.*TS2322/);
    await rm(join(app, "workers", "wrong.ts"));
  }, 120_000);

  test("two workers of one's own, one with an npm dependency, are added to the config", async () => {
    const dep = await run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "is-number@7"], { cwd: app, timeoutMs: NPM_MS });
    expect(dep.exitCode, String(dep.all)).toBe(0);
    await writeFile(join(app, "workers", "camera.ts"), CAMERA);
    await writeFile(join(app, "workers", "counter.ts"), COUNTER);
    const config = JSON.parse(await readFile(join(app, "cohesix.config.json"), "utf8")) as { workers: unknown[]; nineDoor: { port: number } };
    config.nineDoor.port = port;
    config.workers.push({ name: "camera", entry: "workers/camera.ts", role: "worker" }, { name: "counter", entry: "workers/counter.ts", budget: { ticks: 1000 } });
    await writeFile(join(app, "cohesix.config.json"), `${JSON.stringify(config, null, 2)}\n`);
  }, NPM_MS);

  test("the host board serves the project: the queen spawns the user workers by name and reads their telemetry", async () => {
    // The installed bin itself (not npx), so the PID stopped below is the server's.
    // The queen key is made on first use in XDG_CONFIG_HOME, as for a new user.
    const child = execa(join(app, "node_modules", ".bin", "cohesix"), ["serve", "--listen", "127.0.0.1:0", "--state", join(dir, "host-state")], {
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
      const unknown = await npx(["ctl", '{"spawn":"toaster"}', "--addr", addr]);
      expect(unknown.exitCode).toBe(1);
      expect(String(unknown.stderr)).toContain('not found: no worker "toaster" in this image (known: camera, counter, gpu, heartbeat, inference, sensor)');
    } finally {
      if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGTERM");
      await child;
    }
  }, 300_000);

  test("the walkthrough's second block boots the same project in QEMU: /proc/boot lists its workers, which run in the guest, npm dependency included", async () => {
    const [, second] = await walkthrough();
    expect(second![0]).toBe("npx cohesix up --detach");
    expect(second!.at(-1)).toBe("npx cohesix down");
    const outputs = new Map<string, string>();
    for (const line of second!.slice(0, -1)) outputs.set(line, await step(line));
    // The address the other verbs found: the VM up recorded in .cohesix/run/.
    const addr = (JSON.parse(await readFile(join(app, ".cohesix", "run", "aarch64-virt", "vm.json"), "utf8")) as { dialString: string }).dialString;
    expect(outputs.get("npx cohesix up --detach")!.split("\n")[0]).toBe(addr);
    expect(outputs.get("npx cohesix cat /proc/boot")).toMatch(/workers=camera,counter,gpu,heartbeat,sensor/);
    expect(second).toContain(`W=$(npx cohesix ctl '{"spawn":"sensor"}')`);
    expect(outputs.get(`W=$(npx cohesix ctl '{"spawn":"sensor"}')`)).toBe("worker-1");
    expect(env.W).toBe("worker-1");
    expect(second).toContain("npx cohesix tail -n 2 /worker/$W/telemetry");
    const manifest = JSON.parse(await readFile(join(app, ".cohesix", "image", "aarch64-virt", "manifest.json"), "utf8")) as { workers: string[]; files: { path: string }[] };
    expect(manifest.workers).toEqual(["camera", "counter", "gpu", "heartbeat", "sensor"]);
    expect(manifest.files.map((f) => f.path)).toContain("/opt/cohesix/dist/workers/counter.mjs");

    expect((await telemetry(addr, "worker-1", 1, 180_000))[0]).toMatchObject({ tick: 1, temp_c: expect.any(Number) });
    expect(await queen(addr, ["ctl", '{"spawn":"counter"}'])).toBe("worker-2");
    expect(await queen(addr, ["ctl", '{"spawn":"camera"}'])).toBe("worker-3");
    expect((await telemetry(addr, "worker-2", 2, 180_000))[1]).toEqual({ n: 2, is_number: true, is_number_text: false });
    expect((await telemetry(addr, "worker-3", 2, 180_000)).slice(0, 2)).toEqual([{ frame: 1 }, { frame: 2 }]);
    // The config's default budget applies: counter's spawn carries ticks=1000.
    expect(await queen(addr, ["cat", "/proc/workers"])).toMatch(/id=worker-2 kind=counter role=worker-counter .*budget_ticks=1000 /);
    const unknown = await npx(["ctl", '{"spawn":"toaster"}']);
    expect(String(unknown.stderr)).toContain('not found: no worker "toaster" in this image (known: camera, counter, gpu, heartbeat, sensor)');

    expect(await step("npx cohesix down")).toMatch(/aarch64-virt: stopped/);
  }, BOOT_MS + 300_000);

  test("cohesix image in the project writes a signed disk image whose initramfs carries the project's workers", async () => {
    const img = join(dir, "my-appliance.img");
    const r = await npx(["image", "--out", img], 300_000);
    expect(r.exitCode, String(r.all)).toBe(0);
    expect(String(r.stderr)).toContain("bundling the root task and workers (camera, counter, gpu, heartbeat, sensor)");
    const verify = await npx(["image", "verify", img]);
    expect(verify.exitCode, String(verify.all)).toBe(0);
  }, 360_000);
});
