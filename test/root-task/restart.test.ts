/**
 * What a restart keeps beyond the commit log: the human audit log, and no
 * worker processes left over from a root task that was killed.
 */
import { execa } from "execa";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile, mkdir, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { NineClient } from "../../nine-door/index.ts";
import { mintTicket, serveAppliance, Supervisor, writeKeyPair } from "../../root-task/index.ts";

let dir: string;
let queenKey: Uint8Array;
let queenPub: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-restart-"));
  const keys = await writeKeyPair(join(dir, "keys"), { name: "queen" });
  queenKey = keys.privateKey;
  queenPub = keys.publicPath;
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function queen(addr: string) {
  const client = await NineClient.dial(addr, { dialect: "9P2000" });
  const root = await client.attach({ uname: "queen", aname: mintTicket({ role: "queen", sub: "queen" }, queenKey) });
  return { client, root };
}

describe("restart", () => {
  test("/log/queen.log continues with the previous boot's lines", async () => {
    const stateDir = join(dir, "state-log");
    const first = await serveAppliance({ board: "host", listen: "127.0.0.1:0", stateDir, queenPub });
    first.app.audit("marker from the first boot");
    await first.stop("test");
    const second = await serveAppliance({ board: "host", listen: "127.0.0.1:0", stateDir, queenPub });
    try {
      const { client, root } = await queen(second.dialString);
      const log = await root.readText("log/queen.log");
      client.close();
      expect(log).toMatch(/marker from the first boot[\s\S]*boot board=host/);
      expect(await readFile(join(stateDir, "queen.log"), "utf8")).toContain("marker from the first boot");
    } finally {
      await second.stop("test");
    }
  });

  test("a revoked worker exits by itself and its log says why", async () => {
    const stateDir = join(dir, "state-revoke");
    const r = await serveAppliance({ board: "host", listen: "127.0.0.1:0", stateDir, queenPub, intervalMs: 200, graceMs: 5000 });
    try {
      const { client, root } = await queen(r.dialString);
      const ctl = await root.walk("queen/ctl");
      await ctl.open("rw");
      await ctl.write('{"spawn":"heartbeat","ticks":2}');
      await expect.poll(async () => (await root.readText("proc/workers")).includes("status=revoked"), { timeout: 15_000 }).toBe(true);
      await expect.poll(async () => root.readText("log/worker-1.log"), { timeout: 10_000 }).toMatch(/tick budget exhausted/);
      client.close();
    } finally {
      await r.stop("test");
    }
  });
});

describe("Supervisor.reapLeftovers()", () => {
  test("stops a recorded process whose start time matches, and leaves a reused pid alone", async () => {
    const runDir = join(dir, "run");
    await mkdir(runDir, { recursive: true });
    const leftover = execa(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { reject: false });
    const bystander = execa(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { reject: false });
    try {
      const start = (pid: number) => {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
      };
      await expect.poll(() => start(leftover.pid!)).toBeDefined();
      await writeFile(join(runDir, "worker-1.pid"), `${leftover.pid} ${start(leftover.pid!)}\n`);
      // Same pid number but another start time: a reused pid.
      await writeFile(join(runDir, "worker-2.pid"), `${bystander.pid} 1\n`);
      expect(Supervisor.reapLeftovers(runDir)).toEqual([leftover.pid]);
      expect((await leftover).signal).toBe("SIGKILL");
      expect(bystander.exitCode).toBeNull();
    } finally {
      bystander.kill("SIGKILL");
      leftover.kill("SIGKILL");
      await bystander;
    }
  });
});
