/**
 * Day two in one folder, as a user runs it: `up --board host --detach`,
 * then the remote verbs, `status` and `sh` without --addr or COHESIX_ADDR
 * (they find the appliance this folder runs), then `down --board host`,
 * after which they say nothing runs here.
 */
import { execa } from "execa";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { pidAlive, signalPid, waitFor } from "./appliance-helpers.ts";
import { BIN, makeScratch, type Scratch } from "./helpers.ts";

let scratch: Scratch;
let pid: number | undefined;

beforeAll(async () => {
  scratch = await makeScratch();
});

afterAll(async () => {
  if (pid !== undefined && pidAlive(pid)) signalPid(pid, "SIGKILL");
  await scratch?.remove();
});

/** `cohesix ARGS…` in `cwd`, with the scratch key and no address in the environment. */
function cohesixIn(cwd: string, args: readonly string[]) {
  const env: Record<string, string | undefined> = { ...process.env, ...scratch.env, COHESIX_KEY: scratch.queenKey };
  delete env.COHESIX_ADDR;
  delete env.COHESIX_TIMEOUT;
  return execa("node", [BIN, ...args], { cwd, env, extendEnv: false, reject: false, timeout: 60_000 });
}

describe("the verbs find the host board this folder runs", () => {
  test("up --detach, then ls, spawn, status, sh, logs and kill without --addr; after down they say nothing runs", async () => {
    const folder = join(scratch.dir, "appliance");
    await mkdir(folder);
    const up = await cohesixIn(folder, ["up", "--board", "host", "--detach", "--listen", "127.0.0.1:0", "--queen-pub", scratch.queenPub]);
    expect(up.exitCode, up.stderr).toBe(0);
    const addr = up.stdout.split("\n")[0]!;
    pid = (JSON.parse(await readFile(join(folder, ".cohesix", "run", "host", "vm.json"), "utf8")) as { pid: number }).pid;

    const ls = await cohesixIn(folder, ["ls", "/"]);
    expect(ls.stderr).toBe("");
    expect(ls.stdout.split("\n")).toContain("queen/");

    const spawned = await cohesixIn(folder, ["spawn", "heartbeat", "--ticks", "1000"]);
    expect(spawned.exitCode, spawned.stderr).toBe(0);
    const id = spawned.stdout.trim();
    expect(id).toMatch(/^worker-\d+$/);

    const status = await cohesixIn(folder, ["status", "--json"]);
    expect(status.exitCode, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toEqual({
      folder,
      boards: [expect.objectContaining({ board: "host", kind: "host", running: true, pid, dialString: addr, lifecycle: "ONLINE", workers: 1 })],
    });

    const sh = await cohesixIn(folder, ["sh", "-c", `ls /worker; kill ${id}`]);
    expect(sh.exitCode, sh.stderr).toBe(0);
    expect(sh.stdout.split("\n")).toEqual([`${id}/`, id]);
    await waitFor(`${id}'s stderr to say it stopped`, async () => (await cohesixIn(folder, ["logs", id])).stdout.includes(`heartbeat ${id}: `));

    const down = await cohesixIn(folder, ["down", "--board", "host"]);
    expect(down.exitCode, down.stderr).toBe(0);
    await waitFor("the host board's PID to be gone", () => !pidAlive(pid!));

    const after = await cohesixIn(folder, ["ls", "/"]);
    expect(after.exitCode).toBe(2);
    expect(after.stderr).toContain(`--addr is required: ${folder} runs no VM or host board`);
    const stopped = await cohesixIn(folder, ["status"]);
    expect(stopped.stdout).toMatch(/^host +host +stopped +- +- +- +-$/m);
  }, 120_000);
});
