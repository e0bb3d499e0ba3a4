/**
 * Which appliance a remote verb talks to when no --addr is given: the one
 * VM or host board this folder runs (`.cohesix/run/<board>/`), and a usage
 * error listing them when none or several run. And the remote timeout: a
 * peer that accepts and never answers is given up with its likely causes.
 */
import { execa } from "execa";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { explainTimeout, resolveAddress, runningAppliances, timeoutMsOf } from "../../cli/address.ts";
import { UsageError } from "../../cli/args.ts";
import { NoAnswerError } from "../../nine-door/index.ts";
import { BIN, makeScratch, serve, type Scratch, type Served } from "./helpers.ts";

let scratch: Scratch;
let served: Served;
const sleepers: ChildProcess[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  scratch = await makeScratch();
  served = await serve(scratch);
});

afterAll(async () => {
  for (const s of sleepers) if (s.pid !== undefined && s.exitCode === null) process.kill(s.pid, "SIGKILL");
  await served?.stop();
  await scratch?.remove();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** A live PID that is not an appliance: a sleeping child, killed by PID after the suite. */
function livePid(): number {
  const child = spawn("sleep", ["600"], { stdio: "ignore" });
  sleepers.push(child);
  return child.pid!;
}

/** A folder with a `.cohesix/run/<board>/vm.json` per entry. */
async function folderRunning(entries: readonly { board: string; pid: number; dialString: string }[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "cohesix-addr-"));
  dirs.push(dir);
  for (const e of entries) {
    const runDir = join(dir, ".cohesix", "run", e.board);
    await mkdir(runDir, { recursive: true });
    await writeFile(join(runDir, "vm.json"), JSON.stringify({ ...e, port: Number(e.dialString.split("!")[2]), startedAt: new Date().toISOString() }));
  }
  return dir;
}

/** Runs the real CLI in `cwd`, with the scratch key and no COHESIX_ADDR. */
function cohesixIn(cwd: string, args: readonly string[], env: Record<string, string> = {}) {
  const base = { ...process.env };
  delete base.COHESIX_ADDR;
  delete base.COHESIX_TIMEOUT;
  return execa("node", [BIN, ...args], { cwd, env: { ...base, ...scratch.env, COHESIX_KEY: scratch.queenKey, ...env }, extendEnv: false, reject: false, timeout: 30_000 });
}

describe("the default address", () => {
  test("is the one appliance this folder runs: ls / works without --addr or COHESIX_ADDR", async () => {
    const dir = await folderRunning([{ board: "host", pid: served.pid, dialString: served.addr }]);
    const r = await cohesixIn(dir, ["ls", "/"]);
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("proc/\n");
  });

  test("with none running, one line says so and how to start or name one (exit 2)", async () => {
    const dir = await folderRunning([]);
    const r = await cohesixIn(dir, ["ls", "/"]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr.split("\n")[0]).toMatch(/--addr is required: .* runs no VM or host board; start one with `cohesix up`, or give --addr tcp!HOST!PORT or set COHESIX_ADDR/);
  });

  test("a run entry whose PID is gone does not count", async () => {
    const gone = spawn("true");
    await new Promise((r) => gone.once("exit", r));
    const dir = await folderRunning([{ board: "aarch64-virt", pid: gone.pid!, dialString: "tcp!127.0.0.1!1" }]);
    expect(runningAppliances(join(dir, ".cohesix"))).toEqual([]);
    expect(() => resolveAddress({ env: {}, cwd: dir })).toThrow(/runs no VM or host board/);
  });

  test("with two running, one line lists both and asks to choose (exit 2)", async () => {
    const pid = livePid();
    const dir = await folderRunning([
      { board: "aarch64-virt", pid, dialString: "tcp!127.0.0.1!5640" },
      { board: "host", pid: served.pid, dialString: served.addr },
    ]);
    const r = await cohesixIn(dir, ["ls", "/"]);
    expect(r.exitCode).toBe(2);
    const line = r.stderr.split("\n")[0]!;
    expect(line).toContain(`2 appliances run in ${dir}: aarch64-virt VM tcp!127.0.0.1!5640 (pid ${pid}), host host board ${served.addr} (pid ${served.pid}); choose one with --addr DIAL or COHESIX_ADDR`);
  });

  test("--addr wins over COHESIX_ADDR, which wins over the run folder", async () => {
    const dir = await folderRunning([{ board: "host", pid: served.pid, dialString: served.addr }]);
    expect(resolveAddress({ addr: "tcp!h!1", env: { COHESIX_ADDR: "tcp!h!2" }, cwd: dir }).dialString).toBe("tcp!h!1");
    expect(resolveAddress({ env: { COHESIX_ADDR: "tcp!h!2" }, cwd: dir })).toEqual({ dialString: "tcp!h!2", source: "COHESIX_ADDR" });
    expect(resolveAddress({ env: {}, cwd: dir })).toMatchObject({ dialString: served.addr, source: "run", entry: { board: "host", kind: "host", pid: served.pid } });
  });

  test("is refused as a usage error, so the CLI exits 2", () => {
    expect(() => resolveAddress({ env: {}, cwd: "/nonexistent" })).toThrow(UsageError);
  });
});

describe("the remote timeout", () => {
  let silent: Server;
  const held: Socket[] = [];
  let silentAddr: string;

  beforeAll(async () => {
    // Accepts and never answers, like a paused VM behind QEMU's host forward.
    silent = createServer((s) => {
      held.push(s);
      s.on("error", () => {});
    });
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    silentAddr = `tcp!127.0.0.1!${(silent.address() as { port: number }).port}`;
  });

  afterAll(async () => {
    for (const s of held) s.destroy();
    await new Promise((r) => silent.close(r));
  });

  test("--timeout gives up on a silent peer with one io: line naming it and the likely causes (exit 1)", async () => {
    const r = await cohesixIn(tmpdir(), ["ls", "/", "--addr", silentAddr, "--timeout", "1"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trimEnd().split("\n")).toEqual([
      `io: ${silentAddr} did not answer Tversion in 1 s: is the VM paused (cohesix vm resume), is --addr the right port (cohesix status lists this folder's appliances), or is it busy (wait longer with --timeout S or COHESIX_TIMEOUT)?`,
    ]);
  });

  test("a peer that answers Tversion but never Tattach is named with the stalled request (exit 1)", async () => {
    const { FrameSplitter, decodeMessage, encodeMessageChunks } = await import("../../nine-door/index.ts");
    const stalls = createServer((sock) => {
      held.push(sock);
      sock.on("error", () => {});
      const splitter = new FrameSplitter(1 << 20);
      sock.on("data", (chunk) => {
        splitter.push(chunk);
        for (let frame = splitter.next(); frame; frame = splitter.next()) {
          const res = decodeMessage(frame);
          if (res.ok && res.message.type === "Tversion") for (const c of encodeMessageChunks({ type: "Rversion", tag: res.message.tag, msize: 8192, version: "9P2000" })) sock.write(c);
        }
      });
    });
    await new Promise<void>((r) => stalls.listen(0, "127.0.0.1", r));
    const addr = `tcp!127.0.0.1!${(stalls.address() as { port: number }).port}`;
    try {
      const r = await cohesixIn(tmpdir(), ["cat", "/proc/boot", "--addr", addr, "--timeout", "1"]);
      expect(r.exitCode).toBe(1);
      expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(new RegExp(`^io: ${addr.replaceAll("!", "\\!")} did not answer Tattach in 1 s: is the VM paused`));
    } finally {
      await new Promise((r) => stalls.close(r));
    }
  });

  test("COHESIX_TIMEOUT sets it too", async () => {
    const r = await cohesixIn(tmpdir(), ["cat", "/proc/boot"], { COHESIX_ADDR: silentAddr, COHESIX_TIMEOUT: "0.5" });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`io: ${silentAddr} did not answer Tversion in 0.5 s: is the VM paused (cohesix vm resume), is COHESIX_ADDR the right port`);
  });

  test("a bad --timeout is a usage error (exit 2)", async () => {
    const r = await cohesixIn(tmpdir(), ["ls", "/", "--addr", silentAddr, "--timeout", "soon"]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('--timeout takes seconds ≥ 0 (0 waits forever), got "soon"');
  });

  test("defaults to 10 s; 0 waits forever", () => {
    expect(timeoutMsOf({ env: {} })).toBe(10_000);
    expect(timeoutMsOf({ timeout: "0", env: { COHESIX_TIMEOUT: "3" } })).toBe(0);
    expect(timeoutMsOf({ env: { COHESIX_TIMEOUT: "3" } })).toBe(3000);
  });

  test("a stalled attach to this folder's appliance names the request and suggests cohesix status", () => {
    const err = explainTimeout(new NoAnswerError("Tattach", 5000), { dialString: "tcp!127.0.0.1!5640", source: "run", entry: { board: "aarch64-virt", kind: "vm", pid: 1, dialString: "tcp!127.0.0.1!5640", runDir: "/x" } });
    expect((err as Error).message).toBe(
      "io: tcp!127.0.0.1!5640 did not answer Tattach in 5 s: is the VM paused (cohesix vm resume), is it still this folder's appliance (cohesix status), or is it busy (wait longer with --timeout S or COHESIX_TIMEOUT)?",
    );
  });
});
