/**
 * The host board as `up` and `down` run it, through the real `cohesix`
 * program: `up --board host --detach` returns once serving and leaves the
 * appliance running, recorded in `run/host/` like a VM; `down --board host`
 * stops it by PID; a second `up` refuses before it builds or writes
 * anything; a project's `files` reach its workers on the host board.
 */
import { execa } from "execa";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, stat, symlink, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { pidAlive, signalPid, waitFor } from "./appliance-helpers.ts";
import { BIN, ROOT, cohesix, makeScratch, type Scratch } from "./helpers.ts";

let scratch: Scratch;
const started: number[] = [];

beforeAll(async () => {
  scratch = await makeScratch();
});
afterAll(async () => {
  for (const pid of started) if (pidAlive(pid)) signalPid(pid, "SIGKILL");
  await scratch.remove();
});

/** `cohesix ARGS…` run in `cwd` (the folder whose `.cohesix` it uses). */
function cohesixIn(cwd: string, args: readonly string[], timeoutMs = 60_000) {
  const env: Record<string, string | undefined> = { ...process.env, ...scratch.env };
  delete env.COHESIX_ADDR;
  delete env.COHESIX_KEY;
  return execa("node", [BIN, ...args], { cwd, env, extendEnv: false, reject: false, timeout: timeoutMs });
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Every file under `dir` with its sha256, size and mtime: what "changes no file" compares. */
async function snapshotTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        out[`${p}/`] = String((await stat(p)).mtimeMs);
        await walk(p);
      } else {
        const st = await stat(p);
        out[p] = `${createHash("sha256").update(await readFile(p)).digest("hex")} ${st.size} ${st.mtimeMs}`;
      }
    }
  };
  await walk(dir);
  return out;
}

describe("cohesix up --board host --detach and cohesix down --board host", () => {
  test("up returns once serving, records the PID in .cohesix/run/host/, and down stops it: PID gone, port closed", async () => {
    const folder = join(scratch.dir, "detach");
    await mkdir(folder);
    const up = await cohesixIn(folder, ["up", "--board", "host", "--detach", "--listen", "127.0.0.1:0", "--queen-pub", scratch.queenPub]);
    expect(up.exitCode, up.stderr).toBe(0);
    const addr = up.stdout.split("\n")[0]!;
    expect(addr).toMatch(/^tcp!127\.0\.0\.1!\d+$/);
    const port = Number(addr.split("!")[2]);
    const pid = Number((await readFile(join(folder, ".cohesix", "run", "host", "qemu.pid"), "utf8")).trim());
    started.push(pid);
    const info = JSON.parse(await readFile(join(folder, ".cohesix", "run", "host", "vm.json"), "utf8")) as { board: string; pid: number; dialString: string };
    expect(info).toMatchObject({ board: "host", pid, dialString: addr });
    expect(pidAlive(pid)).toBe(true);

    // The appliance outlived the `up` that started it, and the folder's other verbs find it without --addr.
    const wrongBoard = await cohesixIn(folder, ["down"]);
    expect(wrongBoard.stdout).toBe("aarch64-virt: not running (`cohesix down --board host` stops host)");
    const ls = await cohesixIn(folder, ["ls", "/", "--key", scratch.queenKey]);
    expect(ls.exitCode, ls.stderr).toBe(0);
    expect(ls.stdout).toContain("queen/");
    const explicit = await cohesix(["ls", "/", "--addr", addr, "--key", scratch.queenKey], { env: scratch.env });
    expect(explicit.stdout).toBe(ls.stdout);

    const down = await cohesixIn(folder, ["down", "--board", "host"]);
    expect(down.exitCode, down.stderr).toBe(0);
    expect(down.stdout).toBe("host: stopped (SIGTERM)");
    await waitFor("the host board's PID to be gone", () => !pidAlive(pid));
    expect(await accepts(port)).toBe(false);
    expect(existsSync(join(folder, ".cohesix", "run", "host", "vm.json"))).toBe(false);

    const again = await cohesixIn(folder, ["down", "--board", "host"]);
    expect(again.stdout).toBe("host: not running");
  }, 120_000);
});

