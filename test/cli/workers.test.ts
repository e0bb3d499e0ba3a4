/**
 * The day-two verbs against a served host-board appliance: `spawn` and
 * `kill` as sugar for the queen's ctl commands, `logs` for a worker's
 * stderr, and `status` for what this folder runs.
 */
import { execa } from "execa";
import { spawn as spawnChild, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { UsageError } from "../../cli/args.ts";
import { runningWorkers } from "../../cli/status.ts";
import { killCommand, spawnCommand, workerId } from "../../cli/workers.ts";
import { parseWorkers, waitFor } from "./appliance-helpers.ts";
import { BIN, cohesix, makeScratch, serve, type Scratch, type Served } from "./helpers.ts";

let scratch: Scratch;
let served: Served;
const remote = (args: readonly string[]) => cohesix([...args, "--addr", served.addr, "--key", scratch.queenKey], { env: scratch.env });

beforeAll(async () => {
  scratch = await makeScratch();
  served = await serve(scratch);
});

afterAll(async () => {
  await served?.stop();
  await scratch?.remove();
});

describe("spawn and kill build the queen's ctl commands", () => {
  test("spawn puts --ticks at the top, --ttl and --ops in the budget", () => {
    expect(spawnCommand({ name: "heartbeat", ticks: "100", ttl: "120", ops: "500" })).toBe('{"spawn":"heartbeat","ticks":100,"budget":{"ttl_s":120,"ops":500}}');
    expect(spawnCommand({ name: "camera" })).toBe('{"spawn":"camera"}');
  });

  test("spawn --lease builds the lease object, its ttl defaulting to --ttl", () => {
    expect(JSON.parse(spawnCommand({ name: "gpu", ttl: "60", lease: "GPU-0:mem=4096,streams=2,priority=1" }))).toEqual({
      spawn: "gpu",
      budget: { ttl_s: 60 },
      lease: { gpu_id: "GPU-0", mem_mb: 4096, streams: 2, ttl_s: 60, priority: 1 },
    });
  });

  test("spawn refuses a bad value, a lease without mem, and a name the appliance would refuse", () => {
    expect(() => spawnCommand({ name: "heartbeat", ticks: "-3" })).toThrow(UsageError);
    expect(() => spawnCommand({ name: "gpu", lease: "GPU-0:streams=2" })).toThrow(/--lease needs mem=MiB/);
    expect(() => spawnCommand({ name: "Heart Beat" })).toThrow(/worker name/);
  });

  test("kill takes worker-7 or 7", () => {
    expect(killCommand("7")).toBe('{"kill":"worker-7"}');
    expect(workerId("worker-12")).toBe("worker-12");
    expect(() => workerId("queen")).toThrow(UsageError);
  });
});

describe("spawn, kill and logs against an appliance", () => {
  test("spawn prints the new worker's id, kill stops it, logs shows its stderr", async () => {
    const s = await remote(["spawn", "heartbeat", "--ticks", "1000", "--ttl", "300"]);
    expect(s.stderr).toBe("");
    expect(s.exitCode).toBe(0);
    const id = s.stdout.trim();
    expect(id).toMatch(/^worker-\d+$/);
    const workers = parseWorkers((await remote(["cat", "/proc/workers"])).stdout);
    expect(workers.get(id)).toMatchObject({ kind: "heartbeat", status: "running", budget_ticks: "1000", ttl_s: "300" });

    const k = await remote(["kill", id]);
    expect(k.exitCode).toBe(0);
    expect(k.stdout).toBe(id); // execa strips the final newline
    await waitFor(`${id} killed`, async () => parseWorkers((await remote(["cat", "/proc/workers"])).stdout).get(id)?.status === "killed");

    // Its stderr stays in /log/<id>.log after it exits; logs prints it all.
    const logs = await waitFor(`${id}'s last stderr line`, async () => {
      const r = await remote(["logs", id]);
      return r.exitCode === 0 && r.stdout.includes(`heartbeat ${id}: `) ? r : undefined;
    });
    expect(logs.stdout).toBe((await remote(["cat", `/log/${id}.log`])).stdout);
  });

  test("logs -f follows a worker's stderr as it is written", async () => {
    const s = await remote(["spawn", "heartbeat", "--ticks", "2"]);
    const id = s.stdout.trim();
    const base = { ...process.env };
    delete base.COHESIX_ADDR;
    const follower = execa("node", [BIN, "logs", id.replace("worker-", ""), "-f", "--addr", served.addr, "--key", scratch.queenKey], { env: { ...base, ...scratch.env }, extendEnv: false, reject: false });
    let seen = "";
    follower.stdout!.on("data", (d: Buffer) => (seen += d.toString()));
    try {
      // The tick budget runs out after two ticks; the worker says so on stderr.
      await waitFor("the revocation line through logs -f", () => seen.includes(`heartbeat ${id}: closed: `), { timeoutMs: 30_000 });
      expect(follower.exitCode).toBeNull(); // still following
    } finally {
      process.kill(follower.pid!, "SIGTERM");
      await follower;
    }
  });

  test("logs of a worker that never ran is not found (exit 1)", async () => {
    const r = await remote(["logs", "worker-9999"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/^not found: worker-9999 has no log \/log\/worker-9999\.log: no such worker on this appliance/);
  });

  test("spawn of an unknown worker fails like ctl: one not found: line (exit 1)", async () => {
    const r = await remote(["spawn", "nope"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^not found: .*nope/);
  });

  test("spawn goes through the signed path: the queen log shows the command as signed ctl", async () => {
    const before = await remote(["cat", "/queen/ctr"]);
    const r = await remote(["spawn", "heartbeat", "--ticks", "1"]);
    expect(r.exitCode).toBe(0);
    const after = await remote(["cat", "/queen/ctr"]);
    expect(Number(after.stdout.trim())).toBe(Number(before.stdout.trim()) + 1);
  });
});

describe("status", () => {
  const sleepers: ChildProcess[] = [];
  const held: Socket[] = [];
  let silent: Server;
  let dir: string;

  beforeAll(async () => {
    silent = createServer((sock) => {
      held.push(sock);
      sock.on("error", () => {});
    });
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    dir = await mkdtemp(join(tmpdir(), "cohesix-status-"));
  });

  afterAll(async () => {
    for (const s of sleepers) if (s.exitCode === null) process.kill(s.pid!, "SIGKILL");
    for (const s of held) s.destroy();
    await new Promise((r) => silent.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  async function runEntry(board: string, pid: number, dialString: string): Promise<void> {
    await mkdir(join(dir, ".cohesix", "run", board), { recursive: true });
    await writeFile(join(dir, ".cohesix", "run", board, "vm.json"), JSON.stringify({ board, pid, dialString }));
  }

  function statusIn(args: readonly string[]) {
    const base = { ...process.env };
    delete base.COHESIX_ADDR;
    return execa("node", [BIN, "status", ...args], { cwd: dir, env: { ...base, ...scratch.env, COHESIX_KEY: scratch.queenKey }, extendEnv: false, reject: false, timeout: 30_000 });
  }

  test("with nothing running says how to start one (exit 0)", async () => {
    const r = await statusIn([]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(`${dir}: no VM or host board; start one with \`cohesix up\` (or \`cohesix up --board host\`)`);
  });

  test("--json lists each board with PID, dial string, lifecycle and workers; a silent one is unreachable, a dead one stopped", async () => {
    const sleeper = spawnChild("sleep", ["600"], { stdio: "ignore" });
    sleepers.push(sleeper);
    const gone = spawnChild("true");
    await new Promise((r) => gone.once("exit", r));
    await runEntry("host", served.pid, served.addr);
    await runEntry("aarch64-virt", sleeper.pid!, `tcp!127.0.0.1!${(silent.address() as { port: number }).port}`);
    await runEntry("rpi4", gone.pid!, "tcp!127.0.0.1!1");
    const procWorkers = (await remote(["cat", "/proc/workers"])).stdout;

    const r = await statusIn(["--json", "--timeout", "1"]);
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    const s = JSON.parse(r.stdout) as { folder: string; boards: Record<string, unknown>[] };
    expect(s.folder).toBe(dir);
    expect(s.boards.map((b) => b.board)).toEqual(["aarch64-virt", "host", "rpi4"]);
    expect(s.boards[1]).toMatchObject({ board: "host", kind: "host", running: true, pid: served.pid, dialString: served.addr, lifecycle: "ONLINE", workers: runningWorkers(procWorkers) });
    expect(s.boards[0]).toMatchObject({ board: "aarch64-virt", kind: "vm", running: true, pid: sleeper.pid, lifecycle: "unreachable" });
    expect(s.boards[0]!.error).toMatch(/did not answer Tversion in 1 s/);
    expect(s.boards[2]).toEqual({ board: "rpi4", kind: "vm", running: false });

    const table = await statusIn(["--timeout", "1"]);
    expect(table.exitCode).toBe(0);
    const lines = table.stdout.split("\n");
    expect(lines[0]).toMatch(/^BOARD +KIND +STATE +PID +ADDRESS +LIFECYCLE +WORKERS$/);
    expect(lines[2]).toMatch(new RegExp(`^host +host +running +${served.pid} +${served.addr.replaceAll("!", "\\!")} +ONLINE +\\d+$`));
    expect(lines[3]).toMatch(/^rpi4 +vm +stopped +- +- +- +-$/);
  });
});