describe("a second cohesix up while this folder's appliance runs", () => {
  test("refuses before building, with one line naming the running VM and cohesix down, and changes no file", async () => {
    const folder = join(scratch.dir, "second-up");
    const run = join(folder, ".cohesix", "run", "aarch64-virt");
    await mkdir(run, { recursive: true });
    // A recorded VM whose PID is alive: a stand-in process, stopped by PID below.
    const standIn = execa("node", ["-e", "setInterval(() => {}, 1000)"], { reject: false });
    started.push(standIn.pid!);
    try {
      const info = { board: "aarch64-virt", pid: standIn.pid, port: 5999, dialString: "tcp!127.0.0.1!5999", startedAt: new Date().toISOString() };
      await writeFile(join(run, "qemu.pid"), `${standIn.pid}\n`);
      await writeFile(join(run, "vm.json"), `${JSON.stringify(info, null, 2)}\n`);
      await writeFile(join(run, "console.log"), "READY tcp!0.0.0.0!5640\n");
      const before = await snapshotTree(join(folder, ".cohesix"));

      for (const args of [["up", "--detach"], ["up", "--board", "host", "--detach", "--listen", "127.0.0.1:0"], ["boot", "--detach"]]) {
        const r = await cohesixIn(folder, [...args, "--queen-pub", scratch.queenPub]);
        expect(r.exitCode, r.stderr).toBe(1);
        expect(r.stderr.trimEnd().split("\n")).toEqual([`busy: aarch64-virt is already running here (pid ${standIn.pid}, tcp!127.0.0.1!5999): stop it with \`cohesix down\` first`]);
        expect(r.stdout).toBe("");
      }
      expect(await snapshotTree(join(folder, ".cohesix"))).toEqual(before);
      expect(existsSync(join(folder, ".cohesix", "image"))).toBe(false);
    } finally {
      signalPid(standIn.pid!, "SIGKILL");
      await standIn;
    }
  }, 120_000);

  test("a running host board is named with cohesix down --board host", async () => {
    const folder = join(scratch.dir, "second-host");
    await mkdir(folder);
    const up = await cohesixIn(folder, ["up", "--board", "host", "--detach", "--listen", "127.0.0.1:0", "--queen-pub", scratch.queenPub]);
    expect(up.exitCode, up.stderr).toBe(0);
    const pid = Number((await readFile(join(folder, ".cohesix", "run", "host", "qemu.pid"), "utf8")).trim());
    started.push(pid);
    try {
      const before = await snapshotTree(join(folder, ".cohesix", "run"));
      const r = await cohesixIn(folder, ["up", "--detach", "--queen-pub", scratch.queenPub]);
      expect(r.exitCode).toBe(1);
      expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(new RegExp(`^busy: host is already running here \\(pid ${pid}, tcp!127\\.0\\.0\\.1!\\d+\\): stop it with \`cohesix down --board host\` first`));
      expect(await snapshotTree(join(folder, ".cohesix", "run"))).toEqual(before);
      expect(existsSync(join(folder, ".cohesix", "image"))).toBe(false);
    } finally {
      await cohesixIn(folder, ["down", "--board", "host"]);
    }
    expect(pidAlive(pid)).toBe(false);
  }, 120_000);
});

/** A worker that reads a project file through the worker API's appPath and reports it. */
const READER = `import { readFile } from "node:fs/promises";
import { appPath, runWorker } from "cohesix/worker";

const settings = JSON.parse(await readFile(appPath("/etc/app/settings.json"), "utf8"));
await runWorker({ name: "reader", tick: async () => ({ greeting: settings.greeting, path: appPath("/etc/app/settings.json") }) });
`;

describe("a project's files on the host board", () => {
  test("a worker reading its file from cohesix.config.json's files works on the host board as in the image", async () => {
    const project = join(scratch.dir, "files-app");
    const made = await cohesix(["new", project, "--cohesix", `file:${ROOT}`], { env: scratch.env });
    expect(made.exitCode, made.stderr).toBe(0);
    await mkdir(join(project, "node_modules"));
    await symlink(ROOT, join(project, "node_modules", "cohesix"));
    await writeFile(join(project, "settings.json"), '{"greeting":"hello from settings"}\n');
    await writeFile(join(project, "workers", "reader.ts"), READER);
    const config = JSON.parse(await readFile(join(project, "cohesix.config.json"), "utf8")) as Record<string, unknown> & { workers: unknown[] };
    config.workers.push({ name: "reader", entry: "workers/reader.ts", budget: { ticks: 2 } });
    config.files = [{ src: "settings.json", dest: "/etc/app/settings.json" }];
    await writeFile(join(project, "cohesix.config.json"), `${JSON.stringify(config, null, 2)}\n`);

    const up = await cohesixIn(project, ["up", "--board", "host", "--detach", "--listen", "127.0.0.1:0", "--queen-pub", scratch.queenPub], 120_000);
    expect(up.exitCode, up.stderr).toBe(0);
    const addr = up.stdout.split("\n")[0]!;
    const pid = Number((await readFile(join(project, ".cohesix", "run", "host", "qemu.pid"), "utf8")).trim());
    started.push(pid);
    const env = { ...scratch.env, COHESIX_ADDR: addr, COHESIX_KEY: scratch.queenKey };
    try {
      const spawned = await cohesix(["ctl", '{"spawn":"reader"}'], { env });
      expect(spawned.exitCode, spawned.stderr).toBe(0);
      const id = spawned.stdout.trim();
      const lines = await waitFor(
        `telemetry of ${id}`,
        async () => {
          const t = await cohesix(["cat", `/worker/${id}/telemetry`], { env });
          const got = t.stdout.trim().split("\n").filter(Boolean);
          return got.length > 0 ? got : undefined;
        },
        { timeoutMs: 60_000 },
      );
      const first = JSON.parse(lines[0]!) as { greeting: string; path: string };
      expect(first.greeting).toBe("hello from settings");
      expect(first.path).toBe(join(project, ".cohesix", "host", "root", "etc", "app", "settings.json"));
    } finally {
      const down = await cohesixIn(project, ["down", "--board", "host"]);
      expect(down.stdout).toBe("host: stopped (SIGTERM)");
    }
  }, 240_000);
});
